"""Hand-off on demand: a call on a session another live process owns asks for it.

Both sides, per manager:

* **The requester** (:meth:`HandoffDesk.obtain`): a call refused with
  ``SessionOwnedElsewhere`` records a request for the owner (and rings its doorbell, see
  :mod:`persistence._handoff`), then reads the lease with a short backoff until the owner
  handed it over (or released it, or it lapsed), at most ``handoff_wait`` and never past the
  call's own deadline; the call then runs again and takes the lease as usual.
* **The owner** (a thread): woken by the doorbell, it takes the requests addressed to it and
  tells the supervisor, which passivates each session's actor unless a ``unit_of_work``
  holds it; the actor stops and hands its lease to the requester with the fenced update
  of a takeover (``epoch + 1``), so a write of the old epoch is refused from then on. A
  request for a session without a live actor here (its release failed) gets the lease at
  once.

Leases, epochs and fencing are unchanged: the hand-off only shortens the wait for a lease.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import structlog

from persistence import SessionSupervisorError
from persistence._handoff import Handoffs

if TYPE_CHECKING:
    from actors._settings import Settings

log = structlog.get_logger("actors.handoff")

#: Seconds between two reads of the request table on SQLite (and between two on
#: PostgreSQL even without a notification, in case one was missed).
SQLITE_POLL = 0.1
PG_POLL = 1.0
#: The requester's first and longest pause between two reads of the lease.
_FIRST_PAUSE = 0.002
_LONGEST_PAUSE = 0.02
#: Seconds after which a request still unanswered is made again.
_ASK_AGAIN = 0.25


def hand_over(settings: Settings, session_id: str, epoch: int, to: str) -> bool:
    """Give this process's lease on a session (at ``epoch``) to process ``to``."""
    lease_until = settings.now() + settings.lease_ttl
    handed = Handoffs(settings.db.store).hand_over(
        session_id, settings.instance_id, epoch, to, lease_until
    )
    log.info("handoff.handed", session_id=session_id, to=to, done=handed)
    return handed


class HandoffDesk:
    """A manager's side of the hand-offs: answers requests, and asks on a refused call.

    Args:
        settings: the manager's settings (``handoff_wait``: 0, it never asks; it answers
            unless the database is in memory).
        supervisor: a proxy of the supervisor actor.
    """

    def __init__(self, settings: Settings, supervisor: Any) -> None:
        self._settings = settings
        self._supervisor = supervisor
        store = settings.db.store
        self._handoffs = Handoffs(store)
        # An in-memory database has no other process to hand over to. A manager that does
        # not ask (handoff_wait=0) still answers: the others may wait for it.
        self.answers = ":memory:" not in settings.db.url
        self.asks = self.answers and settings.handoff_wait > 0
        poll = PG_POLL if store.dialect == "postgresql" else SQLITE_POLL
        self._doorbell = self._handoffs.doorbell(settings.instance_id, poll)
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._answer, name="session-supervisor-handoff", daemon=True
        )
        if self.answers:
            self._thread.start()

    # ------------------------------------------------------------------ the owner

    def _answer(self) -> None:
        """The owner's loop: wait for the doorbell, answer the requests addressed to us."""
        me = self._settings.instance_id
        try:
            while not self._closed.is_set():
                self._doorbell.wait()
                if self._closed.is_set():
                    break
                try:
                    for session_id, requester in self._handoffs.take(me):
                        self._answer_one(session_id, requester)
                except SessionSupervisorError as error:
                    log.warning("handoff.answer_failed", error=str(error))
                except Exception as exc:  # noqa: BLE001 - the manager closed under us
                    if self._closed.is_set():
                        break
                    log.warning("handoff.answer_failed", error=repr(exc))
        finally:
            self._doorbell.release()

    def _answer_one(self, session_id: str, requester: str) -> None:
        settings = self._settings
        answer = self._supervisor.hand_off(session_id, requester).get(timeout=settings.call_timeout)
        if answer == "absent":
            # No actor serves it here: a lease still naming us is a leftover (a release
            # that failed); nothing of ours writes at its epoch, so it goes at once.
            Handoffs(settings.db.store).hand_over(
                session_id, settings.instance_id, None, requester,
                settings.now() + settings.lease_ttl,
            )  # fmt: skip
        log.debug("handoff.answered", session_id=session_id, to=requester, answer=answer)

    def close(self) -> None:
        """Stop answering (promptly: the doorbell wakes at least every 200 ms)."""
        self._closed.set()
        self._doorbell.close()
        if self._thread.is_alive():
            self._thread.join(timeout=self._settings.call_timeout)

    # ------------------------------------------------------------------ the requester

    def deadline(self, remaining: float) -> float:
        """The ``time.monotonic()`` after which a call stops waiting for a hand-off."""
        return time.monotonic() + min(self._settings.handoff_wait, remaining)

    def obtain(self, session_id: str, owner: str | None, deadline: float) -> bool:
        """Ask ``owner`` for the session and wait until it may be taken.

        Returns:
            ``True`` when the call should run again (the lease was handed to us, released,
            lapsed, or moved to yet another owner, who was asked in turn: the retry tells),
            ``False`` when hand-offs are off, nobody else holds it, or the deadline passed
            with the lease still held elsewhere (the caller re-raises its refusal).
        """
        settings = self._settings
        me = settings.instance_id
        if not self.asks or owner in (None, me) or time.monotonic() >= deadline:
            return False
        store = settings.db.store
        asked: str | None = None
        asked_at = 0.0
        pause = _FIRST_PAUSE
        holder: str | None = owner
        try:
            while True:
                stored = store.state(session_id)
                if stored is None:
                    return True  # deleted meanwhile: the retry says so
                holder = stored.owner
                lease = stored.lease_expires_at
                if holder in (None, me) or (lease is not None and lease < settings.now()):
                    return True
                # Asked again now and then: a unit of work that held it may have ended.
                if holder != asked or time.monotonic() - asked_at > _ASK_AGAIN:
                    self._handoffs.request(session_id, holder, me, settings.now())
                    asked, asked_at = holder, time.monotonic()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(pause, left))
                pause = min(pause * 2, _LONGEST_PAUSE)
        finally:
            # Handed to us, the owner took the request; otherwise it must not act on it late.
            if asked is not None and holder != me:
                self._withdraw(session_id)

    def _withdraw(self, session_id: str) -> None:
        try:
            self._handoffs.withdraw(session_id, self._settings.instance_id)
        except SessionSupervisorError as error:
            log.warning("handoff.withdraw_failed", session_id=session_id, error=str(error))
