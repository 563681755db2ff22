"""Hand-off on demand: a process asks the live owner of a session to hand it over.

The requester records a row in ``session_handoffs`` (one per session: the latest request
wins) and, on PostgreSQL, rings a doorbell in the same transaction: ``NOTIFY
session_handoff`` with the owner's instance id and the session id, delivered on COMMIT.
The owner listens on a connection of its own (:class:`Doorbell`; on SQLite it polls the
table), takes the requests addressed to it, stops the session's actor and hands the lease
over: the same fenced update as a takeover (``epoch + 1``), made by the owner itself, so a
write of the old epoch still in flight is refused and nothing acknowledged is lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Connection, delete, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from persistence import _fork
from persistence._models import LIVE_STATUSES
from persistence._tables import handoffs, states

if TYPE_CHECKING:
    from persistence._store import Store

log = structlog.get_logger("persistence")

#: The PostgreSQL notification channel of the doorbell.
CHANNEL = "session_handoff"
#: Between the owner's instance id and the session id in a notification's payload (an
#: instance id is printable, so it never contains one).
_SEPARATOR = "\n"
#: Seconds before a listener whose connection failed connects again.
_RECONNECT_DELAY = 1.0
#: Longest a listener waits for a notification in one go: how soon it notices a close.
_LISTEN_SLICE = 0.2


def request_op(
    session_id: str, owner: str, requester: str, now: datetime
) -> Callable[[Connection], None]:
    """Ask ``owner`` to hand ``session_id`` to ``requester`` (replacing an earlier request)."""

    def op(connection: Connection) -> None:
        # One statement: two requesters of one session at once must not both insert (a
        # delete-then-insert let the second fail on the primary key).
        dialect_insert = (
            postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        )
        values = {"owner": owner, "requested_by": requester, "requested_at": now}
        connection.execute(
            dialect_insert(handoffs)
            .values(session_id=session_id, **values)
            .on_conflict_do_update(index_elements=[handoffs.c.session_id], set_=values)
        )
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": CHANNEL, "payload": f"{owner}{_SEPARATOR}{session_id}"},
            )

    return op


def take_op(owner: str) -> Callable[[Connection], list[tuple[str, str]]]:
    """Remove the requests addressed to ``owner``; return their ``(session, requester)``."""

    def op(connection: Connection) -> list[tuple[str, str]]:
        rows = connection.execute(
            delete(handoffs)
            .where(handoffs.c.owner == owner)
            .returning(handoffs.c.session_id, handoffs.c.requested_by)
        )
        return [(row[0], row[1]) for row in rows]

    return op


def withdraw_op(session_id: str, requester: str) -> Callable[[Connection], int]:
    """Remove ``requester``'s request for ``session_id`` (it stopped waiting)."""

    def op(connection: Connection) -> int:
        result = connection.execute(
            delete(handoffs).where(
                handoffs.c.session_id == session_id, handoffs.c.requested_by == requester
            )
        )
        return int(result.rowcount)

    return op


def hand_over_op(
    session_id: str, owner: str, epoch: int | None, to: str, lease_until: datetime
) -> Callable[[Connection], bool]:
    """Give ``owner``'s lease on ``session_id`` (at ``epoch``, if given) to ``to``.

    The epoch goes up as in any takeover, so the old owner's writes at its epoch are
    refused from now on. ``False`` (nothing changed) when ``owner`` no longer holds it.
    """

    def op(connection: Connection) -> bool:
        conditions = [
            states.c.session_id == session_id,
            states.c.owner == owner,
            states.c.status.in_(LIVE_STATUSES),
        ]
        if epoch is not None:
            conditions.append(states.c.epoch == epoch)
        result = connection.execute(
            update(states)
            .where(*conditions)
            .values(owner=to, epoch=states.c.epoch + 1, lease_expires_at=lease_until)
        )
        return result.rowcount == 1

    return op


class Handoffs:
    """The hand-off requests of one store, asked and answered.

    Args:
        store: the open store.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    def request(self, session_id: str, owner: str, requester: str, now: datetime) -> None:
        """Record the request and ring ``owner``'s doorbell (PostgreSQL)."""
        self._store.write(request_op(session_id, owner, requester, now))

    def withdraw(self, session_id: str, requester: str) -> None:
        """Remove ``requester``'s request, if the owner did not take it."""
        self._store.write(withdraw_op(session_id, requester))

    def take(self, owner: str) -> list[tuple[str, str]]:
        """The requests addressed to ``owner``, removed; a read first, so mostly no write."""

        def pending(connection: Connection) -> bool:
            found = connection.execute(
                select(handoffs.c.session_id).where(handoffs.c.owner == owner).limit(1)
            )
            return found.first() is not None

        if not self._store.read(pending):
            return []
        taken: list[tuple[str, str]] = self._store.write(take_op(owner))
        return taken

    def hand_over(
        self, session_id: str, owner: str, epoch: int | None, to: str, lease_until: datetime
    ) -> bool:
        """Give the lease to ``to`` (see :func:`hand_over_op`)."""
        return bool(self._store.write(hand_over_op(session_id, owner, epoch, to, lease_until)))

    def doorbell(self, owner: str, poll_interval: float) -> Doorbell:
        """The doorbell ``owner`` waits on (not listening yet: see :meth:`Doorbell.wait`)."""
        return Doorbell(self._store, owner, poll_interval)


class Doorbell:
    """Where an owner waits for hand-off requests.

    On PostgreSQL it ``LISTEN``s on a connection of its own and wakes on a notification
    addressed to its owner (and every ``poll_interval`` regardless, in case one was missed
    while the connection was down). On SQLite it wakes every ``poll_interval``: the caller
    then reads the request table (an indexed read, no write when it is empty).
    """

    def __init__(self, store: Store, owner: str, poll_interval: float) -> None:
        self._store = store
        self._owner = owner
        self._poll_interval = poll_interval
        self._listens = store.dialect == "postgresql"
        self._connection: Any = None
        self._closed = threading.Event()

    def wait(self) -> None:
        """Return on a ring, after ``poll_interval``, or at once once closed."""
        if not self._listens:
            self._closed.wait(self._poll_interval)
            return
        deadline = time.monotonic() + self._poll_interval
        try:
            connection = self._listening()
            while not self._closed.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                for note in connection.notifies(timeout=min(left, _LISTEN_SLICE)):
                    if note.payload.split(_SEPARATOR, 1)[0] == self._owner:
                        return
        except Exception as exc:  # noqa: BLE001 - the server went away: poll, then reconnect
            if self._closed.is_set():
                return
            log.warning("handoff.listen_failed", error=repr(exc))
            self._drop()
            self._closed.wait(_RECONNECT_DELAY)

    def _listening(self) -> Any:
        if self._connection is None:
            connection = self._store.backend.connect_reader()
            _fork.track(connection)  # a forked child's exit must not end it
            try:
                connection.execute(f"LISTEN {CHANNEL}")
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception as exc:  # noqa: BLE001 - closing a broken connection
                log.debug("handoff.close_failed", error=repr(exc))

    def close(self) -> None:
        """Stop waiting and close the connection (call from the waiting thread's owner)."""
        self._closed.set()

    def release(self) -> None:
        """Close the listening connection (from the waiting thread, once it stopped)."""
        self._drop()
