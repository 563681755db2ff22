"""Live runtimes on the manager: hand them out, run work on them, and scope by user."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, cast

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

if TYPE_CHECKING:
    from actors._manager import SessionManager
    from actors._scoped import UserScope
    from actors._settings import Settings


class UnitOfWork:
    """One exclusive piece of work on a session's runtime; see ``unit_of_work``.

    Attributes:
        session_id: the session.
        runtime: its live runtime, for the duration of the unit.
        version: the session's version after the latest checkpoint of this unit, if any.
    """

    def __init__(self, manager: RuntimeAPI, session_id: str, runtime: Any) -> None:
        self._manager = manager
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
        self.version = self._manager.checkpoint(self.session_id, **arguments)
        return self.version


class RuntimeAPI:
    """Mixin of the manager: ``runtime``, ``unit_of_work``, ``run_in_actor``, ``for_user``.

    The runtime is built by the ``runtime_factory`` given to ``create_session_manager``
    and owned by the session's actor (see :mod:`actors._runtime` for the threading
    contract).
    """

    if TYPE_CHECKING:  # provided by SessionManager and AsyncTwins
        _settings: Settings

        def _ask(self, session_id: str, message: Any) -> Any: ...

        def _check_open(self) -> None: ...

        def checkpoint(  # noqa: PLR0917
            self,
            session_id: str,
            conversation_history: list[dict[str, Any]],
            context_variables: dict[str, Any] | None = None,
            current_phase: str | None = None,
            current_step: int | None = None,
            plan_data: dict[str, Any] | None = ...,
            *,
            history_rewritten: bool | None = None,
        ) -> int: ...

        async def _in_thread(
            self, method: Callable[..., Any], *args: Any, **kwargs: Any
        ) -> Any: ...

    # ------------------------------------------------------------------ sync

    def runtime(self, session_id: str) -> Any:
        """The session's live runtime, built from its last checkpoint on first use.

        The same object is returned until the session's actor stops (passivation, expiry,
        completion, deletion, a crash, ``close()``); it is closed then, and the next call
        builds a new one from the last checkpoint. The caller's thread uses it unlocked;
        see ``unit_of_work`` and ``run_in_actor`` for serialised use.

        Raises:
            RuntimeUnavailable: no ``runtime_factory`` for the session's mode, or it raised.
            SessionNotFound, InvalidTransition (completed or expired), SessionOwnedElsewhere,
            SessionFailed, InvalidArgument.
        """
        return self._handle(session_id).runtime

    def _handle(self, session_id: str) -> RuntimeHandle:
        self._check_open()
        session_id = require_str("session_id", session_id)
        handle: RuntimeHandle = self._ask(session_id, UseRuntime())
        return handle

    def run_in_actor(
        self, session_id: str, function: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """Call ``function(runtime, *args, **kwargs)`` in the session's actor; return its result.

        It runs between the session's other messages (checkpoints included), so it never
        races them. Keep it short, and never call the manager about the *same* session
        from inside it (the actor would wait for itself until ``call_timeout``).

        An exception from ``function`` crashes the actor, as any unexpected error inside
        it does: the runtime is closed, the supervisor restarts the session from its last
        checkpoint, and the exception is raised here.
        """
        self._check_open()
        session_id = require_str("session_id", session_id)
        if not callable(function):
            raise InvalidArgument(f"function must be callable, not {type(function).__name__}")
        return self._ask(session_id, RunInActor(function, args, kwargs))

    def discard_runtime(self, session_id: str) -> bool:
        """Close the session's runtime now; the next use builds it from the last checkpoint.

        Returns:
            Whether a runtime was built (and is now closed).
        """
        self._check_open()
        session_id = require_str("session_id", session_id)
        closed: bool = self._ask(session_id, DiscardRuntime())
        return closed

    def _enter_work(self, session_id: str, wait: float | None) -> tuple[RuntimeHandle, Any]:
        """Take the session's work lock; return the handle (under the lock) and the runtime."""
        self._check_open()
        timeout = self._settings.call_timeout if wait is None else wait
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise InvalidArgument(f"wait must be a number of seconds >= 0, not {wait!r}")
        deadline = time.monotonic() + timeout
        handle = self._handle(session_id)
        while True:
            if not handle.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise SessionBusy(session_id, timeout)
            try:
                current = self._handle(session_id)
            except BaseException:
                handle.lock.release()
                raise
            if current.lock is handle.lock:
                return handle, current.runtime
            # The actor restarted while we waited: its successor has a new lock.
            handle.lock.release()
            handle = current

    def _discard_quietly(self, session_id: str, runtime: Any) -> None:
        # If the actor is gone, its runtime was closed with it.
        with contextlib.suppress(Exception):
            self._ask(session_id, DiscardRuntime(runtime))

    @contextmanager
    def unit_of_work(
        self, session_id: str, *, wait: float | None = None, checkpoint: bool = True
    ) -> Iterator[UnitOfWork]:
        """Use the session's runtime exclusively; commit on success, roll back on error.

        Example:
            >>> with manager.unit_of_work(session_id) as work:  # doctest: +SKIP
            ...     work.runtime.answer("next question")

        Units of work on one live session run one at a time, and a session in one is
        never passivated (idle or over ``max_live``), however long it takes. On a normal
        exit (with ``checkpoint`` true, the default) the runtime's ``snapshot()`` is
        checkpointed: a dict with the arguments of ``checkpoint`` but ``session_id``.
        A runtime without ``snapshot()`` is refused before the block runs
        (``NoSnapshot``): pass ``checkpoint=False`` and call ``work.checkpoint(...)``.
        If the block (or that checkpoint) raises, the runtime is discarded, so the next
        use rebuilds it from the last checkpoint, and the error propagates.

        Args:
            session_id: the session.
            wait: seconds to wait for another unit of work on the session to finish
                (default ``call_timeout``).
            checkpoint: save the runtime's ``snapshot()`` on a normal exit.

        Raises:
            NoSnapshot: ``checkpoint`` is true and the runtime has no ``snapshot()``;
                the block did not run.
            SessionBusy: another unit of work held the session for longer than ``wait``.
            and every error of :meth:`runtime` and ``checkpoint``.
        """
        handle, runtime = self._enter_work(session_id, wait)
        if checkpoint and not callable(getattr(runtime, "snapshot", None)):
            handle.lock.release()
            raise NoSnapshot(session_id, runtime)
        work = UnitOfWork(self, session_id, runtime)
        try:
            yield work
            if checkpoint:
                work.checkpoint()
        except BaseException:
            self._discard_quietly(session_id, runtime)
            raise
        finally:
            handle.lock.release()

    def for_user(self, user_id: str) -> UserScope:
        """A view of this manager that sees and touches only ``user_id``'s sessions.

        Raises:
            InvalidArgument: ``user_id`` is not a non-empty str.
        """
        self._check_open()
        from actors._scoped import UserScope  # noqa: PLC0415 - _scoped builds on this module

        return UserScope(cast("SessionManager", self), require_str("user_id", user_id))

    # ------------------------------------------------------------------ async twins

    async def aruntime(self, session_id: str) -> Any:
        """Async twin of ``runtime``."""
        return await self._in_thread(self.runtime, session_id)

    async def arun_in_actor(
        self, session_id: str, function: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """Async twin of ``run_in_actor`` (``function`` itself runs in the actor's thread)."""
        return await self._in_thread(self.run_in_actor, session_id, function, *args, **kwargs)

    async def adiscard_runtime(self, session_id: str) -> bool:
        """Async twin of ``discard_runtime``."""
        closed: bool = await self._in_thread(self.discard_runtime, session_id)
        return closed

    @asynccontextmanager
    async def aunit_of_work(
        self, session_id: str, *, wait: float | None = None, checkpoint: bool = True
    ) -> AsyncIterator[UnitOfWork]:
        """Async twin of ``unit_of_work``: waiting and checkpointing never block the loop.

        The runtime's ``snapshot()`` may be a coroutine function; it is awaited.
        """
        entering = asyncio.ensure_future(self._in_thread(self._enter_work, session_id, wait))
        try:
            handle, runtime = await asyncio.shield(entering)
        except asyncio.CancelledError:
            # The pool thread may still take the lock after we gave up: give it back then.
            entering.add_done_callback(_release_if_entered)
            raise
        snapshot = getattr(runtime, "snapshot", None)
        if checkpoint and not callable(snapshot):
            handle.lock.release()
            raise NoSnapshot(session_id, runtime)
        work = UnitOfWork(self, session_id, runtime)
        try:
            yield work
            if checkpoint:
                assert snapshot is not None  # noqa: S101 - checked before the block
                state = snapshot()
                if inspect.isawaitable(state):
                    state = await state
                await self._in_thread(work.checkpoint, **check_snapshot(state, session_id))
        except BaseException:
            await self._in_thread(self._discard_quietly, session_id, runtime)
            raise
        finally:
            handle.lock.release()


def _release_if_entered(entering: asyncio.Future[tuple[RuntimeHandle, Any]]) -> None:
    if not entering.cancelled() and entering.exception() is None:
        entering.result()[0].lock.release()
