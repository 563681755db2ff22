"""The ``SessionManager`` façade: one class whose methods call modules of plain functions.

A save reads top to bottom: :meth:`SessionManager.checkpoint` -> ``_typed.checkpoint``
(checks, encodes) -> ``Core.ask`` -> the session's actor (``_session``) -> the store
(``persistence._store``) -> the group-commit writer (``persistence._writer``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from datetime import timedelta
from typing import Any, Self, Unpack

import structlog

from actors import (
    _approvals,
    _approvals_wait,
    _connections,
    _history,
    _introspect,
    _seed,
    _typed,
    _work,
)
from actors._core import Core
from actors._exit_hook import register_exit_hook
from actors._messages import LiveState
from actors._scope import UserScope
from actors._settings import ManagerOptions, check_options
from actors._twins import AsyncPool, async_twin
from actors._validate import require_str
from actors._work import UnitOfWork
from persistence import Database

log = structlog.get_logger("actors.manager")


class SessionManager:
    """Keeps conversational sessions alive, durable and bounded.

    The seed's methods (``create_session`` ... ``get_session_info``, ``start``, ``stop``)
    keep its arguments, results and dict keys, and return ``False``/``None``/``[]`` on an
    expected failure (logged); the typed methods (``create``, ``checkpoint``, ``load`` ...)
    raise the typed errors instead. On a closed manager every method but ``close``,
    ``aclose`` and ``stop`` raises ``ManagerClosed``. Sync methods are safe from any thread
    and inside a running event loop; each ``a``-prefixed twin (same arguments) awaits one
    without blocking the loop. Build one with :func:`create_session_manager`.
    """

    def __init__(self, db: Database, **options: Unpack[ManagerOptions]) -> None:
        """Start a manager on an open database; see :func:`create_session_manager`.

        Raises:
            InvalidArgument: a setting of the wrong type or out of range.
        """
        self._core = Core(db, check_options(**options))
        register_exit_hook(self)
        log.info("manager.opened", instance_id=self.instance_id, database=db.url)

    # ------------------------------------------------------------------ plumbing

    @property
    def instance_id(self) -> str:
        """This manager's identity as a lease owner."""
        return self._core.instance_id

    @property
    def database(self) -> Database:
        """The open session store."""
        return self._core.db

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._core.closed

    @property
    def async_pool(self) -> AsyncPool:
        """The threads the ``a``-prefixed twins run the sync methods on."""
        return self._core.async_pool

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Run the periodic cleanup (from creation already, unless ``autostart=False``).

        Also starts the async twins' threads, off the loop (see ``__aenter__``).
        """
        self._core.check_open()
        if self._core.housekeeping.start():
            log.info("manager.started", cleanup_interval=self._core.cleanup_interval)
        await self._core.async_pool.start()

    async def stop(self) -> None:
        """Pause the periodic cleanup (sessions stay live, leases renewed; see :meth:`close`)."""
        if self._core.housekeeping.pause():
            log.info("manager.stopped")

    def sweep(self) -> dict[str, int]:
        """Run one cleanup pass now; return its counts (``sessions_expired`` ...)."""
        return self._core.sweep()

    def close(self) -> None:
        """Stop every actor, release leases, commit pending writes, close the store; idempotent."""
        self._core.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close` (it may be called on a closed manager)."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        # The twins' threads start here, off the loop, not on its thread at the first call.
        await self._core.async_pool.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ the seed's API

    def create_session(
        self, mode: str, config: dict[str, Any], user_id: str | None = None,
        name: str | None = None, *, session_id: str | None = None,
    ) -> str:  # fmt: skip
        """Create a new session; return its id. Raises on failure, like the seed.

        ``session_id``: a caller-chosen id, so that a retry is idempotent (see ``create``).
        """
        return _typed.create(self._core, mode, config, user_id, name, session_id)

    def save_session_state(  # noqa: PLR0917
        self, session_id: str, conversation_history: list[dict[str, Any]],
        context_variables: dict[str, Any] | None = None, current_phase: str | None = None,
        current_step: int | None = None, plan_data: dict[str, Any] | None = None,
        *, expected_version: int | None = None,
    ) -> bool:  # fmt: skip
        """Save session state; ``True`` once committed, ``False`` otherwise (logged).

        Arguments left out (or ``None``) keep their stored values, but ``current_step``;
        with ``expected_version``, ``False`` if the stored version moved since.
        """
        save = _seed.done(lambda: self.checkpoint(
            session_id, conversation_history, context_variables, current_phase,
            current_step, plan_data, expected_version=expected_version,
        ))  # fmt: skip
        return _seed.quietly(self._core, False, "save", session_id, save)

    def load_session_state(
        self, session_id: str, include_completed: bool = False
    ) -> dict[str, Any] | None:
        """The state of a live session (any, ``include_completed=True``), else ``None``.

        The seed's keys and types (datetimes), plus ``user_id``, ``name``, ``message_count``.
        """
        return _seed.load_state(self._core, session_id, include_completed)

    def suspend_session(self, session_id: str) -> bool:
        """Suspend an active session; ``False`` if that is not possible (logged)."""
        call = _seed.done(lambda: self.suspend(session_id))
        return _seed.quietly(self._core, False, "suspend", session_id, call)

    def resume_session(self, session_id: str) -> bool:
        """Resume a suspended session; ``False`` if that is not possible (logged)."""
        call = _seed.done(lambda: self.resume(session_id))
        return _seed.quietly(self._core, False, "resume", session_id, call)

    def complete_session(self, session_id: str) -> bool:
        """Mark an active or suspended session completed; ``False`` otherwise (logged)."""
        call = _seed.done(lambda: self.complete(session_id))
        return _seed.quietly(self._core, False, "complete", session_id, call)

    def delete_session(self, session_id: str) -> bool:
        """Delete a session and all its data; ``False`` if it does not exist (logged)."""
        call = _seed.done(lambda: self.delete(session_id))
        return _seed.quietly(self._core, False, "delete", session_id, call)

    def list_sessions(
        self, user_id: str | None = None, status: str | None = None, mode: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Session summaries matching the filters, newest first; a bad filter: ``[]``."""
        listing = lambda: self.sessions(user_id, status, mode, limit)  # noqa: E731
        return _seed.quietly(self._core, [], "list", None, listing)

    def get_session_info(self, session_id: str) -> dict[str, Any] | None:
        """A session's summary in any status, or ``None`` if it does not exist."""
        return _seed.quietly(self._core, None, "info", session_id, lambda: self.info(session_id))

    def phase_hook(
        self, session_id: str, get_history: Callable[[], list[dict[str, Any]]],
        get_context: Callable[[], dict[str, Any]],
        get_plan: Callable[[], dict[str, Any] | None] | None = None,
    ) -> Callable[..., bool]:  # fmt: skip
        """A task executor's ``on_phase_change(phase, step_number=None)``: saves, -> bool."""
        self._core.check_open()
        return _seed.phase_hook(
            self.save_session_state, session_id, get_history, get_context, get_plan
        )

    # ------------------------------------------------------------------ typed API

    def create(
        self, mode: str, config: dict[str, Any], user_id: str | None = None,
        name: str | None = None, *, session_id: str | None = None,
    ) -> str:  # fmt: skip
        """Create a session owned by this manager; return its id (typed errors, nothing written).

        With ``session_id`` (1 to 36 printable characters) a retry is idempotent: the same
        arguments return the id and write nothing; others raise ``SessionExists``.
        """
        return _typed.create(self._core, mode, config, user_id, name, session_id)

    def checkpoint(  # noqa: PLR0917
        self, session_id: str, conversation_history: list[dict[str, Any]],
        context_variables: dict[str, Any] | None = None, current_phase: str | None = None,
        current_step: int | None = None, plan_data: dict[str, Any] | None = _typed.MISSING,
        *, history_rewritten: bool | None = None, expected_version: int | None = None,
    ) -> int:  # fmt: skip
        """Durably save a session's state; return its new version (on any error: nothing).

        Only the change is written (see "What a save detects" in the README; after an
        in-place edit in the middle pass ``history_rewritten=True``). Arguments left out
        keep their stored values, but ``current_step``; ``expected_version``: compare-and-set.
        """
        return _typed.checkpoint(
            self._core, session_id, conversation_history, context_variables, current_phase,
            current_step, plan_data, history_rewritten, expected_version,
        )  # fmt: skip

    def append_messages(
        self, session_id: str, messages: list[dict[str, Any]],
        context_variables: dict[str, Any] | None = None, current_phase: str | None = None,
        current_step: int | None = None,
    ) -> int:  # fmt: skip
        """Append ``messages`` after whatever is stored; return the new version.

        Concurrent appends are all kept, each caller's in order; arguments left out keep
        their stored values.
        """
        return _history.append(
            self._core, session_id, messages, context_variables, current_phase, current_step
        )

    def suspend(self, session_id: str) -> int:
        """Suspend an active session; return its new version (raises typed errors)."""
        return _typed.transition(self._core, session_id, "suspend")

    def resume(self, session_id: str) -> int:
        """Resume a suspended session; return its new version (raises typed errors)."""
        return _typed.transition(self._core, session_id, "resume")

    def complete(self, session_id: str) -> int:
        """Complete an active or suspended session (raises typed errors)."""
        return _typed.transition(self._core, session_id, "complete")

    def expire(self, session_id: str) -> int:
        """Expire an active session now (raises typed errors)."""
        return _typed.transition(self._core, session_id, "expire")

    def delete(self, session_id: str) -> None:
        """Delete a session and all attached to it (``SessionNotFound``, owned elsewhere ...)."""
        _typed.delete(self._core, session_id)

    def load(self, session_id: str) -> dict[str, Any]:
        """The whole state of a session in any status, JSON-ready (ISO-8601 times)."""
        return _typed.json_ready(_typed.stored_state(self._core, session_id))

    def info(self, session_id: str) -> dict[str, Any]:
        """A session's summary: ``get_session_info``'s dict and more (``SessionNotFound``)."""
        return _typed.info(self._core, session_id)

    def sessions(
        self, user_id: str | None = None, status: str | None = None, mode: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Summaries matching the filters, newest first; a bad filter raises ``InvalidArgument``."""
        return _typed.sessions(self._core, user_id, status, mode, limit)

    # ------------------------------------------------------------------ runtimes

    def runtime(self, session_id: str) -> Any:
        """The session's live runtime (built by ``runtime_factory``; closed with its actor)."""
        return _work.handle(self._core, session_id).runtime

    def run_in_actor(
        self, session_id: str, function: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """Call ``function(runtime, *args, **kwargs)`` in the session's actor; return its result.

        Never call the manager about the same session from inside it.
        """
        return _work.run_in_actor(self._core, session_id, function, args, kwargs)

    def discard_runtime(self, session_id: str) -> bool:
        """Close the session's runtime now; whether one was built (the next use rebuilds it)."""
        return _work.discard_runtime(self._core, session_id)

    def unit_of_work(
        self, session_id: str, *, wait: float | None = None, checkpoint: bool = True
    ) -> AbstractContextManager[UnitOfWork]:
        """Use the session's runtime exclusively; checkpoint its ``snapshot()`` on success.

        One unit at a time per session (``SessionBusy`` after ``wait``); if the block raises,
        the runtime is discarded (rebuilt from the last checkpoint on next use).
        """
        return _work.unit_of_work(self._core, self.checkpoint, session_id, wait, checkpoint)

    def aunit_of_work(
        self, session_id: str, *, wait: float | None = None, checkpoint: bool = True
    ) -> AbstractAsyncContextManager[UnitOfWork]:
        """Async twin of ``unit_of_work``; the runtime's ``snapshot()`` may be async."""
        return _work.aunit_of_work(self._core, self.checkpoint, session_id, wait, checkpoint)

    def for_user(self, user_id: str) -> UserScope:
        """A view of this manager that sees and touches only ``user_id``'s sessions."""
        self._core.check_open()
        return UserScope(self, require_str("user_id", user_id))

    # ------------------------------------------------------------------ approvals

    def request_approval(
        self, session_id: str, approval_type: str, context: dict[str, Any],
        timeout: float | timedelta | None = None,
    ) -> str:  # fmt: skip
        """Ask a human to approve something; return its id (``timeout``: until it expires)."""
        return _approvals.request(self._core, session_id, approval_type, context, timeout)

    def resolve_approval(self, approval_id: str, resolution: str, result: Any = None) -> bool:
        """Answer a pending request (``approved``, ``rejected``, ``modified``); else ``False``."""
        return _approvals.resolve(self._core, approval_id, resolution, result)

    def get_approval(self, approval_id: str) -> dict[str, Any] | None:
        """An approval request (``status``: pending, resolved, expired, cancelled), or ``None``."""
        return _approvals.get(self._core, approval_id)

    def list_pending_approvals(self, session_id: str) -> list[dict[str, Any]]:
        """The pending approval requests of a session, oldest first (none past its deadline)."""
        return _approvals.pending(self._core, session_id)

    def wait_for_approval(
        self, approval_id: str, timeout: float | timedelta | None
    ) -> dict[str, Any]:
        """Block until a human answers the request; return it.

        Raises ``ApprovalTimeout`` after ``timeout``, ``ApprovalExpired`` past its deadline.
        """
        return _approvals_wait.wait(self._core, approval_id, timeout)

    async def await_for_approval(
        self, approval_id: str, timeout: float | timedelta | None
    ) -> dict[str, Any]:
        """Async twin of ``wait_for_approval``: the event loop runs while it waits."""
        return await _approvals_wait.await_answer(self._core, approval_id, timeout)

    # ------------------------------------------------------------------ connections

    def register_connection(self, task_id: str, session_id: str | None = None) -> None:
        """Record (or refresh) a task's live connection; the sweep drops it after 5 quiet min."""
        _connections.register(self._core, task_id, session_id)

    def heartbeat(self, task_id: str) -> bool:
        """Refresh a connection; ``False`` if it is unknown (or was already removed)."""
        return _connections.heartbeat(self._core, task_id)

    def unregister_connection(self, task_id: str) -> bool:
        """Forget a connection; ``False`` if it was unknown."""
        return _connections.unregister(self._core, task_id)

    def list_connections(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """Live connections (of one session, or all)."""
        return _connections.listed(self._core, session_id)

    # ------------------------------------------------------------------ introspection

    def live(self, session_id: str) -> LiveState:
        """What the session's live actor holds (rehydrating it if needed)."""
        return _introspect.live(self._core, session_id)

    def live_sessions(self) -> list[str]:
        """Ids of the sessions that have a live actor in this process."""
        return _introspect.live_sessions(self._core)

    def reset_failures(self, session_id: str) -> None:
        """Let a session that crashed too often (``SessionFailed``) be restarted again."""
        _introspect.reset_failures(self._core, session_id)

    def stats(self) -> dict[str, Any]:
        """Counters for dashboards and health checks (see the README's "Logs and metrics")."""
        return _introspect.stats(self._core)

    # ------------------------------------------------------------------ async twins

    acreate_session = async_twin(create_session)
    asave_session_state = async_twin(save_session_state)
    aload_session_state = async_twin(load_session_state)
    asuspend_session = async_twin(suspend_session)
    aresume_session = async_twin(resume_session)
    acomplete_session = async_twin(complete_session)
    adelete_session = async_twin(delete_session)
    alist_sessions = async_twin(list_sessions)
    aget_session_info = async_twin(get_session_info)
    acreate = async_twin(create)
    acheckpoint = async_twin(checkpoint)
    aappend_messages = async_twin(append_messages)
    asuspend = async_twin(suspend)
    aresume = async_twin(resume)
    acomplete = async_twin(complete)
    aexpire = async_twin(expire)
    adelete = async_twin(delete)
    aload = async_twin(load)
    ainfo = async_twin(info)
    asessions = async_twin(sessions)
    asweep = async_twin(sweep)
    aruntime = async_twin(runtime)
    arun_in_actor = async_twin(run_in_actor)
    adiscard_runtime = async_twin(discard_runtime)
    arequest_approval = async_twin(request_approval)
    aresolve_approval = async_twin(resolve_approval)
    aget_approval = async_twin(get_approval)
    alist_pending_approvals = async_twin(list_pending_approvals)
    aregister_connection = async_twin(register_connection)
    aheartbeat = async_twin(heartbeat)
    aunregister_connection = async_twin(unregister_connection)
    alist_connections = async_twin(list_connections)
    alive = async_twin(live)
    alive_sessions = async_twin(live_sessions)
    areset_failures = async_twin(reset_failures)
    astats = async_twin(stats)
