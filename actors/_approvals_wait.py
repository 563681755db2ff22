"""Waiting for a human's answer: ``wait_for_approval`` and its async twin.

Within one process ``resolve_approval`` wakes the waiters of its request at once (an
event per waiter). An answer given by another process (another worker on the same
PostgreSQL database or SQLite file) cannot signal this one, so the waiter also re-reads
the request, with a backoff from 50 ms up to 1 s: the caller never polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from actors._errors import ApprovalClosed, ApprovalExpired, ApprovalTimeout
from actors._validate import require_seconds
from persistence import ApprovalNotFound

T = TypeVar("T")

#: The first and the longest pause between two reads of a request answered elsewhere.
FIRST_POLL = 0.05
LONGEST_POLL = 1.0


class ApprovalWaiters:
    """The wake-up callbacks of the threads and tasks waiting for each request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, set[Callable[[], None]]] = {}

    def add(self, approval_id: str, wake: Callable[[], None]) -> None:
        """Call ``wake`` when the request is answered in this process."""
        with self._lock:
            self._waiting.setdefault(approval_id, set()).add(wake)

    def remove(self, approval_id: str, wake: Callable[[], None]) -> None:
        """Forget a waiter (it returned or gave up)."""
        with self._lock:
            waiting = self._waiting.get(approval_id)
            if waiting is not None:
                waiting.discard(wake)
                if not waiting:
                    del self._waiting[approval_id]

    def notify(self, approval_id: str) -> None:
        """Wake the waiters of one request (it was answered)."""
        with self._lock:
            wakes = list(self._waiting.get(approval_id, ()))
        for wake in wakes:
            wake()

    def notify_all(self) -> None:
        """Wake every waiter (the manager closes: each raises ``ManagerClosed``)."""
        with self._lock:
            wakes = [wake for waiting in self._waiting.values() for wake in waiting]
        for wake in wakes:
            wake()


def _limit(timeout: float | timedelta | None) -> float | None:
    if timeout is None:
        return None
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    return require_seconds("timeout", seconds)


class ApprovalWaits:
    """Mixin of the manager: block (or await) until a request is answered."""

    def _check_open(self) -> None:  # pragma: no cover - provided by the manager
        raise NotImplementedError

    def _now(self) -> datetime:  # pragma: no cover - provided by the manager
        raise NotImplementedError

    def get_approval(self, approval_id: str) -> dict[str, Any] | None:  # pragma: no cover
        raise NotImplementedError

    if TYPE_CHECKING:  # AsyncTwins' runner, later in the manager's MRO: not shadowed here

        async def _in_thread(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    @property
    def _approval_waiters(self) -> ApprovalWaiters:
        waiters: ApprovalWaiters | None = self.__dict__.get("_waiters")
        if waiters is None:
            waiters = self.__dict__.setdefault("_waiters", ApprovalWaiters())
        return waiters

    def _read(self, approval_id: str) -> dict[str, Any]:
        """The request, answered or pending; raises once it never will be answered."""
        approval = self.get_approval(approval_id)
        if approval is None:
            raise ApprovalNotFound(approval_id)
        status = approval["status"]
        if status == "expired":
            raise ApprovalExpired(approval_id)
        if status not in ("pending", "resolved"):
            raise ApprovalClosed(approval_id, status)
        return approval

    def _pause(self, approval: dict[str, Any], pause: float, deadline: float | None) -> float:
        """How long to wait before the next read: the backoff, cut by the two deadlines."""
        if deadline is not None:
            pause = min(pause, max(0.0, deadline - time.monotonic()))
        expires_at = approval["expires_at"]
        if expires_at is not None:
            # On the injected clock: a real clock reaches it then; a test's clock may not.
            left = (datetime.fromisoformat(expires_at) - self._now()).total_seconds()
            pause = min(pause, max(0.0, left) + 0.001)
        return pause

    def wait_for_approval(
        self, approval_id: str, timeout: float | timedelta | None
    ) -> dict[str, Any]:
        """Block until a human answers the request; return it (``get_approval``'s dict).

        ``resolve_approval`` in this process wakes the waiter at once; an answer from
        another process is seen within a second (the library re-reads the request with
        a backoff from 50 ms to 1 s).

        Args:
            approval_id: the id :meth:`request_approval` returned.
            timeout: seconds (or a timedelta) to wait at most; ``None``: until it is
                answered, expires or is cancelled.

        Raises:
            ApprovalTimeout: nobody answered within ``timeout`` (it is still pending).
            ApprovalExpired: it passed its deadline unanswered.
            ApprovalClosed: it was cancelled (its session ended).
            ApprovalNotFound: no such request. ManagerClosed: the manager closed.
        """
        limit = _limit(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        woken = threading.Event()
        waiters = self._approval_waiters
        waiters.add(approval_id, woken.set)
        try:
            pause = FIRST_POLL
            while True:
                woken.clear()
                self._check_open()
                approval = self._read(approval_id)
                if approval["status"] == "resolved":
                    return approval
                if deadline is not None and time.monotonic() >= deadline:
                    raise ApprovalTimeout(approval_id, limit or 0.0)
                woken.wait(self._pause(approval, pause, deadline))
                pause = min(pause * 2, LONGEST_POLL)
        finally:
            waiters.remove(approval_id, woken.set)

    async def await_for_approval(
        self, approval_id: str, timeout: float | timedelta | None
    ) -> dict[str, Any]:
        """Async twin of ``wait_for_approval``: the event loop runs while it waits."""
        limit = _limit(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(woken.set)

        waiters = self._approval_waiters
        waiters.add(approval_id, wake)
        try:
            pause = FIRST_POLL
            while True:
                woken.clear()
                self._check_open()
                approval: dict[str, Any] = await self._in_thread(self._read, approval_id)
                if approval["status"] == "resolved":
                    return approval
                if deadline is not None and time.monotonic() >= deadline:
                    raise ApprovalTimeout(approval_id, limit or 0.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), self._pause(approval, pause, deadline))
                pause = min(pause * 2, LONGEST_POLL)
        finally:
            waiters.remove(approval_id, wake)
