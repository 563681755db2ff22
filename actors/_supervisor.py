"""The supervisor: the only registry of live session actors."""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pykka
import structlog

from actors import _crashes
from actors._clock import earlier
from actors._errors import SessionFailed, TooManyActors
from actors._mailbox import QUEUE_IT, QuickActor, TurnInbox
from actors._messages import Passivate, Warm
from actors._session import SessionActor
from actors._settings import Settings
from persistence import Lease, SessionSupervisorError

log = structlog.get_logger("actors.supervisor")

#: How many actors past the excess an eviction looks at, to step over busy ones.
_BUSY_SLACK = 16
#: The share of ``cleanup_interval`` within which another process's sweep counts as this
#: tick's: ticks come a little late or early, and a process must not skip its own turn.
_SWEEP_SLACK = 0.9


@dataclass
class _Live:
    ref: pykka.ActorRef[Any]
    last_used: datetime
    # Held by a unit of work on the session: the actor is in use, never passivated then.
    work_lock: threading.Lock
    epoch: int | None = None


@dataclass
class SupervisorStats:
    """Counters since the supervisor started."""

    spawned: int = 0
    rehydrations: int = 0
    passivations: int = 0
    restarts: int = 0
    crashes: int = 0
    expirations: int = 0
    lease_takeovers: int = 0
    leases_lost: int = 0
    sweeps: int = 0
    #: Periodic sweeps left to another process that swept within the interval.
    sweeps_skipped: int = 0
    #: Completed and expired sessions deleted for being older than ``retention``.
    sessions_purged: int = 0
    #: Sessions handed over to another process that asked for them.
    handoffs: int = 0
    #: Hand-offs refused because a unit of work held the session.
    handoffs_refused: int = 0


class SessionSupervisor(QuickActor):
    """Spawns, rehydrates, passivates, reaps and restarts session actors.

    Call it through its proxy. Session actors only ever *tell* it (never wait on it), and
    it only waits on session actors to stop, so the two can never deadlock.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._settings = settings
        self._live: OrderedDict[str, _Live] = OrderedDict()
        self._stopping: dict[str, pykka.Future[bool]] = {}
        self._failures: dict[str, _crashes.Crashes] = {}
        self._stats = SupervisorStats()
        self._self_proxy: pykka.ActorProxy[Any] | None = None

    def on_start(self) -> None:
        """Cache our own proxy for the session actors."""
        self._self_proxy = self.actor_ref.proxy()

    # ------------------------------------------------------------------ registry

    def checkout(self, session_id: str) -> pykka.ActorRef[Any]:
        """The live actor of a session, spawning one (lazy rehydration) if needed.

        Raises:
            SessionFailed: the session crashed too often recently.
        """
        entry = self._live.get(session_id)
        now = self._settings.now()
        if entry is not None and entry.ref.is_alive():
            entry.last_used = now
            self._live.move_to_end(session_id)
            return entry.ref
        self._check_failures(session_id)
        self._await_stopped(session_id)
        ref = self._spawn(session_id, None)
        self._stats.rehydrations += 1
        record = self._failures.get(session_id)
        if record is not None and record.restart_at is not None:
            # A caller is waiting: its request restarts the session now, not at the end of
            # the backoff; the crash window still bounds how often that can happen.
            record.restart_at = None
            self._stats.restarts += 1
            log.warning("session.restarted", session_id=session_id, on_demand=True)
        return ref

    def reserve(self, session_id: str) -> pykka.ActorRef[Any] | None:
        """Start the actor of a session about to be created; ``None`` if one is live.

        Started before the create commits (and told its state after), so that a process out
        of threads refuses the create (``TooManyActors``) with nothing written.
        """
        entry = self._live.get(session_id)
        if entry is not None and entry.ref.is_alive():
            return None
        self._await_stopped(session_id)
        return self._spawn(session_id, None)

    def _spawn(self, session_id: str, lease: Lease | None) -> pykka.ActorRef[Any]:
        assert self._self_proxy is not None  # noqa: S101 - set in on_start
        work_lock = threading.Lock()
        ref = SessionActor.start(session_id, self._settings, self._self_proxy, lease, work_lock)
        self._live[session_id] = _Live(ref, self._settings.now(), work_lock)
        self._stats.spawned += 1
        self._evict_over_limit(spared=session_id)
        return ref

    def _evict_over_limit(self, spared: str) -> None:
        """Passivate the least recently used actors over ``max_live``, but ``spared``.

        Actors in a unit of work are skipped: with all of them busy the limit is exceeded
        until a later spawn finds some idle again.
        """
        excess = len(self._live) - self._settings.max_live
        if excess <= 0:
            return
        candidates = (session_id for session_id in self._live if session_id != spared)
        for session_id in list(itertools.islice(candidates, excess + _BUSY_SLACK)):
            if excess == 0:
                break
            if self._passivate(session_id):
                excess -= 1

    def _passivate(self, session_id: str, to: str | None = None) -> bool:
        """Stop an idle actor (its state is durable); ``False`` if a unit of work holds it.

        The work lock is held while the stop is queued: a unit of work that was about to
        start then finds the actor stopped and moves on to its successor.
        """
        entry = self._live[session_id]
        if not entry.work_lock.acquire(blocking=False):
            return False
        try:
            self._tell_passivate(session_id, entry.ref, Passivate(to))
            del self._live[session_id]
            self._stopping[session_id] = entry.ref.stop(block=False)
        except TooManyActors:  # busy inline, and no thread to queue on: try again later
            log.warning("session.passivation_deferred", session_id=session_id)
            return False
        finally:
            entry.work_lock.release()
        self._stats.passivations += 1
        return True

    def _tell_passivate(self, session_id: str, ref: pykka.ActorRef[Any], message: Any) -> None:
        """Passivate in this thread an actor that has none; else queue it (its thread's)."""
        inbox = ref.actor_inbox
        try:
            done = (
                inbox.run_inline(ref.actor_stopped, message, parked=True)
                if isinstance(inbox, TurnInbox)
                else QUEUE_IT
            )
        except Exception as error:  # noqa: BLE001 - the actor's failure, not ours: it stops
            log.warning("session.passivate_failed", session_id=session_id, error=repr(error))
            return
        if done is QUEUE_IT:
            ref.tell(message)

    def _retire(self, session_id: str) -> None:
        entry = self._live.pop(session_id, None)
        if entry is not None:
            try:
                self._stopping[session_id] = entry.ref.stop(block=False)
            except TooManyActors:  # busy inline and no thread to queue the stop on
                log.warning("session.stop_deferred", session_id=session_id)

    def _await_stopped(self, session_id: str) -> None:
        future = self._stopping.pop(session_id, None)
        if future is not None:
            try:
                future.get(timeout=self._settings.call_timeout)
            except pykka.Timeout:
                log.error("session.stop_timeout", session_id=session_id)

    def _check_failures(self, session_id: str) -> None:
        _crashes.check(self._failures, session_id, self._settings)

    def reset_failures(self, session_id: str) -> None:
        """Allow a session that crashed too often to be restarted again (on its next use)."""
        self._failures.pop(session_id, None)

    def failures(self, session_id: str) -> dict[str, Any]:
        """A session's recent crashes: their count in the window and the pending restart."""
        return _crashes.summary(self._failures, session_id, self._settings)

    # ------------------------------------------------------------------ told by actors

    def loaded(
        self, session_id: str, ref: pykka.ActorRef[Any], epoch: int, taken_over: bool = False
    ) -> None:
        """A session actor took its lease at ``epoch`` (from a lapsed owner if ``taken_over``)."""
        if taken_over:
            self._stats.lease_takeovers += 1
        entry = self._live.get(session_id)
        if entry is not None and entry.ref is ref:
            entry.epoch = epoch

    def forget(self, session_id: str, ref: pykka.ActorRef[Any], reason: str) -> None:
        """A session actor stops for good (completed, expired, lost its lease ...)."""
        entry = self._live.get(session_id)
        if entry is not None and entry.ref is ref:
            self._retire(session_id)
        if reason == "lease lost":
            self._stats.leases_lost += 1
        log.debug("session.forgotten", session_id=session_id, reason=reason)

    def crashed(self, session_id: str, ref: pykka.ActorRef[Any], error: str) -> None:
        """A session actor failed: restart it from its last checkpoint, within limits."""
        self._stats.crashes += 1
        entry = self._live.get(session_id)
        if entry is None or entry.ref is not ref:
            return
        self._retire(session_id)
        now = self._settings.now()
        record = self._failures.setdefault(session_id, _crashes.Crashes())
        record.times.append(now)
        record.restart_at = None
        try:
            self._check_failures(session_id)
        except SessionFailed as failed:
            log.error("session.crash_loop", session_id=session_id, error=str(failed))
            return
        delay = _crashes.backoff(self._settings, len(record.times))
        if delay > timedelta(0):
            record.restart_at = now + delay
            log.warning(
                "session.restart_scheduled",
                session_id=session_id,
                after=error,
                delay_seconds=delay.total_seconds(),
            )
            return
        self._restart(session_id, error)

    def _restart(self, session_id: str, error: str | None) -> None:
        self._await_stopped(session_id)
        try:
            new_ref = self._spawn(session_id, None)
            new_ref.tell(Warm())
        except TooManyActors as refused:  # the next use of the session loads it
            log.error("session.restart_failed", session_id=session_id, error=str(refused))
            return
        self._stats.restarts += 1
        log.warning("session.restarted", session_id=session_id, after=error)

    def restart_due(self) -> int:
        """Restart the crashed sessions whose backoff is over; return how many.

        Runs on every tick and sweep; a session used before its backoff is over is
        restarted by that use instead.
        """
        now = self._settings.now()
        due = [
            sid
            for sid, record in self._failures.items()
            if record.restart_at is not None and record.restart_at <= now
        ]
        for session_id in due:
            self._failures[session_id].restart_at = None
            if session_id in self._live:
                continue
            try:
                self._check_failures(session_id)
            except SessionFailed:
                continue
            self._restart(session_id, None)
        return len(due)

    # ------------------------------------------------------------------ periodic work

    def remove(self, session_id: str) -> None:
        """Stop a session's live actor (if any) and wait until it stopped."""
        self._retire(session_id)
        self._await_stopped(session_id)

    def sweep(self, periodic: bool = False) -> dict[str, int]:
        """Expire idle sessions, stale approvals and dead connections; passivate idle actors.

        A ``periodic`` sweep leaves the database's part to another process that started
        one within the last ``cleanup_interval`` (minus a tenth, for the ticks' jitter);
        this process's own actors are passivated either way.
        """
        settings = self._settings
        now = settings.now()
        retention = settings.retention
        counts = settings.db.store.sweep(
            now,
            now - settings.connection_timeout,
            sweeper=settings.instance_id,
            unless_swept_within=settings.cleanup_interval * _SWEEP_SLACK if periodic else None,
            purge_before=None if retention is None else earlier(now, retention),
        )
        self._stats.sweeps_skipped += counts.skipped
        self._stats.sessions_purged += counts.sessions_purged
        for session_id in counts.expired_sessions:
            log.info("session.expired", session_id=session_id)
            self._retire(session_id)
        self._stats.expirations += len(counts.expired_sessions)
        idle_before = earlier(now, settings.idle_timeout)  # saturated: "never" is fine
        idle = [sid for sid, entry in self._live.items() if entry.last_used < idle_before]
        idle = [session_id for session_id in idle if self._passivate(session_id)]
        for session_id in list(self._stopping):
            self._await_stopped(session_id)
        self.restart_due()
        self._stats.sweeps += 1
        result = {
            "sessions_expired": len(counts.expired_sessions),
            "approvals_expired": counts.approvals_expired,
            "connections_removed": counts.connections_removed,
            "passivated": len(idle),
            "sessions_purged": counts.sessions_purged,
        }
        if any(result.values()):
            log.info("sweep.done", **result)
        return result

    def renew_leases(self) -> int:
        """Extend this process's leases; stop the actors whose lease was taken over."""
        settings = self._settings
        epochs = {sid: e.epoch for sid, e in self._live.items() if e.epoch is not None}
        if not epochs:
            return 0
        try:
            lost = settings.db.store.renew_leases(
                settings.instance_id, settings.now() + settings.lease_ttl, epochs
            )
        except SessionSupervisorError as error:
            log.warning("lease.renew_failed", error=str(error))
            return 0
        for session_id in lost:
            log.warning("lease.lost", session_id=session_id)
            self._stats.leases_lost += 1
            self._retire(session_id)
        return len(epochs) - len(lost)

    def hand_off(self, session_id: str, to: str) -> str:
        """Another process (``to``) asks for a session: passivate it, handing it the lease.

        Returns:
            ``"handed"`` (the actor hands the lease over as it stops), ``"refused"`` (a
            unit of work holds the session) or ``"absent"`` (no live actor here).
        """
        if session_id not in self._live:
            return "absent"
        if not self._passivate(session_id, to):
            self._stats.handoffs_refused += 1
            log.info("handoff.refused", session_id=session_id, to=to, reason="unit_of_work")
            return "refused"
        self._stats.handoffs += 1
        return "handed"

    # ------------------------------------------------------------------ introspection

    def live_sessions(self) -> list[str]:
        """Ids of the sessions with a live actor, least recently used first."""
        return list(self._live)

    def stats(self) -> dict[str, int]:
        """Live actors and the counters since start."""
        return {"live_actors": len(self._live), **vars(self._stats)}

    def shutdown(self, timeout: float) -> None:
        """Stop every session actor (their state is already durable) and wait for them."""
        for session_id in list(self._live):
            self._retire(session_id)
        deadline = time.monotonic() + timeout
        for session_id, future in list(self._stopping.items()):
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except pykka.Timeout:
                log.error("session.stop_timeout", session_id=session_id)
            del self._stopping[session_id]
