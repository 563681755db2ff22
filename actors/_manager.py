"""The ``SessionManager`` façade: the seed's API on top of the supervisor and its actors.

This module holds the manager's plumbing, lifecycle and typed API; the mixins it is
built from add the rest (``_api_seed``, ``_api_introspect``, ``_api_side``,
``_api_async``, ``_api_runtime``).
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

import pykka
import structlog

from actors._api_async import AsyncTwins
from actors._api_introspect import Introspection
from actors._api_runtime import RuntimeAPI
from actors._api_seed import SeedAPI
from actors._api_side import SideTables
from actors._clock import Clock
from actors._documents import info_dict, listing_dict, state_dict
from actors._errors import ManagerClosed
from actors._exit_hook import register_exit_hook
from actors._mailbox import ask_inline, ask_within
from actors._messages import ActorGone, Save, Transition
from actors._metrics import CheckpointTimings
from actors._runtime import RuntimeCloser, RuntimeFactory
from actors._settings import Settings, check_options
from actors._supervisor import SessionSupervisor
from actors._ticker import Ticker
from actors._ticket import CallTicket
from actors._validate import Duration, require_optional_str, require_step, require_str
from persistence import (
    SESSION_STATUSES,
    Database,
    InvalidArgument,
    Lease,
    NewSession,
    SessionDocument,
    SessionNotFound,
    SessionOwnedElsewhere,
    SessionSummary,
    SessionSupervisorError,
    StateRecord,
    Store,
    StoreUnavailable,
    _json,
)

log = structlog.get_logger("actors.manager")

_MISSING: Any = object()
_CHECKOUT_ATTEMPTS = 3
_REF_RECHECK = timedelta(seconds=1)
_REF_SLACK = 1024


class SessionManager(SeedAPI, Introspection, SideTables, AsyncTwins, RuntimeAPI):
    """Keeps conversational sessions alive, durable and bounded.

    Every method of the seed's ``SessionManager`` is here with the same arguments, return
    values and dict keys: ``create_session``, ``save_session_state``,
    ``load_session_state``, ``suspend_session``, ``resume_session``, ``complete_session``,
    ``delete_session``, ``list_sessions``, ``get_session_info``, ``start`` and ``stop``.
    Like the seed, they return ``False``/``None``/``[]`` on an expected failure (and log
    why); the typed methods (``create``, ``checkpoint``, ``load``, ``suspend``, ``resume``,
    ``complete``, ``expire``, ``delete``, ``info``, ``sessions``) raise the typed errors of
    :mod:`actors` instead. Every method of a closed manager (but ``close``, ``aclose``
    and ``stop``, which may be called again) raises ``ManagerClosed``, the seed's too:
    using a closed manager is a programming error, not an expected failure.

    All sync methods are safe from any thread and from inside a running event loop; the
    ``a``-prefixed twins await them without blocking the loop.

    Build one with :func:`create_session_manager`.
    """

    def __init__(
        self,
        db: Database,
        *,
        instance_id: str | None = None,
        session_ttl: Duration = timedelta(hours=24),
        cleanup_interval: Duration = 60.0,
        clock: Clock | None = None,
        lease_ttl: Duration = timedelta(seconds=30),
        max_live: int = 10_000,
        idle_timeout: Duration = timedelta(minutes=10),
        max_message_bytes: int | None = 1 << 20,
        max_state_bytes: int | None = 16 << 20,
        call_timeout: Duration = 30.0,
        max_restarts: int = 5,
        restart_window: Duration = timedelta(minutes=1),
        restart_backoff: Duration = timedelta(seconds=1),
        restart_backoff_max: Duration = timedelta(seconds=60),
        runtime_factory: RuntimeFactory | None = None,
        runtime_closer: RuntimeCloser | None = None,
    ) -> None:
        options = check_options(
            instance_id=instance_id,
            session_ttl=session_ttl,
            cleanup_interval=cleanup_interval,
            clock=clock,
            lease_ttl=lease_ttl,
            max_live=max_live,
            idle_timeout=idle_timeout,
            max_message_bytes=max_message_bytes,
            max_state_bytes=max_state_bytes,
            call_timeout=call_timeout,
            max_restarts=max_restarts,
            restart_window=restart_window,
            restart_backoff=restart_backoff,
            restart_backoff_max=restart_backoff_max,
            runtime_factory=runtime_factory,
            runtime_closer=runtime_closer,
        )
        self._settings = Settings.of(db, options)
        self._db = db
        self._cleanup_interval = options.cleanup_interval
        self._sweeping = False
        self._last_sweep = 0.0
        self._closed = False
        self._close_lock = threading.Lock()
        self._supervisor_ref = SessionSupervisor.start(self._settings)
        self._supervisor = self._supervisor_ref.proxy()
        # Live actors by session, so that a save is one hand-off instead of two; each entry
        # is re-checked with the supervisor (which keeps the LRU order) after _REF_RECHECK.
        self._refs: dict[str, tuple[pykka.ActorRef[Any], datetime]] = {}
        self._ref_recheck = min(options.idle_timeout / 4, _REF_RECHECK)
        # At least MIN_TICK_SECONDS: both settings were checked for that.
        interval = min(options.cleanup_interval, options.lease_ttl.total_seconds() / 3)
        self._ticker = Ticker(interval, self._tick, name="session-supervisor-ticker")
        self._ticker.start()
        self._elapsed = 0.0
        self._tick_interval = interval
        self._checkpoint_timings = CheckpointTimings()
        register_exit_hook(self)
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

    def _open_store(self) -> Store:
        """The store, once this manager is known to be open."""
        self._check_open()
        return self._db.store

    def _ask(
        self,
        session_id: str,
        message: Any,
        *,
        inline: bool = False,
        ticket: CallTicket | None = None,
    ) -> Any:
        """Send ``message`` to the session's actor, rehydrating it if needed.

        With ``inline``, an idle actor handles it in this thread (see ``ask_inline``).
        With a ``ticket`` (the one ``message`` carries), the timeout rule applies: given up
        while queued, the message is withdrawn; started, it is waited for (see
        ``ask_within``), and ``call_timeout`` counts from the ticket's creation.
        """
        self._check_open()
        timeout = self._settings.call_timeout
        for _ in range(_CHECKOUT_ATTEMPTS):
            try:
                wait = timeout if ticket is None else ticket.remaining()
                ref = self._checkout(session_id, wait)
                if inline:
                    return ask_inline(ref, message, wait, ticket)
                if ticket is not None:
                    return ask_within(ref, message, ticket)
                return ref.ask(message, timeout=timeout)
            except (pykka.ActorDeadError, ActorGone):
                # Not handled (a withdrawn ticket never started): it may go to a new actor.
                self._refs.pop(session_id, None)
                continue
            except pykka.Timeout:
                raise StoreUnavailable(
                    f"session {session_id!r} did not answer within {timeout}s"
                ) from None
        raise self._why_actors_stopped(session_id)

    def _why_actors_stopped(self, session_id: str) -> SessionSupervisorError:
        """The error for a session whose actors kept stopping before they answered.

        Several threads using a session that another process owns each spawn an actor that
        stops at once, refused; a thread may then only ever meet stopped actors. The stored
        row says why, so the caller gets the refusal itself rather than a vague error.
        """
        try:
            stored = self._db.store.state(session_id)
        except SessionSupervisorError as error:
            return error
        if stored is None:
            return SessionNotFound(session_id)
        # Held as a take judges it: another owner, and a lease not lapsed (or without end).
        lease = stored.lease_expires_at
        if stored.owner not in (None, self.instance_id) and (lease is None or lease >= self._now()):
            return SessionOwnedElsewhere(session_id, stored.owner)
        return StoreUnavailable(f"session {session_id!r} kept stopping; try again")

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
            self._db.store.release_all(self.instance_id)
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
        *,
        session_id: str | None = None,
    ) -> str:
        """Create a session owned by this manager; return its id (a UUID string).

        With ``session_id`` (1 to 36 printable characters, chosen by the caller) a retry
        is idempotent: when that session exists with the same ``mode``, ``config``,
        ``user_id`` and ``name``, its id is returned and nothing is written (a create
        whose answer was lost, a timeout); when it exists with other arguments,
        ``SessionExists``. Left out, ``name`` is ``<mode>_<first 8 characters of the id>``.

        Raises:
            InvalidArgument, NotSerializable: bad arguments (a ``mode`` that the
                manager's ``runtime_factory`` mapping has no entry for, too); nothing was
                written.
            SessionExists: another session has this ``session_id``.
            StoreUnavailable: the database refused the write.
        """
        self._check_open()
        mode = require_str("mode", mode, max_length=64)  # the width of session_states.mode
        runtimes = self._settings.runtimes
        if runtimes is not None and runtimes.builder_for(mode) is None:
            known = ", ".join(repr(m) for m in sorted(runtimes.by_mode))
            raise InvalidArgument(
                f"runtime_factory has no entry for mode {mode!r} (it has {known}):"
                " a session of that mode could never get a runtime; nothing was created"
            )
        user_id = require_optional_str("user_id", user_id)
        name = require_optional_str("name", name)
        if not isinstance(config, dict):
            raise InvalidArgument(f"config must be a dict, not {type(config).__name__}")
        config_json = _json.encode(config, "config", self._settings.max_state_bytes)
        settings = self._settings
        now = self._now()
        chosen = session_id is not None
        if session_id is None:
            session_id = str(uuid.uuid4())
            default_name = f"{mode}_{now:%Y%m%d_%H%M%S}"
        else:
            session_id = require_str("session_id", session_id, max_length=36)
            if not session_id.isprintable():
                raise InvalidArgument("session_id must be printable characters only")
            default_name = f"{mode}_{session_id[:8]}"  # the same on a retry
        new = NewSession(
            session_id=session_id,
            user_id=user_id,
            name=name or default_name,
            mode=mode,
            config_json=config_json,
            now=now,
            expires_at=settings.expiry(now),
            owner=settings.instance_id,
            lease_until=now + settings.lease_ttl,
            caller_id=chosen,
        )
        if not self._db.store.create_session(new):
            log.info("session.create_repeated", session_id=session_id)
            return session_id  # a retry of a create that committed: nothing written
        state = StateRecord(
            session_id, mode, "{}", None, "init", None, "active", now, now,
            new.expires_at, 1, 0, settings.instance_id, 1, new.lease_until,
        )  # fmt: skip
        try:
            ref = self._supervisor.adopt(session_id, Lease(state, {})).get(
                timeout=settings.call_timeout
            )
        except pykka.Timeout:  # committed all the same: it is rehydrated on first use
            log.warning("session.adopt_timeout", session_id=session_id)
        else:
            self._remember(session_id, ref, now)
        log.info("session.created", session_id=session_id, mode=mode, user_id=user_id)
        return session_id

    def checkpoint(  # noqa: PLR0917
        self,
        session_id: str,
        conversation_history: list[dict[str, Any]],
        context_variables: dict[str, Any] | None = None,
        current_phase: str | None = None,
        current_step: int | None = None,
        plan_data: dict[str, Any] | None = _MISSING,
        *,
        history_rewritten: bool | None = None,
    ) -> int:
        """Durably save a session's state; return its new version.

        Only the messages the database does not have yet are written. A history that was
        rewritten (truncated, summarised) is detected by sampling and stored again; pass
        ``history_rewritten=True`` if you edited a message in place in the middle.

        ``context_variables``, ``current_phase`` and ``plan_data`` left out (or ``None``)
        keep their stored values; ``current_step`` is stored as given.

        Raises:
            SessionNotFound, InvalidTransition (not active), SessionOwnedElsewhere,
            StaleSession, NotSerializable, PayloadTooLarge, InvalidArgument,
            StoreUnavailable. On any error nothing was stored.
        """
        self._check_open()
        session_id = require_str("session_id", session_id)
        if current_phase is not None:
            current_phase = require_str("current_phase", current_phase, allow_empty=True)
        require_step(current_step)
        if not isinstance(conversation_history, list):
            raise InvalidArgument(
                "conversation_history must be a list of message dicts,"
                f" not {type(conversation_history).__name__}"
            )
        if type(conversation_history) is not list:  # a subclass: the actor reads a plain copy
            try:
                conversation_history = list(conversation_history)
            except Exception as exc:
                raise _json.unreadable("conversation_history", exc) from exc
        if context_variables is not None and not isinstance(context_variables, dict):
            raise InvalidArgument(
                f"context_variables must be a dict or None, not {type(context_variables).__name__}"
            )
        limit = self._settings.max_state_bytes
        context_json = (
            None
            if context_variables is None
            else _json.encode(context_variables, "context_variables", limit)
        )
        set_plan = plan_data is not _MISSING and plan_data is not None
        plan_json = _json.encode(plan_data, "plan_data", limit) if set_plan else None
        ticket = CallTicket(self._settings.call_timeout)
        save = Save(
            conversation_history, context_json, current_phase, current_step, plan_json,
            set_plan, history_rewritten, ticket,
        )  # fmt: skip
        started = time.perf_counter()
        try:
            version: int = self._ask(session_id, save, inline=True, ticket=ticket)
        except BaseException:
            self._checkpoint_timings.failed()
            raise
        self._checkpoint_timings.record(time.perf_counter() - started)
        return version

    def _transition(self, session_id: str, action: str) -> int:
        self._check_open()
        session_id = require_str("session_id", session_id)
        ticket = CallTicket(self._settings.call_timeout)
        version: int = self._ask(session_id, Transition(action, ticket), ticket=ticket)
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
        self._check_open()
        session_id = require_str("session_id", session_id)
        self._supervisor.remove(session_id).get(timeout=self._settings.call_timeout)
        deleted = self._open_store().delete_session(session_id, self.instance_id, self._now())
        if not deleted:
            raise SessionNotFound(session_id)
        log.info("session.deleted", session_id=session_id)

    def load(self, session_id: str) -> dict[str, Any]:
        """The whole state of a session in any status, as the seed's dict (+ extra keys).

        Raises:
            SessionNotFound: it does not exist.
        """
        return self._stored_state(session_id)

    def _stored_state(self, session_id: str) -> dict[str, Any]:
        """The whole stored state with the seed's keys and types (datetimes), any status.

        ``load_session_state`` returns this; its callers rely on the seed's types.
        """
        self._check_open()
        session_id = require_str("session_id", session_id)
        document: SessionDocument | None = self._db.store.load(session_id)
        if document is None:
            raise SessionNotFound(session_id)
        return state_dict(document)

    def info(self, session_id: str) -> dict[str, Any]:
        """A session's summary (the seed's ``get_session_info`` dict + extra keys).

        Raises:
            SessionNotFound: it does not exist.
        """
        self._check_open()
        session_id = require_str("session_id", session_id)
        summary: SessionSummary | None = self._db.store.session_info(session_id)
        if summary is None:
            raise SessionNotFound(session_id)
        return info_dict(summary)

    def sessions(
        self,
        user_id: str | None = None,
        status: str | None = None,
        mode: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Summaries of the sessions matching the filters, most recently updated first.

        Each is the seed's ``list_sessions`` dict (times as ISO-8601 strings).

        Raises:
            InvalidArgument: an unknown ``status`` (not one of ``active``, ``suspended``,
                ``completed``, ``expired``), a filter that is not a str, or a ``limit``
                that is not a positive int.
        """
        self._check_open()
        user_id = require_optional_str("user_id", user_id)
        status = require_optional_str("status", status)
        if status is not None and status not in SESSION_STATUSES:
            raise InvalidArgument(
                f"status must be one of {', '.join(SESSION_STATUSES)} or None, not {status!r}"
            )
        if mode is not None:
            mode = require_str("mode", mode, max_length=64)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidArgument(f"limit must be a positive int, not {limit!r}")
        # Past a 32-bit count a limit means "all"; the databases refuse wider values.
        rows = self._db.store.list_sessions(user_id, status, mode, min(limit, 2**31 - 1))
        return [listing_dict(row) for row in rows]
