"""Store operations: each one a single transaction, fenced by version and lease epoch.

All methods are coroutines for the store's own event loop (see :class:`Database` for the
thread-safe entry point). Writes go through the :class:`GroupCommitWriter`; reads use the
reader engine and never block writes (WAL on SQLite, MVCC on PostgreSQL).

This module holds a session's lifecycle (create, leases, checkpoints, transitions, delete,
sweep); reads, approvals, connections and operators' tools come from the ``_store_*`` mixins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    delete,
    exists,
    insert,
    or_,
    select,
    tuple_,
    update,
)

from persistence._checkpoint_write import checkpoint_op
from persistence._codec import decode_message
from persistence._errors import SessionOwnedElsewhere
from persistence._lease_statements import HELD, OWNER_FOR_TAKE, SAMPLES, TAKE
from persistence._models import LIVE_STATUSES
from persistence._records import Checkpoint, Lease, NewSession, SweepCounts
from persistence._refusals import diagnose
from persistence._store_approvals import ApprovalOps
from persistence._store_connections import ConnectionOps
from persistence._store_operators import OperatorOps
from persistence._store_reads import SessionReads
from persistence._tables import (
    approvals,
    connections,
    sessions,
    state_record,
    states,
)

# (session, epoch) pairs per renewal statement: 2 parameters each, far below SQLite's limit.
_RENEW_CHUNK = 4000


def sample_positions(count: int) -> list[int]:
    """Positions of the history the owner keeps to detect a rewritten history.

    The first message, every power of two, and the last: O(log n) messages whose positions
    never move as the history grows, so an append is checked without reading the history.
    """
    if count <= 0:
        return []
    positions = [0]
    power = 1
    while power < count:
        positions.append(power)
        power *= 2
    if positions[-1] != count - 1:  # built in order: no set, no sort
        positions.append(count - 1)
    return positions


class Store(SessionReads, ApprovalOps, ConnectionOps, OperatorOps):
    """The session store's operations on one database."""

    async def create_session(self, new: NewSession) -> None:
        """Insert a session and its initial state (owned by ``new.owner`` if given)."""

        def op(connection: Connection) -> None:
            connection.execute(
                insert(sessions).values(
                    id=new.session_id,
                    user_id=new.user_id,
                    name=new.name,
                    created_at=new.now,
                    last_active_at=new.now,
                    status="active",
                    meta=new.config_json,
                    resource_limits=None,
                )
            )
            connection.execute(
                insert(states).values(
                    session_id=new.session_id,
                    mode=new.mode,
                    context_variables="{}",
                    plan_data=None,
                    current_phase="init",
                    current_step=None,
                    status="active",
                    created_at=new.now,
                    updated_at=new.now,
                    expires_at=new.expires_at,
                    version=1,
                    message_count=0,
                    owner=new.owner,
                    epoch=1,
                    lease_expires_at=new.lease_until,
                )
            )

        await self._writer.submit(op)

    async def take_lease(
        self, session_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> Lease:
        """Take (or re-take) a session for ``owner``, bumping its epoch.

        Raises:
            SessionNotFound: no such session.
            InvalidTransition: the session is completed or expired.
            SessionOwnedElsewhere: another owner's lease is still valid.
        """
        return await self._writer.submit(self._take_lease_op(session_id, owner, now, lease_until))

    def take_lease_blocking(
        self, session_id: str, owner: str, now: datetime, lease_until: datetime, timeout: float
    ) -> Lease:
        """:meth:`take_lease` for a plain thread (a session actor rehydrating): wait for it.

        On SQLite the take runs in the calling thread when the writer is idle (else it
        queues for the writer thread), without a hop through the store's event loop, as
        :meth:`checkpoint_blocking`. Never call it from that loop's thread.

        Raises:
            StoreUnavailable: the store is closed, refused the write, or did not commit
                within ``timeout`` seconds (then it may still commit later).
            SessionNotFound, InvalidTransition, SessionOwnedElsewhere: as :meth:`take_lease`.
        """
        op = self._take_lease_op(session_id, owner, now, lease_until)
        return self._writer.call_threadsafe(op, timeout)

    def _take_lease_op(
        self, session_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> Callable[[Connection], Lease]:
        def take(connection: Connection) -> Lease:
            before = connection.execute(OWNER_FOR_TAKE, {"sid": session_id}).first()
            if before is None and connection.dialect.name == "postgresql":
                diagnose(connection, session_id, action="open")
            params = {"sid": session_id, "owner": owner, "now": now, "lease_until": lease_until}
            row = connection.execute(TAKE, params).first()
            if row is None:
                diagnose(connection, session_id, action="open")
            state = state_record(row)
            previous = before[0] if before is not None and before[0] != owner else None
            samples = self._samples(connection, session_id, state.message_count)
            return Lease(state, samples, taken_from=previous)

        def op(connection: Connection) -> Lease:
            # The usual refusal (a live owner's valid lease) is decided on the committed
            # row, without locking it.
            held = connection.execute(HELD, {"sid": session_id}).first()
            if (
                held is not None
                and held[0] not in (None, owner)
                and (held[1] is None or held[1] >= now)
            ):
                diagnose(connection, session_id, action="open")
            if connection.dialect.name != "postgresql":
                return take(connection)
            # A row lock taken by a refused take would last until this whole batch commits,
            # and two processes' batches could then wait on each other's rows (a deadlock);
            # the savepoint's rollback on the refusal releases it at once.
            with connection.begin_nested():
                return take(connection)

        return op

    def _samples(
        self, connection: Connection, session_id: str, count: int
    ) -> dict[int, dict[str, Any]]:
        positions = sample_positions(count)
        if not positions:
            return {}
        result = connection.execute(SAMPLES, {"sid": session_id, "positions": positions})
        return {row[0]: decode_message(tuple(row[1:])) for row in result}

    def _checkpoint_op(self, cp: Checkpoint) -> Callable[[Connection], int]:
        return checkpoint_op(cp, self.dialect)

    async def checkpoint(self, cp: Checkpoint) -> int:
        """Durably apply one checkpoint; return the new version.

        Raises:
            SessionNotFound, SessionOwnedElsewhere, InvalidTransition, StaleSession: the
                guard did not match; nothing was written.
        """
        return await self._writer.submit(self._checkpoint_op(cp))

    def checkpoint_blocking(self, cp: Checkpoint, timeout: float) -> int:
        """:meth:`checkpoint` for a plain thread (a session actor): wait for its commit.

        On SQLite the checkpoint goes straight to the writer thread, without a hop through
        the store's event loop. Never call it from that loop's thread.

        Raises:
            StoreUnavailable: the store is closed, refused the write, or did not commit
                within ``timeout`` seconds (then it may still commit later).
            SessionNotFound, SessionOwnedElsewhere, InvalidTransition, StaleSession: as
                :meth:`checkpoint`.
        """
        return self._writer.call_threadsafe(self._checkpoint_op(cp), timeout)

    async def transition(  # noqa: PLR0917
        self,
        session_id: str,
        epoch: int,
        version: int,
        from_statuses: Sequence[str],
        to_status: str,
        action: str,
        now: datetime,
        expires_at: datetime | None,
        release: bool,
    ) -> int:
        """Change a live session's status (fenced); return the new version."""

        def op(connection: Connection) -> int:
            values: dict[str, Any] = {
                "status": to_status,
                "version": version + 1,
                "updated_at": now,
                "expires_at": expires_at,
            }
            if release:
                values.update(owner=None, lease_expires_at=None)
            result = connection.execute(
                update(states)
                .where(
                    states.c.session_id == session_id,
                    states.c.epoch == epoch,
                    states.c.version == version,
                    states.c.status.in_(from_statuses),
                )
                .values(**values)
            )
            if result.rowcount != 1:
                diagnose(
                    connection,
                    session_id,
                    action=action,
                    epoch=epoch,
                    version=version,
                    allowed=from_statuses,
                )
            connection.execute(
                update(sessions)
                .where(sessions.c.id == session_id)
                .values(status=to_status, last_active_at=now)
            )
            if to_status in ("completed", "expired"):
                connection.execute(
                    update(approvals)
                    .where(approvals.c.session_id == session_id, approvals.c.status == "pending")
                    .values(status="cancelled", resolved_at=now)
                )
            return version + 1

        return await self._writer.submit(op)

    async def delete_session(self, session_id: str, owner: str, now: datetime) -> bool:
        """Delete a session with its history, approvals and connections.

        Returns ``False`` when it does not exist.

        Raises:
            SessionOwnedElsewhere: another owner holds a valid lease on it.
        """

        def op(connection: Connection) -> bool:
            unowned = or_(
                states.c.owner.is_(None), states.c.owner == owner, states.c.lease_expires_at < now
            )
            result = connection.execute(
                delete(sessions).where(
                    sessions.c.id == session_id,
                    or_(
                        exists().where(states.c.session_id == session_id, unowned),
                        ~exists().where(states.c.session_id == session_id),
                    ),
                )
            )
            if result.rowcount == 1:
                return True
            holder = (
                connection.execute(select(states.c.owner).where(states.c.session_id == session_id))
            ).first()
            if holder is not None:
                raise SessionOwnedElsewhere(session_id, holder[0])
            return False

        return await self._writer.submit(op)

    async def release_lease(self, session_id: str, owner: str, epoch: int) -> bool:
        """Give up a lease (no-op if it was taken over meanwhile)."""

        def op(connection: Connection) -> bool:
            result = connection.execute(
                update(states)
                .where(
                    states.c.session_id == session_id,
                    states.c.owner == owner,
                    states.c.epoch == epoch,
                )
                .values(owner=None, lease_expires_at=None)
            )
            return bool(result.rowcount)

        return await self._writer.submit(op)

    async def release_all(self, owner: str) -> int:
        """Give up every lease ``owner`` holds."""

        def op(connection: Connection) -> int:
            result = connection.execute(
                update(states)
                .where(states.c.owner == owner)
                .values(owner=None, lease_expires_at=None)
            )
            return int(result.rowcount)

        return await self._writer.submit(op)

    async def renew_leases(
        self, owner: str, lease_until: datetime, epochs: dict[str, int]
    ) -> set[str]:
        """Extend the leases ``owner`` holds at exactly these ``epochs``; return those lost.

        Only the given ``(session, epoch)`` pairs are renewed: a row still naming ``owner``
        that the caller no longer serves (its release failed) lapses by itself instead of
        being kept from other processes for as long as this one lives.
        """
        pairs = list(epochs.items())

        def op(connection: Connection) -> set[str]:
            held: set[str] = set()
            # Bounded chunks keep the statement under SQLite's bound-parameter limit.
            for start in range(0, len(pairs), _RENEW_CHUNK):
                result = connection.execute(
                    update(states)
                    .where(
                        states.c.owner == owner,
                        states.c.status.in_(LIVE_STATUSES),
                        tuple_(states.c.session_id, states.c.epoch).in_(
                            pairs[start : start + _RENEW_CHUNK]
                        ),
                    )
                    .values(lease_expires_at=lease_until)
                    .returning(states.c.session_id)
                )
                held.update(row[0] for row in result)
            return {sid for sid, _ in pairs if sid not in held}

        return await self._writer.submit(op)

    async def sweep(self, now: datetime, connection_cutoff: datetime) -> SweepCounts:
        """Expire idle sessions and stale approvals, drop dead connections; set-based."""

        def op(connection: Connection) -> SweepCounts:
            result = connection.execute(
                update(states)
                .where(states.c.status == "active", states.c.expires_at < now)
                .values(
                    status="expired",
                    version=states.c.version + 1,
                    updated_at=now,
                    owner=None,
                    lease_expires_at=None,
                )
                .returning(states.c.session_id)
            )
            expired = [row[0] for row in result]
            if expired:
                expired_ids = select(states.c.session_id).where(states.c.status == "expired")
                connection.execute(
                    update(sessions)
                    .where(sessions.c.status != "expired", sessions.c.id.in_(expired_ids))
                    .values(status="expired")
                )
                connection.execute(
                    update(approvals)
                    .where(approvals.c.status == "pending", approvals.c.session_id.in_(expired_ids))
                    .values(status="cancelled", resolved_at=now)
                )
            approvals_expired = connection.execute(
                update(approvals)
                .where(approvals.c.status == "pending", approvals.c.expires_at < now)
                .values(status="expired")
            )
            removed = connection.execute(
                delete(connections).where(connections.c.last_heartbeat < connection_cutoff)
            )
            return SweepCounts(expired, int(approvals_expired.rowcount), int(removed.rowcount))

        return await self._writer.submit(op)
