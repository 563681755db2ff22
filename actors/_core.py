"""What the manager's methods share: settings, store, supervisor, and the way to an actor.

:class:`SessionManager` is the façade; each of its methods is a short call into a module
of plain functions (``_typed``, ``_seed``, ``_approvals``, ``_connections``, ``_work``,
``_introspect``) that take this ``Core``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pykka
import structlog

from actors._errors import ManagerClosed
from actors._handoff import HandoffDesk
from actors._housekeeping import Housekeeping
from actors._mailbox import ask_inline, ask_within
from actors._messages import ActorGone
from actors._metrics import CheckpointTimings
from actors._settings import Options, Settings
from actors._supervisor import SessionSupervisor
from actors._ticket import CallTicket
from actors._twins import AsyncPool
from actors._waiters import ApprovalWaiters
from persistence import (
    CreatedBeforeFork,
    Database,
    SessionNotFound,
    SessionOwnedElsewhere,
    SessionSupervisorError,
    Store,
    StoreUnavailable,
)

log = structlog.get_logger("actors.manager")

T = TypeVar("T")

_CHECKOUT_ATTEMPTS = 3
_REF_RECHECK = timedelta(seconds=1)
_REF_SLACK = 1024
#: Seconds close() gives the supervisor past call_timeout (it may be finishing a message).
_CLOSE_GRACE = 1.0


class Core:
    """The manager's state and plumbing; one per :class:`SessionManager`.

    Attributes:
        settings: the checked settings.
        db: the open database.
        supervisor: a proxy of the supervisor actor.
        checkpoint_timings: latencies of the latest checkpoints, for ``stats()``.
        async_pool: the threads behind the ``a``-prefixed twins.
        approval_waiters: who waits for which approval (woken by ``resolve_approval``).
        housekeeping: lease renewals, restarts and the periodic sweep, on a thread.
    """

    def __init__(self, db: Database, options: Options) -> None:
        self.settings = Settings.of(db, options)
        self.db = db
        self.cleanup_interval = options.cleanup_interval
        self._closed = False
        self._close_lock = threading.Lock()
        self._pid = os.getpid()
        self.supervisor_ref = SessionSupervisor.start(self.settings)
        self.supervisor = self.supervisor_ref.proxy()
        # Live actors by session, so that a save is one hand-off instead of two; each entry
        # is re-checked with the supervisor (which keeps the LRU order) after _REF_RECHECK.
        self._refs: dict[str, tuple[pykka.ActorRef[Any], datetime]] = {}
        self._ref_recheck = min(options.idle_timeout / 4, _REF_RECHECK)
        self.checkpoint_timings = CheckpointTimings()
        self.async_pool = AsyncPool(self.check_open)
        self.approval_waiters = ApprovalWaiters()
        self.handoff = HandoffDesk(self.settings, self.supervisor)
        # At least MIN_TICK_SECONDS: both settings were checked for that.
        interval = min(options.cleanup_interval, options.lease_ttl.total_seconds() / 3)
        self.housekeeping = Housekeeping(
            self.supervisor,
            cleanup_interval=options.cleanup_interval,
            tick_interval=interval,
            autostart=options.autostart,
        )

    @property
    def instance_id(self) -> str:
        """This manager's identity as a lease owner."""
        return self.settings.instance_id

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._closed

    def now(self) -> datetime:
        """The injected clock's time."""
        return self.settings.now()

    def check_open(self) -> None:
        """Raise ``ManagerClosed`` once the manager is closed."""
        if self._closed:
            raise ManagerClosed
        if self.db.forked:
            raise CreatedBeforeFork("SessionManager", self._pid)

    def store(self) -> Store:
        """The store, once the manager is known to be open."""
        self.check_open()
        return self.db.store

    def ask(
        self,
        session_id: str,
        message: Any,
        *,
        inline: bool = False,
        ticket: CallTicket | None = None,
    ) -> Any:
        """Send ``message`` to the session's actor; another live owner is asked to hand over.

        Refused with ``SessionOwnedElsewhere``, the call asks the owner for the session
        (see :mod:`actors._handoff`) and runs again once it may take it, for at most
        ``handoff_wait`` and never past its own deadline.
        """
        deadline: float | None = None
        while True:
            try:
                return self._ask(session_id, message, inline=inline, ticket=ticket)
            except SessionOwnedElsewhere as refused:
                if deadline is None:
                    left = self.settings.call_timeout if ticket is None else ticket.remaining()
                    deadline = self.handoff.deadline(left)
                if not self.handoff.obtain(session_id, refused.owner, deadline):
                    raise
                if ticket is not None:
                    ticket.requeue()  # refused before it changed anything: sent again
                self._refs.pop(session_id, None)

    def with_handoff(self, session_id: str, write: Callable[[], T]) -> T:
        """``write()``, run again after a hand-off if another live owner refused it."""
        deadline = self.handoff.deadline(self.settings.call_timeout)
        while True:
            try:
                return write()
            except SessionOwnedElsewhere as refused:
                if not self.handoff.obtain(session_id, refused.owner, deadline):
                    raise

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
        self.check_open()
        timeout = self.settings.call_timeout
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
            stored = self.db.store.state(session_id)
        except SessionSupervisorError as error:
            return error
        if stored is None:
            return SessionNotFound(session_id)
        # Held as a take judges it: another owner, and a lease not lapsed (or without end).
        lease = stored.lease_expires_at
        if stored.owner not in (None, self.instance_id) and (lease is None or lease >= self.now()):
            return SessionOwnedElsewhere(session_id, stored.owner)
        return StoreUnavailable(f"session {session_id!r} kept stopping; try again")

    def _checkout(self, session_id: str, timeout: float) -> pykka.ActorRef[Any]:
        """The session's live actor: from the cache, or from the supervisor (rehydrating)."""
        now = self.now()
        cached = self._refs.get(session_id)
        if cached is not None and now - cached[1] < self._ref_recheck:
            return cached[0]
        ref: pykka.ActorRef[Any] = self.supervisor.checkout(session_id).get(timeout=timeout)
        self.remember(session_id, ref, now)
        return ref

    def remember(self, session_id: str, ref: pykka.ActorRef[Any], now: datetime) -> None:
        """Cache the session's live actor, so that its next call skips the supervisor."""
        refs = self._refs
        if len(refs) >= self.settings.max_live + _REF_SLACK:
            refs.clear()  # mostly passivated actors by now; live ones come back on use
        refs[session_id] = (ref, now)

    def sweep(self) -> dict[str, int]:
        """Run one cleanup pass now; return its counts."""
        self.check_open()
        result: dict[str, int] = self.supervisor.sweep().get(timeout=self.settings.call_timeout * 2)
        return result

    def close(self) -> None:
        """Stop every actor, release the leases, commit pending writes, close the store."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self.db.forked:  # the actors and the writer live in the parent process
            self.db.close()
            return
        self.housekeeping.close()
        self.handoff.close()
        self.approval_waiters.notify_all()  # each raises ManagerClosed
        # Bounded by call_timeout plus a second or two: an actor busy in the host's code (a
        # run_in_actor step) is not waited for past that; its thread is a daemon, so it
        # does not hold the process either, and its lease is released below all the same.
        timeout = self.settings.call_timeout
        try:
            self.supervisor.shutdown(timeout).get(timeout=timeout + _CLOSE_GRACE)
            self.supervisor_ref.stop(block=True, timeout=_CLOSE_GRACE)
        except Exception as exc:  # noqa: BLE001 - closing goes on whatever happens
            log.error("manager.shutdown_failed", error=repr(exc))
        try:
            self.db.store.release_all(self.instance_id)
        except SessionSupervisorError as error:
            log.warning("lease.release_failed", error=str(error))
        self.db.close()
        self.async_pool.close()
        log.info("manager.closed", instance_id=self.instance_id)
