"""The session actor: the one owner of a live session's state."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pykka
import structlog

from actors._delta import Delta, StoredHistory
from actors._documents import json_state_dict
from actors._handoff import hand_over
from actors._mailbox import QuickActor
from actors._messages import (
    ActorGone,
    Adopt,
    Append,
    Describe,
    LiveState,
    Passivate,
    Save,
    Transition,
    Warm,
)
from actors._runtime import DiscardRuntime, RunInActor, RuntimeSlot, UseRuntime
from actors._session_save import (
    TRANSITIONS,
    apply_checkpoint,
    apply_transition,
    build_checkpoint,
    plan_append,
    plan_save,
)
from actors._snapshot import snapshot_save
from actors._ticket import CallTicket, Withdrawn
from persistence import (
    InvalidTransition,
    Lease,
    SessionNotFound,
    SessionOwnedElsewhere,
    SessionSupervisorError,
    StaleSession,
    StateRecord,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from actors._settings import Settings

log = structlog.get_logger("actors.session")


class SessionActor(QuickActor):
    """Owns one live session: its status, version, lease epoch, context and phase.

    Every change to the session is a message to this actor, handled one at a time, and
    acknowledged only after the database committed it. The history itself stays in the
    database: the actor keeps its length and O(log n) sampled rows (or, with
    ``history_check="full"``, a hash per row), enough to tell an append or a slid window
    from a rewritten history without reading it (see :mod:`actors._delta`).

    The state is loaded lazily, by the first message (or :class:`Warm`), from the last
    checkpoint, taking the session's lease; so spawning is cheap and never fails. The
    actor has a thread only while it has queued work (saves from an idle actor's callers
    run in their own threads): an idle actor without a runtime gives its thread back. With
    a ``runtime_factory`` it starts with one, as units of work will queue.
    """

    park_idle_thread = True

    def __init__(
        self,
        session_id: str,
        settings: Settings,
        supervisor: pykka.ActorProxy[Any],
        lease: Lease | None = None,
        work_lock: threading.Lock | None = None,
    ) -> None:
        super().__init__()
        self.session_id = session_id
        self._settings = settings
        self._supervisor = supervisor
        self._state: StateRecord | None = None
        self._history = StoredHistory(0, 0, {})
        self._gone = False
        # Set when a write failed without an answer: it may have committed all the same.
        self._uncertain = False
        # Set when the lease is (or turned out to be) held elsewhere: the messages queued
        # behind that answer get it too, rather than a retry that would ask the database
        # the same question again.
        self._owned_by: tuple[str | None] | None = None
        self._log = log.bind(session_id=session_id)
        # The session's live runtime, if the manager has a runtime_factory: held only here.
        self._ticket: CallTicket | None = None  # of the message being handled, if any
        self._runtime_slot = RuntimeSlot(session_id, settings.runtimes, self._log, work_lock)
        if lease is not None:
            self._adopt(lease)

    # ------------------------------------------------------------------ pykka hooks

    def on_receive(self, message: Any) -> Any:
        """Dispatch one message; an unexpected error crashes the actor (supervised)."""
        if self._gone:
            if self._owned_by is not None:
                raise SessionOwnedElsewhere(self.session_id, self._owned_by[0])
            raise ActorGone(self.session_id)
        try:
            return self._dispatch(message)
        except SessionSupervisorError:
            raise
        except Exception as exc:
            self._crash(exc)
            raise

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        """A told message failed: report the crash so the supervisor restarts us."""
        if not self._gone:
            self._crash(exception_value)
        self._runtime_slot.close("crashed")  # pykka runs no on_stop after a failure

    def on_stop(self) -> None:
        """Close the runtime (passivated, expired, deleted, or the manager closed)."""
        self._runtime_slot.close("stopped")

    def may_park(self) -> bool:
        """A runtime keeps its actor's thread: it was built there and is closed there."""
        return not self._runtime_slot.built

    def thread_at_start(self) -> bool:
        """With a ``runtime_factory`` the units of work queue: start with the thread."""
        return self._settings.runtimes is not None

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, message: Any) -> Any:
        match message:
            case Save(ticket=ticket) | Transition(ticket=ticket) if ticket is not None:
                # The timeout rule: a caller that gave up first withdrew it; otherwise it
                # starts now, and its writes are bounded by the caller's deadline.
                if not ticket.start():
                    raise Withdrawn(f"session {self.session_id!r}: the caller gave up")
                self._ticket = ticket
                try:
                    if isinstance(message, Save):
                        return self._save(message)
                    return self._transition(message.action)
                finally:
                    self._ticket = None
            case Save():
                return self._save(message)
            case Append():
                return self._append(message)
            case Transition(action=action):
                return self._transition(action)
            case Describe():
                return self._describe()
            case Warm():
                self._loaded()
                return None
            case Adopt(lease=lease):
                self._adopt_created(lease)
                return None
            case Passivate(to=to):
                return self._passivate(to)
            case UseRuntime() | DiscardRuntime() | RunInActor():
                return self._runtime_slot.receive(message, self._runtime_state)
            case _:
                msg = f"session actor got an unknown message {message!r}"
                raise TypeError(msg)

    def _crash(self, exc: BaseException) -> None:
        self._gone = True
        self._runtime_slot.close("crashed")
        self._log.error("session.crashed", error=repr(exc), exc_info=exc)
        self._supervisor.crashed(self.session_id, self.actor_ref, repr(exc))
        self.stop()

    def _leave(self, reason: str) -> None:
        """Stop serving this session (terminal status, lost lease, failed load)."""
        self._gone = True
        self._runtime_slot.close(reason)
        self._supervisor.forget(self.session_id, self.actor_ref, reason)
        self.stop()

    def _timeout(self) -> float | None:
        """Seconds the current caller still waits (``None``: the store's own timeout)."""
        ticket = self._ticket
        return None if ticket is None else ticket.remaining()

    def snapshot(self, message: Any) -> Any:
        """A save about to wait in the inbox, independent of the caller's objects.

        Runs in the caller's thread (see ``QuickActor.snapshot`` and
        :func:`actors._snapshot.snapshot_save`); this actor's count of stored messages is
        read without its turn, only as a hint.
        """
        if not isinstance(message, Save):
            return message
        state = self._state
        known = 0 if state is None else state.message_count
        return snapshot_save(message, known, self._settings.max_message_bytes)

    # ------------------------------------------------------------------ state

    def _adopt(self, lease: Lease) -> None:
        self._state = lease.state
        state = lease.state
        store = self._settings.db.store
        session_id = self.session_id
        self._history = StoredHistory(
            state.message_count,
            lease.base,
            lease.samples,
            full=self._settings.history_check == "full",
            read_rows=lambda: store.message_rows(session_id),
        )
        self._log = log.bind(session_id=self.session_id, mode=state.mode)

    def _adopt_created(self, lease: Lease) -> None:
        """Take the state of the session just created here (unless a request loaded it)."""
        if self._state is None:
            self._adopt(lease)
            self._supervisor.loaded(self.session_id, self.actor_ref, lease.state.epoch)

    def _loaded(self, action: str = "open") -> StateRecord:
        """The state, rehydrated from the last checkpoint (taking the lease) if needed.

        Args:
            action: what the caller wants to do, named in an ``InvalidTransition``.
        """
        if self._state is not None:
            return self._state
        settings = self._settings
        now = settings.now()
        try:
            lease = settings.db.store.take_lease(
                self.session_id,
                settings.instance_id,
                now,
                now + settings.lease_ttl,
                self._timeout(),
            )
        except InvalidTransition as error:
            self._leave("load failed: InvalidTransition")
            raise InvalidTransition(self.session_id, error.status, action) from None
        except SessionSupervisorError as error:
            if isinstance(error, SessionOwnedElsewhere):
                self._owned_by = (error.owner,)
            self._leave(f"load failed: {type(error).__name__}")
            raise
        self._adopt(lease)
        assert self._state is not None  # noqa: S101 - set by _adopt
        taken_over = lease.taken_from is not None
        self._supervisor.loaded(self.session_id, self.actor_ref, self._state.epoch, taken_over)
        if taken_over:
            self._log.warning("lease.taken_over", previous_owner=lease.taken_from)
        self._log.info(
            "session.rehydrated",
            version=self._state.version,
            epoch=self._state.epoch,
            messages=self._state.message_count,
            status=self._state.status,
        )
        return self._state

    def _refresh(self) -> None:
        """Re-read the state row after a lost compare-and-set."""
        state = self._state
        assert state is not None  # noqa: S101 - only called once loaded
        db = self._settings.db
        current = db.store.state(self.session_id)
        if current is None:
            self._leave("deleted elsewhere")
            raise SessionNotFound(self.session_id)
        if current.epoch != state.epoch:
            self._lost_lease(current.owner)
        self._state = current

    def _lost_lease(self, owner: str | None) -> None:
        self._log.warning("lease.lost", new_owner=owner)
        self._owned_by = (owner,)
        self._leave("lease lost")
        raise SessionOwnedElsewhere(self.session_id, owner)

    def _runtime_state(self) -> dict[str, Any]:
        """The last checkpoint, whole, for the runtime factory."""
        self._loaded("runtime")
        db = self._settings.db
        document = db.store.load(self.session_id)
        if document is None:
            self._leave("deleted elsewhere")
            raise SessionNotFound(self.session_id)
        return json_state_dict(document)

    def _describe(self) -> LiveState:
        return LiveState.of(self.session_id, self._loaded())

    # ------------------------------------------------------------------ save

    def _current(self, action: str) -> StateRecord:
        """The state to write from, checked against the database after a lost answer.

        A write refused with ``StoreUnavailable`` (a connection dropped after COMMIT, a
        timeout) may have committed all the same. Before the next write the state row is
        read again: if that write did commit, the session is reloaded from it, so the next
        request is not refused as stale (nor appended to a history that was rewritten).
        """
        state = self._loaded(action)
        if not self._uncertain:
            return state
        db = self._settings.db
        stored = db.store.state(self.session_id)  # unreachable: stays uncertain
        self._uncertain = False
        if stored is None:
            self._leave("deleted elsewhere")
            raise SessionNotFound(self.session_id)
        if stored.epoch != state.epoch:
            self._lost_lease(stored.owner)
        if stored.version == state.version:
            return state
        self._log.info("session.reloaded_after_lost_answer", version=stored.version)
        self._state = None
        return self._loaded(action)

    def _save(self, save: Save) -> int:
        state = self._current("save")
        if state.status != "active":
            raise InvalidTransition(self.session_id, state.status, "save")
        delta = plan_save(self._history, save, self._settings.max_message_bytes)
        version = self._write(save, delta, save.expected_version)
        self._history.applied(delta, save.history)
        if delta.kind == "rewrite":
            self._log.info(
                "session.history_rewritten", messages=len(save.history), first=delta.first
            )
        return version

    def _append(self, append: Append) -> int:
        state = self._current("save")
        if state.status != "active":
            raise InvalidTransition(self.session_id, state.status, "save")
        limit = self._settings.max_message_bytes
        save, delta = plan_append(append, state, self._history.count, limit)
        version = self._write(save, delta, None)
        self._history.appended(delta.rows)
        return version

    def _write(self, save: Save, delta: Delta, expected_version: int | None) -> int:
        """Commit ``delta`` with the rest of ``save``; update the state once committed.

        With ``expected_version``, the database applies it only if the stored version is
        that one (the fenced update compares it; a caller's lost compare-and-set is a
        ``StaleSession``, like any other, and changes nothing).
        """
        state = self._state
        assert state is not None  # noqa: S101 - loaded by the caller
        request = (save, delta, self._history.base)
        checkpoint = build_checkpoint(
            self.session_id, state, self._settings, request, expected_version
        )
        store = self._settings.db.store
        version = self._fenced(lambda: store.checkpoint(checkpoint, self._timeout()))
        logged = apply_checkpoint(state, checkpoint, version)
        self._log.debug(
            "session.checkpointed",
            **logged,
            shape=delta.kind,
            new_messages=len(delta.rows),
            dropped=delta.dropped,
        )
        return version

    def _fenced(self, write: Callable[[], int]) -> int:
        """Run a fenced write; on a refusal, bring the held state in line with the database."""
        try:
            return write()
        except SessionOwnedElsewhere as error:
            self._lost_lease(error.owner)
            raise
        except (StaleSession, InvalidTransition):
            self._refresh()
            raise
        except StoreUnavailable:
            self._uncertain = True
            raise

    # ------------------------------------------------------------------ lifecycle

    def _transition(self, action: str) -> int:
        state = self._current(action)
        from_statuses, to_status, release, event = TRANSITIONS[action]
        if state.status not in from_statuses:
            raise InvalidTransition(self.session_id, state.status, action)
        settings = self._settings
        now = settings.now()
        expires_at = settings.expiry(now) if to_status == "active" else None
        store = settings.db.store

        def write() -> int:
            return store.transition(
                self.session_id, state.epoch, state.version, from_statuses, to_status,
                action, now, expires_at, release, self._timeout(),
            )  # fmt: skip

        version = self._fenced(write)
        apply_transition(state, to_status, version, now, expires_at)
        self._log.info(event, version=version)
        if release:
            self._leave(to_status)
        return version

    def _passivate(self, to: str | None = None) -> None:
        """Give the session up (release or hand over the lease); the supervisor stops us."""
        state = self._state
        self._gone = True
        self._runtime_slot.close("passivated")  # before the lease goes to another owner
        if state is not None:
            db = self._settings.db
            try:
                if to is None:
                    db.store.release_lease(self.session_id, self._settings.instance_id, state.epoch)
                else:
                    hand_over(self._settings, self.session_id, state.epoch, to)
            except SessionSupervisorError as error:
                # The lease lapses by itself; nothing acknowledged depends on this write.
                self._log.warning("lease.release_failed", error=str(error))
        self._log.info("session.passivated")
