"""Waiting for a human's answer: ``wait_for_approval`` and its async twin.

Within one process ``resolve_approval`` wakes the waiters of its request at once (an
event per waiter). An answer given by another process (another worker on the same
PostgreSQL database or SQLite file) cannot signal this one, so the waiter also re-reads
the request, with a backoff from 50 ms up to 1 s: the caller never polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from actors._approvals import get
from actors._core import Core
from actors._errors import ApprovalClosed, ApprovalExpired, ApprovalTimeout
from actors._validate import require_seconds
from persistence import ApprovalNotFound

#: The first and the longest pause between two reads of a request answered elsewhere.
FIRST_POLL = 0.05
LONGEST_POLL = 1.0


def _limit(timeout: float | timedelta | None) -> float | None:
    if timeout is None:
        return None
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    return require_seconds("timeout", seconds)


def _read(core: Core, approval_id: str) -> dict[str, Any]:
    """The request, answered or pending; raises once it never will be answered."""
    approval = get(core, approval_id)
    if approval is None:
        raise ApprovalNotFound(approval_id)
    status = approval["status"]
    if status == "expired":
        raise ApprovalExpired(approval_id)
    if status not in ("pending", "resolved"):
        raise ApprovalClosed(approval_id, status)
    return approval


def _pause(core: Core, approval: dict[str, Any], pause: float, deadline: float | None) -> float:
    """How long to wait before the next read: the backoff, cut by the two deadlines."""
    if deadline is not None:
        pause = min(pause, max(0.0, deadline - time.monotonic()))
    expires_at = approval["expires_at"]
    if expires_at is not None:
        # On the injected clock: a real clock reaches it then; a test's clock may not.
        left = (datetime.fromisoformat(expires_at) - core.now()).total_seconds()
        pause = min(pause, max(0.0, left) + 0.001)
    return pause


def wait(core: Core, approval_id: str, timeout: float | timedelta | None) -> dict[str, Any]:
    """Block until the request is answered; return it (see ``wait_for_approval``)."""
    limit = _limit(timeout)
    deadline = None if limit is None else time.monotonic() + limit
    woken = threading.Event()
    waiters = core.approval_waiters
    waiters.add(approval_id, woken.set)
    try:
        pause = FIRST_POLL
        while True:
            woken.clear()
            core.check_open()
            approval = _read(core, approval_id)
            if approval["status"] == "resolved":
                return approval
            if deadline is not None and time.monotonic() >= deadline:
                raise ApprovalTimeout(approval_id, limit or 0.0)
            woken.wait(_pause(core, approval, pause, deadline))
            pause = min(pause * 2, LONGEST_POLL)
    finally:
        waiters.remove(approval_id, woken.set)


async def await_answer(
    core: Core, approval_id: str, timeout: float | timedelta | None
) -> dict[str, Any]:
    """``wait`` for the event loop: it runs while this waits (see ``await_for_approval``)."""
    limit = _limit(timeout)
    deadline = None if limit is None else time.monotonic() + limit
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def wake() -> None:
        loop.call_soon_threadsafe(woken.set)

    waiters = core.approval_waiters
    waiters.add(approval_id, wake)
    try:
        pause = FIRST_POLL
        while True:
            woken.clear()
            core.check_open()
            approval = await core.async_pool.run(functools.partial(_read, core, approval_id))
            if approval["status"] == "resolved":
                return approval
            if deadline is not None and time.monotonic() >= deadline:
                raise ApprovalTimeout(approval_id, limit or 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), _pause(core, approval, pause, deadline))
            pause = min(pause * 2, LONGEST_POLL)
    finally:
        waiters.remove(approval_id, wake)
