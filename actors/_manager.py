"""The ``SessionManager`` façade: the seed's API on top of the supervisor and its actors."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

import pykka
import structlog

from actors._api_async import AsyncTwins
from actors._api_runtime import RuntimeAPI
from actors._api_side import SideTables
from actors._clock import Clock, utc_now
from actors._documents import state_dict
from actors._errors import ManagerClosed
from actors._messages import ActorGone, Describe, LiveState, Save, Transition
from actors._metrics import CheckpointTimings
from actors._runtime import RuntimeCloser, RuntimeFactory, RuntimeSpec
from actors._settings import Settings
from actors._supervisor import SessionSupervisor
from actors._ticker import Ticker
from actors._validate import require_optional_str, require_step, require_str
from persistence import (
    LIVE_STATUSES,
    Database,
    InvalidArgument,
    Lease,
    NewSession,
    SessionDocument,
    SessionNotFound,
    SessionSummary,
    SessionSupervisorError,
    StateRecord,
    StoreUnavailable,
    _json,
)

log = structlog.get_logger("actors.manager")

_MISSING: Any = object()
_CHECKOUT_ATTEMPTS = 3
_REF_RECHECK = timedelta(seconds=1)
_REF_SLACK = 1024


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class SessionManager(SideTables, AsyncTwins, RuntimeAPI):
    """Keeps conversational sessions alive, durable and bounded.

    Every method of the seed's ``SessionManager`` is here with the same arguments, return
    values and dict keys: ``create_session``, ``save_session_state``,
    ``load_session_state``, ``suspend_session``, ``resume_session``, ``complete_session``,
    ``delete_session``, ``list_sessions``, ``get_session_info``, ``start`` and ``stop``.
    Like the seed, they return ``False``/``None``/``[]`` on an expected failure (and log
    why); the typed methods (``checkpoint``, ``load``, ``suspend``, ``resume``,
    ``complete``, ``expire``, ``delete``, ``info``) raise the typed errors of
    :mod:`actors` instead.

    All sync methods are safe from any thread and from inside a running event loop; the
    ``a``-prefixed twins await them without blocking the loop.

    Build one with :func:`create_session_manager`.
    """

    def __init__(
        self,
        db: Database,
        *,
        instance_id: str | None = None,
        session_ttl: timedelta = timedelta(hours=24),
        cleanup_interval: float = 60.0,
        clock: Clock | None = None,
        lease_ttl: timedelta = timedelta(seconds=30),
        max_live: int = 10_000,
        idle_timeout: timedelta = timedelta(minutes=10),
        max_message_bytes: int | None = 1 << 20,
        max_state_bytes: int | None = 16 << 20,
        call_timeout: float = 30.0,
        max_restarts: int = 5,
        restart_window: timedelta = timedelta(minutes=1),
        restart_backoff: timedelta = timedelta(seconds=1),
        restart_backoff_max: timedelta = timedelta(seconds=60),
        runtime_factory: RuntimeFactory | None = None,
        runtime_closer: RuntimeCloser | None = None,
    ) -> None:
        if cleanup_interval <= 0:
            raise InvalidArgument(f"cleanup_interval must be > 0 seconds, not {cleanup_interval}")
        if lease_ttl <= timedelta(0) or session_ttl <= timedelta(0):
            raise InvalidArgument("lease_ttl and session_ttl must be positive")
        if max_live < 1:
            raise InvalidArgument(f"max_live must be >= 1, not {max_live}")
        self._settings = Settings(
            db=db,
            instance_id=instance_id or uuid.uuid4().hex[:16],
            clock=clock or utc_now,
            session_ttl=session_ttl,
            lease_ttl=lease_ttl,
            idle_timeout=idle_timeout,
            max_live=max_live,
            max_message_bytes=max_message_bytes,
            max_state_bytes=max_state_bytes,
            call_timeout=call_timeout,
            max_restarts=max_restarts,
            restart_window=restart_window,
            restart_backoff=restart_backoff,
            restart_backoff_max=restart_backoff_max,
            runtimes=RuntimeSpec.from_arguments(runtime_factory, runtime_closer),
        )
        self._db = db
        self._cleanup_interval = cleanup_interval
        self._sweeping = False
        self._last_sweep = 0.0
        self._closed = False
        self._close_lock = threading.Lock()
        self._supervisor_ref = SessionSupervisor.start(self._settings)
        self._supervisor = self._supervisor_ref.proxy()
        # Live actors by session, so that a save is one hand-off instead of two; each entry
        # is re-checked with the supervisor (which keeps the LRU order) after _REF_RECHECK.
        self._refs: dict[str, tuple[pykka.ActorRef[Any], datetime]] = {}
        self._ref_recheck = min(idle_timeout / 4, _REF_RECHECK)
        interval = min(cleanup_interval, lease_ttl.total_seconds() / 3)
        self._ticker = Ticker(interval, self._tick, name="session-supervisor-ticker")
        self._ticker.start()
        self._elapsed = 0.0
        self._tick_interval = interval
        self._checkpoint_timings = CheckpointTimings()
        _register_exit_hook(self)
        log.info("manager.opened", instance_id=self.instance_id, database=db.url)

    # ------------------------------------------------------------------ plumbing

    @property
    def instance_id(self) -> str:
        """This manager's identity as a lease owner."""
        return self._settings.instance_id

    @property
    def database(self) -> Database:
        """The open session store."""
        return self._db

    def _now(self) -> datetime:
        return self._settings.now()

    def _check_open(self) -> None:
        if self._closed:
            raise ManagerClosed("this SessionManager is closed; create a new one")

    def _store_call(self, coro: Any) -> Any:
        if self._closed:
            coro.close()  # never scheduled: close it so it is not reported as un-awaited
            self._check_open()
        return self._db.run(coro)

    def _ask(self, session_id: str, message: Any) -> Any:
        """Send ``message`` to the session's actor, rehydrating it if needed."""
        self._check_open()
        timeout = self._settings.call_timeout
        for _ in range(_CHECKOUT_ATTEMPTS):
            try:
                return self._checkout(session_id, timeout).ask(message, timeout=timeout)
            except (pykka.ActorDeadError, ActorGone):
                self._refs.pop(session_id, None)
                continue
            except pykka.Timeout:
                raise StoreUnavailable(
                    f"session {session_id!r} did not answer within {timeout}s"
                ) from None
        raise StoreUnavailable(f"session {session_id!r} kept stopping; try again")

    def _checkout(self, session_id: str, timeout: float) -> pykka.ActorRef[Any]:
        """The session's live actor: from the cache, or from the supervisor (rehydrating)."""
        now = self._now()
        cached = self._refs.get(session_id)
        if cached is not None and now - cached[1] < self._ref_recheck:
            return cached[0]
        ref: pykka.ActorRef[Any] = self._supervisor.checkout(session_id).get(timeout=timeout)
        self._remember(session_id, ref, now)
        return ref

    def _remember(self, session_id: str, ref: pykka.ActorRef[Any], now: datetime) -> None:
        refs = self._refs
        if len(refs) >= self._settings.max_live + _REF_SLACK:
            refs.clear()  # mostly passivated actors by now; live ones come back on use
        refs[session_id] = (ref, now)

    def _tick(self) -> None:
        if self._closed:
            return
        self._supervisor.renew_leases()
        self._supervisor.restart_due()
        self._elapsed += self._tick_interval
        if self._sweeping and self._elapsed >= self._cleanup_interval:
            self._elapsed = 0.0
            self._supervisor.sweep()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the periodic cleanup (every ``cleanup_interval`` seconds)."""
        self._check_open()
        self._sweeping = True
        log.info("manager.started", cleanup_interval=self._cleanup_interval)

    async def stop(self) -> None:
        """Stop the periodic cleanup (sessions stay live; see :meth:`close`)."""
        self._sweeping = False
        log.info("manager.stopped")

    def sweep(self) -> dict[str, int]:
        """Run one cleanup pass now.

        Returns:
            Counts: ``sessions_expired``, ``approvals_expired``, ``connections_removed``
            and ``passivated``.
        """
        self._check_open()
        result: dict[str, int] = self._supervisor.sweep().get(
            timeout=self._settings.call_timeout * 2
        )
        return result

    def close(self) -> None:
        """Stop every actor, release the leases, commit pending writes, close the store.

        Safe to call twice; after it the host process can exit at once.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._ticker.stop()
        timeout = self._settings.call_timeout
        try:
            self._supervisor.shutdown(timeout).get(timeout=timeout * 2)
        except Exception as exc:  # noqa: BLE001 - closing goes on whatever happens
            log.error("manager.shutdown_failed", error=repr(exc))
        self._supervisor_ref.stop(block=True, timeout=timeout)
        try:
            self._db.run(self._db.store.release_all(self.instance_id))
        except SessionSupervisorError as error:
            log.warning("lease.release_failed", error=str(error))
        self._db.close()
        self._close_async_pool()
        log.info("manager.closed", instance_id=self.instance_id)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ typed API

    def create(
        self,
        mode: str,
        config: dict[str, Any],
        user_id: str | None = None,
        name: str | None = None,
    ) -> str:
        """Create a session owned by this manager; return its id (a UUID string).

        Raises:
            InvalidArgument, NotSerializable: bad arguments; nothing was written.
            StoreUnavailable: the database refused the write.
        """
        self._check_open()
        require_str("mode", mode, max_length=64)  # the width of session_states.mode
        require_optional_str("user_id", user_id)
        require_optional_str("name", name)
        if not isinstance(config, dict):
            raise InvalidArgument(f"config must be a dict, not {type(config).__name__}")
        config_json = _json.encode(config, "config", self._settings.max_state_bytes)
        settings = self._settings
        now = self._now()
        session_id = str(uuid.uuid4())
        new = NewSession(
            session_id=session_id,
            user_id=user_id,
            name=name or f"{mode}_{now:%Y%m%d_%H%M%S}",
            mode=mode,
            config_json=config_json,
            now=now,
            expires_at=now + settings.session_ttl,
            owner=settings.instance_id,
            lease_until=now + settings.lease_ttl,
        )
        self._db.run(self._db.store.create_session(new))
        state = StateRecord(
            session_id, mode, "{}", None, "init", None, "active", now, now,
            new.expires_at, 1, 0, settings.instance_id, 1, new.lease_until,
        )  # fmt: skip
        adopted = self._supervisor.adopt(session_id, Lease(state, {}))
        ref = adopted.get(timeout=settings.call_timeout)
        self._remember(session_id, ref, now)
        log.info("session.created", session_id=session_id, mode=mode, user_id=user_id)
        return session_id

    def checkpoint(  # noqa: PLR0917
        self,
        session_id: str,
        conversation_history: list[dict[str, Any]],
        context_variables: dict[str, Any],
        current_phase: str,
        current_step: int | None = None,
        plan_data: dict[str, Any] | None = _MISSING,
        *,
        history_rewritten: bool | None = None,
    ) -> int:
        """Durably save a session's state; return its new version.

        Only the messages the database does not have yet are written. A history that was
        rewritten (truncated, summarised) is detected by sampling and stored again; pass
        ``history_rewritten=True`` if you edited a message in place in the middle.

        Raises:
            SessionNotFound, InvalidTransition (not active), SessionOwnedElsewhere,
            StaleSession, NotSerializable, PayloadTooLarge, InvalidArgument,
            StoreUnavailable. On any error nothing was stored.
        """
        require_str("session_id", session_id)
        require_str("current_phase", current_phase, allow_empty=True)
        require_step(current_step)
        if not isinstance(conversation_history, list):
            raise InvalidArgument(
                "conversation_history must be a list of message dicts,"
                f" not {type(conversation_history).__name__}"
            )
        if not isinstance(context_variables, dict):
            raise InvalidArgument(
                f"context_variables must be a dict, not {type(context_variables).__name__}"
            )
        limit = self._settings.max_state_bytes
        context_json = _json.encode(context_variables, "context_variables", limit)
        set_plan = plan_data is not _MISSING and plan_data is not None
        plan_json = _json.encode(plan_data, "plan_data", limit) if set_plan else None
        save = Save(
            conversation_history, context_json, current_phase, current_step, plan_json,
            set_plan, history_rewritten,
        )  # fmt: skip
        started = time.perf_counter()
        try:
            version: int = self._ask(session_id, save)
        except BaseException:
            self._checkpoint_timings.failed()
            raise
        self._checkpoint_timings.record(time.perf_counter() - started)
        return version

    def _transition(self, session_id: str, action: str) -> int:
        require_str("session_id", session_id)
        version: int = self._ask(session_id, Transition(action))
        return version

    def suspend(self, session_id: str) -> int:
        """Suspend an active session; return its new version (raises typed errors)."""
        return self._transition(session_id, "suspend")

    def resume(self, session_id: str) -> int:
        """Resume a suspended session; return its new version (raises typed errors)."""
        return self._transition(session_id, "resume")

    def complete(self, session_id: str) -> int:
        """Complete an active or suspended session (raises typed errors)."""
        return self._transition(session_id, "complete")

    def expire(self, session_id: str) -> int:
        """Expire an active session now (raises typed errors)."""
        return self._transition(session_id, "expire")

    def delete(self, session_id: str) -> None:
        """Delete a session and everything attached to it.

        Raises:
            SessionNotFound: it does not exist.
            SessionOwnedElsewhere: another live manager holds it.
        """
        require_str("session_id", session_id)
        self._check_open()
        self._supervisor.remove(session_id).get(timeout=self._settings.call_timeout)
        deleted = self._store_call(
            self._db.store.delete_session(session_id, self.instance_id, self._now())
        )
        if not deleted:
            raise SessionNotFound(session_id)
        log.info("session.deleted", session_id=session_id)

    def load(self, session_id: str) -> dict[str, Any]:
        """The whole state of a session in any status, as the seed's dict (+ extra keys).

        Raises:
            SessionNotFound: it does not exist.
        """
        require_str("session_id", session_id)
        self._check_open()
        document: SessionDocument | None = self._db.load(session_id)
        if document is None:
            raise SessionNotFound(session_id)
        return state_dict(document)

    def info(self, session_id: str) -> dict[str, Any]:
        """A session's summary (the seed's ``get_session_info`` dict + extra keys).

        Raises:
            SessionNotFound: it does not exist.
        """
        require_str("session_id", session_id)
        self._check_open()
        summary: SessionSummary | None = self._db.session_info(session_id)
        if summary is None:
            raise SessionNotFound(session_id)
        return _info_dict(summary)

    def live(self, session_id: str) -> LiveState:
        """What the session's live actor holds (rehydrating it if needed)."""
        require_str("session_id", session_id)
        state: LiveState = self._ask(session_id, Describe())
        return state

    def live_sessions(self) -> list[str]:
        """Ids of the sessions that have a live actor in this process."""
        self._check_open()
        result: list[str] = self._supervisor.live_sessions().get(
            timeout=self._settings.call_timeout
        )
        return result

    def reset_failures(self, session_id: str) -> None:
        """Let a session that crashed too often (``SessionFailed``) be restarted again."""
        self._check_open()
        self._supervisor.reset_failures(session_id).get(timeout=self._settings.call_timeout)

    def stats(self) -> dict[str, Any]:
        """What this manager did since it started, for dashboards and health checks.

        Returns:
            ``live_actors``; the supervisor's counters ``spawned``, ``rehydrations``,
            ``passivations``, ``restarts``, ``crashes``, ``expirations``,
            ``lease_takeovers`` (sessions taken from an owner whose lease lapsed),
            ``leases_lost`` (taken from us) and ``sweeps``; ``checkpoints``,
            ``checkpoints_failed``, ``checkpoint_p50_ms`` and ``checkpoint_p99_ms`` (the
            latest 1024 checkpoints, from the call until the commit; ``None`` before the
            first); and the store writer's ``writes_waiting``, ``write_batches``,
            ``writes_committed`` and ``largest_batch``.
        """
        self._check_open()
        result: dict[str, Any] = self._supervisor.stats().get(timeout=self._settings.call_timeout)
        result.update(self._checkpoint_timings.snapshot())
        writer = self._db.store.writer
        result.update(
            writes_waiting=writer.pending,
            write_batches=writer.stats.batches,
            writes_committed=writer.stats.operations,
            largest_batch=writer.stats.largest_batch,
        )
        return result

    # ------------------------------------------------------------------ seed API

    def create_session(
        self,
        mode: str,
        config: dict[str, Any],
        user_id: str | None = None,
        name: str | None = None,
    ) -> str:
        """Create a new session; return its id. Raises on failure, like the seed."""
        return self.create(mode, config, user_id, name)

    def _quietly(self, default: Any, action: str, session_id: Any, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except SessionSupervisorError as error:
            log.warning(
                f"session.{action}_refused",
                session_id=session_id,
                error_type=type(error).__name__,
                error=str(error),
            )
            return default
        except Exception as error:
            # The seed's methods return False on any error. This is not a refusal but a
            # fault (a session actor crashed while handling the call; it restarts from its
            # last checkpoint): logged with its traceback.
            log.error(
                f"session.{action}_failed",
                session_id=session_id,
                error_type=type(error).__name__,
                error=repr(error),
                exc_info=error,
            )
            return default

    def save_session_state(  # noqa: PLR0917
        self,
        session_id: str,
        conversation_history: list[dict[str, Any]],
        context_variables: dict[str, Any],
        current_phase: str,
        current_step: int | None = None,
        plan_data: dict[str, Any] | None = None,
    ) -> bool:
        """Save session state; ``True`` once it is committed, ``False`` otherwise (logged)."""

        def call() -> bool:
            self.checkpoint(
                session_id, conversation_history, context_variables, current_phase,
                current_step, plan_data,
            )  # fmt: skip
            return True

        result: bool = self._quietly(False, "save", session_id, call)
        return result

    def load_session_state(self, session_id: str) -> dict[str, Any] | None:
        """The state of an active or suspended session for resumption, else ``None``."""

        def call() -> dict[str, Any] | None:
            state = self.load(session_id)
            if state["status"] not in LIVE_STATUSES:
                log.warning("session.load_refused", session_id=session_id, status=state["status"])
                return None
            return state

        result: dict[str, Any] | None = self._quietly(None, "load", session_id, call)
        return result

    def suspend_session(self, session_id: str) -> bool:
        """Suspend an active session; ``False`` if that is not possible (logged)."""
        return bool(self._quietly(False, "suspend", session_id, lambda: self.suspend(session_id)))

    def resume_session(self, session_id: str) -> bool:
        """Resume a suspended session; ``False`` if that is not possible (logged)."""
        return bool(self._quietly(False, "resume", session_id, lambda: self.resume(session_id)))

    def complete_session(self, session_id: str) -> bool:
        """Mark an active or suspended session completed; ``False`` otherwise (logged)."""
        return bool(self._quietly(False, "complete", session_id, lambda: self.complete(session_id)))

    def delete_session(self, session_id: str) -> bool:
        """Delete a session and all its data; ``False`` if it does not exist (logged)."""

        def call() -> bool:
            self.delete(session_id)
            return True

        return bool(self._quietly(False, "delete", session_id, call))

    def list_sessions(
        self,
        user_id: str | None = None,
        status: str | None = None,
        mode: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Session summaries matching the filters, most recently updated first."""

        def call() -> list[dict[str, Any]]:
            require_optional_str("user_id", user_id)
            require_optional_str("status", status)
            require_optional_str("mode", mode)
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise InvalidArgument(f"limit must be a positive int, not {limit!r}")
            # Past a 32-bit count a limit means "all"; the databases refuse wider values.
            self._check_open()
            rows = self._db.list_sessions(user_id, status, mode, min(limit, 2**31 - 1))
            return [
                {
                    "session_id": row.session_id,
                    "name": row.name,
                    "created_at": _iso(row.created_at),
                    "last_active_at": _iso(row.last_active_at),
                    "mode": row.mode,
                    "status": row.status,
                    "current_phase": row.current_phase,
                    "updated_at": _iso(row.updated_at),
                }
                for row in rows
            ]

        result: list[dict[str, Any]] = self._quietly([], "list", None, call)
        return result

    def get_session_info(self, session_id: str) -> dict[str, Any] | None:
        """A session's summary in any status, or ``None`` if it does not exist."""
        result: dict[str, Any] | None = self._quietly(
            None, "info", session_id, lambda: self.info(session_id)
        )
        return result

    def phase_hook(
        self,
        session_id: str,
        get_history: Callable[[], list[dict[str, Any]]],
        get_context: Callable[[], dict[str, Any]],
        get_plan: Callable[[], dict[str, Any] | None] | None = None,
    ) -> Callable[..., bool]:
        """The ``on_phase_change(phase, step_number=None)`` callback of a task executor.

        Each call checkpoints the session with the current history and context (the seed's
        Task 4) and returns whether the checkpoint was committed.
        """

        def on_phase_change(phase: str, step_number: int | None = None) -> bool:
            plan = get_plan() if get_plan is not None else None
            return self.save_session_state(
                session_id, get_history(), get_context(), phase, step_number, plan
            )

        return on_phase_change


def _info_dict(summary: SessionSummary) -> dict[str, Any]:
    return {
        "session_id": summary.session_id,
        "name": summary.name,
        "user_id": summary.user_id,
        "mode": summary.mode,
        "status": summary.status,
        "current_phase": summary.current_phase,
        "current_step": summary.current_step,
        "created_at": _iso(summary.created_at),
        "updated_at": _iso(summary.updated_at),
        "config": summary.config,
        "version": summary.version,
        "message_count": summary.message_count,
        "owner": summary.owner,
        "lease_expires_at": _iso(summary.lease_expires_at),
        "last_active_at": _iso(summary.last_active_at),
    }


def _close_at_exit(manager: SessionManager) -> None:
    if not manager.closed:
        log.info("manager.closing_at_exit", instance_id=manager.instance_id)
        manager.close()


def _register_exit_hook(manager: SessionManager) -> None:
    # Actor threads are non-daemon, and the interpreter joins those *before* it runs
    # atexit handlers; threading's own exit hooks run before that join (this is how
    # concurrent.futures stops its workers), so a manager left open still closes.
    # The hook keeps the manager alive until exit, which its live actors do anyway.
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(_close_at_exit, manager)
    else:  # pragma: no cover - every CPython >= 3.9 has it
        import atexit  # noqa: PLC0415

        atexit.register(_close_at_exit, manager)
