"""Live runtimes: hand them out, run work on them in the actor, units of work.

Plain functions of the manager's core; the runtime is built by the ``runtime_factory``
given to ``create_session_manager`` and owned by the session's actor (see
:mod:`actors._runtime` for the threading contract).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from actors._core import Core
from actors._runtime import (
    DiscardRuntime,
    NoSnapshot,
    RunInActor,
    RuntimeHandle,
    SessionBusy,
    UseRuntime,
    check_snapshot,
)
from actors._validate import require_str
from persistence import InvalidArgument


class UnitOfWork:
    """One exclusive piece of work on a session's runtime; see ``unit_of_work``.

    Attributes:
        session_id: the session.
        runtime: its live runtime, for the duration of the unit.
        version: the session's version after the latest checkpoint of this unit, if any.
    """

    def __init__(self, save: Callable[..., int], session_id: str, runtime: Any) -> None:
        self._save = save
        self.session_id = session_id
        self.runtime = runtime
        self.version: int | None = None

    def checkpoint(self, **state: Any) -> int:
        """Checkpoint now; return the new version.

        Args:
            **state: the arguments of ``manager.checkpoint`` but ``session_id``
                (``conversation_history``, ``context_variables``, ``current_phase``, and
                optionally ``current_step``, ``plan_data``). Without any, the runtime's
                ``snapshot()`` is saved.

        Raises:
            NoSnapshot: no state given and the runtime has no ``snapshot()``; and
                every error of ``manager.checkpoint``.
        """
        if not state:
            snapshot = getattr(self.runtime, "snapshot", None)
            if not callable(snapshot):
                raise NoSnapshot(self.session_id, self.runtime)
            state = snapshot()
        arguments = check_snapshot(state, self.session_id)
        self.version = self._save(self.session_id, **arguments)
        return self.version


def handle(core: Core, session_id: str) -> RuntimeHandle:
    """The session's runtime handle (its runtime and work lock), building it if needed."""
    core.check_open()
    result: RuntimeHandle = core.ask(require_str("session_id", session_id), UseRuntime())
    return result


def run_in_actor(
    core: Core,
    session_id: str,
    function: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Call ``function(runtime, *args, **kwargs)`` in the session's actor."""
    core.check_open()
    session_id = require_str("session_id", session_id)
    if not callable(function):
        raise InvalidArgument(f"function must be callable, not {type(function).__name__}")
    return core.ask(session_id, RunInActor(function, args, kwargs))


def discard_runtime(core: Core, session_id: str) -> bool:
    """Close the session's runtime now; whether one was built."""
    core.check_open()
    closed: bool = core.ask(require_str("session_id", session_id), DiscardRuntime())
    return closed


def _enter(core: Core, session_id: str, wait: float | None) -> tuple[RuntimeHandle, Any]:
    """Take the session's work lock; return the handle (under the lock) and the runtime."""
    core.check_open()
    timeout = core.settings.call_timeout if wait is None else wait
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
        raise InvalidArgument(f"wait must be a number of seconds >= 0, not {wait!r}")
    deadline = time.monotonic() + timeout
    current = handle(core, session_id)
    while True:
        if not current.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise SessionBusy(session_id, timeout)
        try:
            latest = handle(core, session_id)
        except BaseException:
            current.lock.release()
            raise
        if latest.lock is current.lock:
            return current, latest.runtime
        # The actor restarted while we waited: its successor has a new lock.
        current.lock.release()
        current = latest


def _discard_quietly(core: Core, session_id: str, runtime: Any) -> None:
    # If the actor is gone, its runtime was closed with it.
    with contextlib.suppress(Exception):
        core.ask(session_id, DiscardRuntime(runtime))


@contextmanager
def unit_of_work(
    core: Core, save: Callable[..., int], session_id: str, wait: float | None, checkpoint: bool
) -> Iterator[UnitOfWork]:
    """The manager's ``unit_of_work``: lock, yield, checkpoint the snapshot, or discard."""
    locked, runtime = _enter(core, session_id, wait)
    if checkpoint and not callable(getattr(runtime, "snapshot", None)):
        locked.lock.release()
        raise NoSnapshot(session_id, runtime)
    work = UnitOfWork(save, session_id, runtime)
    try:
        yield work
        if checkpoint:
            work.checkpoint()
    except BaseException:
        _discard_quietly(core, session_id, runtime)
        raise
    finally:
        locked.lock.release()


@asynccontextmanager
async def aunit_of_work(
    core: Core, save: Callable[..., int], session_id: str, wait: float | None, checkpoint: bool
) -> AsyncIterator[UnitOfWork]:
    """The manager's ``aunit_of_work``: as ``unit_of_work``, waiting off the loop."""
    run = core.async_pool.run
    entering = asyncio.ensure_future(run(functools.partial(_enter, core, session_id, wait)))
    try:
        locked, runtime = await asyncio.shield(entering)
    except asyncio.CancelledError:
        # The pool thread may still take the lock after we gave up: give it back then.
        entering.add_done_callback(_release_if_entered)
        raise
    snapshot = getattr(runtime, "snapshot", None)
    if checkpoint and not callable(snapshot):
        locked.lock.release()
        raise NoSnapshot(session_id, runtime)
    work = UnitOfWork(save, session_id, runtime)
    try:
        yield work
        if checkpoint:
            assert snapshot is not None  # noqa: S101 - checked before the block
            state = snapshot()
            if inspect.isawaitable(state):
                state = await state
            await run(functools.partial(work.checkpoint, **check_snapshot(state, session_id)))
    except BaseException:
        await run(functools.partial(_discard_quietly, core, session_id, runtime))
        raise
    finally:
        locked.lock.release()


def _release_if_entered(entering: asyncio.Future[tuple[RuntimeHandle, Any]]) -> None:
    if not entering.cancelled() and entering.exception() is None:
        entering.result()[0].lock.release()
