"""Store operations: each one a single transaction, fenced by version and lease epoch.

All methods are coroutines for the store's own event loop (see :class:`Database` for the
thread-safe entry point). Writes go through the :class:`GroupCommitWriter`; reads use the
reader engine and never block writes (WAL on SQLite, MVCC on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NoReturn, TypeVar, cast

from sqlalchemy import (
    Connection,
    Row,
    Table,
    delete,
    exists,
    insert,
    or_,
    select,
    tuple_,
    update,
)

from persistence import _admin, _json
from persistence._codec import decode_message, decode_rows
from persistence._engine import Engines
from persistence._errors import (
    ApprovalNotFound,
    InvalidTransition,
    SessionNotFound,
    SessionOwnedElsewhere,
    StaleSession,
    StoreUnavailable,
)
from persistence._migrate import current_revision, upgrade_op
from persistence._models import (
    ActiveConnectionRow,
    ApprovalRequestRow,
    SessionMessageRow,
    SessionRow,
    SessionStateRow,
)
from persistence._reader import SqliteReader
from persistence._records import (
    ApprovalRecord,
    Checkpoint,
    Lease,
    MessageRow,
    NewSession,
    SessionDocument,
    SessionSummary,
    StateRecord,
    SweepCounts,
)
from persistence._statements import sqlite_checkpoint, sqlite_state_guard
from persistence._writer import DualOp, GroupCommitWriter

T = TypeVar("T")

sessions = cast("Table", SessionRow.__table__)
states = cast("Table", SessionStateRow.__table__)
messages = cast("Table", SessionMessageRow.__table__)
approvals = cast("Table", ApprovalRequestRow.__table__)
connections = cast("Table", ActiveConnectionRow.__table__)

LIVE_STATUSES = ("active", "suspended")
# (session, epoch) pairs per renewal statement: 2 parameters each, far below SQLite's limit.
_RENEW_CHUNK = 4000
_STATE_COLUMNS = (
    states.c.session_id,
    states.c.mode,
    states.c.context_variables,
    states.c.plan_data,
    states.c.current_phase,
    states.c.current_step,
    states.c.status,
    states.c.created_at,
    states.c.updated_at,
    states.c.expires_at,
    states.c.version,
    states.c.message_count,
    states.c.owner,
    states.c.epoch,
    states.c.lease_expires_at,
)
_MESSAGE_COLUMNS = (
    messages.c.role,
    messages.c.agent,
    messages.c.content,
    messages.c.timestamp,
    messages.c.extra,
)


def _state(row: Sequence[Any]) -> StateRecord:
    return StateRecord(*row[:15])


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


class Store:
    """The session store's operations on one database."""

    def __init__(self, engines: Engines, writer: GroupCommitWriter) -> None:
        self._engines = engines
        self._writer = writer

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engines.dialect

    @property
    def writer(self) -> GroupCommitWriter:
        """The group-commit writer (for its stats)."""
        return self._writer

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        try:
            async with self._engines.reader.connect() as connection:
                return await connection.run_sync(fn)
        except StoreUnavailable:
            raise
        except Exception as exc:
            if isinstance(exc, LookupError | ValueError | TypeError):
                raise
            raise StoreUnavailable(f"the database could not be read: {exc}") from exc

    def _diagnose(
        self,
        connection: Connection,
        session_id: str,
        *,
        action: str,
        epoch: int | None = None,
        version: int | None = None,
        allowed: Sequence[str] = LIVE_STATUSES,
    ) -> None:
        """Raise the error that explains why a guarded write matched no row."""
        row = (
            connection.execute(
                select(states.c.status, states.c.version, states.c.epoch, states.c.owner).where(
                    states.c.session_id == session_id
                )
            )
        ).first()
        _explain_refusal(
            session_id, row, action=action, epoch=epoch, version=version, allowed=allowed
        )

    # ------------------------------------------------------------------ sessions

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

        def take(connection: Connection) -> Lease:
            # PostgreSQL: lock the row, or give up at once if another transaction holds it
            # (its owner is writing it, or another process is taking it). Waiting instead
            # would stall this process's whole group commit behind a peer's transaction,
            # a paused one's included. SQLite renders no FOR UPDATE: its lock is the file's.
            before = connection.execute(
                select(states.c.owner)
                .where(states.c.session_id == session_id)
                .with_for_update(skip_locked=True)
            ).first()
            if before is None and connection.dialect.name == "postgresql":
                self._diagnose(connection, session_id, action="open")
            row = (
                connection.execute(
                    update(states)
                    .where(
                        states.c.session_id == session_id,
                        states.c.status.in_(LIVE_STATUSES),
                        or_(
                            states.c.owner.is_(None),
                            states.c.owner == owner,
                            states.c.lease_expires_at < now,
                        ),
                    )
                    .values(owner=owner, epoch=states.c.epoch + 1, lease_expires_at=lease_until)
                    .returning(*_STATE_COLUMNS)
                )
            ).first()
            if row is None:
                self._diagnose(connection, session_id, action="open")
            assert row is not None  # noqa: S101 - _diagnose always raises
            state = _state(row)
            previous = before[0] if before is not None and before[0] != owner else None
            samples = self._samples(connection, session_id, state.message_count)
            return Lease(state, samples, taken_from=previous)

        def op(connection: Connection) -> Lease:
            # The usual refusal (a live owner's valid lease) is decided on the committed
            # row, without locking it.
            held = connection.execute(
                select(states.c.owner, states.c.lease_expires_at).where(
                    states.c.session_id == session_id
                )
            ).first()
            if (
                held is not None
                and held[0] not in (None, owner)
                and (held[1] is None or held[1] >= now)
            ):
                self._diagnose(connection, session_id, action="open")
            if connection.dialect.name != "postgresql":
                return take(connection)
            # A row lock taken by a refused take would last until this whole batch commits,
            # and two processes' batches could then wait on each other's rows (a deadlock);
            # the savepoint's rollback on the refusal releases it at once.
            with connection.begin_nested():
                return take(connection)

        return await self._writer.submit(op)

    def _samples(
        self, connection: Connection, session_id: str, count: int
    ) -> dict[int, dict[str, Any]]:
        positions = sample_positions(count)
        if not positions:
            return {}
        result = connection.execute(
            select(messages.c.seq, *_MESSAGE_COLUMNS).where(
                messages.c.session_id == session_id, messages.c.seq.in_(positions)
            )
        )
        return {row[0]: decode_message(tuple(row[1:])) for row in result}

    def _checkpoint_op(self, cp: Checkpoint) -> Callable[[Connection], int]:
        def op(connection: Connection) -> int:
            if connection.dialect.name == "sqlite":
                driver = cast("sqlite3.Connection", connection.connection.driver_connection)
                return bare(driver)
            if not _core_checkpoint(connection, cp):
                self._diagnose(
                    connection,
                    cp.session_id,
                    action="save",
                    epoch=cp.epoch,
                    version=cp.expected_version,
                    allowed=("active",),
                )
            return cp.expected_version + 1

        def bare(driver: sqlite3.Connection) -> int:
            if not sqlite_checkpoint(driver, cp):
                _explain_refusal(
                    cp.session_id,
                    sqlite_state_guard(driver, cp.session_id),
                    action="save",
                    epoch=cp.epoch,
                    version=cp.expected_version,
                    allowed=("active",),
                )
            return cp.expected_version + 1

        return DualOp(op, bare) if self.dialect == "sqlite" else op

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
                self._diagnose(
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

    # ------------------------------------------------------------------ reads

    @property
    def sync_reader(self) -> SqliteReader | None:
        """The calling-thread reader of the hot reads (SQLite), else ``None``."""
        return self._engines.sync_reader

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a :class:`SqliteReader` read on a worker thread, not on the store's loop."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def load(self, session_id: str) -> SessionDocument | None:
        """The whole session with its history, or ``None`` if it does not exist."""
        if self._engines.sync_reader is not None:
            return await self._off_loop(self._engines.sync_reader.load, session_id)

        def fn(connection: Connection) -> SessionDocument | None:
            with connection.begin():
                head = (
                    connection.execute(
                        select(
                            *_STATE_COLUMNS,
                            sessions.c.user_id,
                            sessions.c.name,
                            sessions.c.meta,
                            sessions.c.created_at,
                            sessions.c.last_active_at,
                        )
                        .select_from(states.join(sessions, sessions.c.id == states.c.session_id))
                        .where(states.c.session_id == session_id)
                    )
                ).first()
                if head is None:
                    return None
                rows = connection.execute(
                    select(*_MESSAGE_COLUMNS)
                    .where(messages.c.session_id == session_id)
                    .order_by(messages.c.seq)
                )
                history = decode_rows(cast("Iterable[MessageRow]", rows))
            return SessionDocument(
                session_id=session_id,
                user_id=head[15],
                name=head[16],
                config=_json.decode(head[17]) or {},
                created_at=head[18],
                last_active_at=head[19],
                state=_state(head),
                history=history,
            )

        return await self._read(fn)

    async def state(self, session_id: str) -> StateRecord | None:
        """The state row of a session, without its history."""
        if self._engines.sync_reader is not None:
            return await self._off_loop(self._engines.sync_reader.state, session_id)

        def fn(connection: Connection) -> StateRecord | None:
            row = (
                connection.execute(select(*_STATE_COLUMNS).where(states.c.session_id == session_id))
            ).first()
            return None if row is None else _state(row)

        return await self._read(fn)

    def _summary_query(self) -> Any:
        return select(
            sessions.c.id,
            sessions.c.name,
            sessions.c.user_id,
            sessions.c.meta,
            sessions.c.created_at,
            sessions.c.last_active_at,
            states.c.mode,
            states.c.status,
            states.c.current_phase,
            states.c.current_step,
            states.c.updated_at,
            states.c.version,
            states.c.message_count,
            states.c.owner,
            states.c.lease_expires_at,
        ).select_from(sessions.outerjoin(states, sessions.c.id == states.c.session_id))

    @staticmethod
    def _summary(row: Row[Any]) -> SessionSummary:
        values = list(row)
        values[3] = _json.decode(values[3]) or {}
        return SessionSummary(*values)

    async def session_info(self, session_id: str) -> SessionSummary | None:
        """A session's summary, whatever its status."""
        if self._engines.sync_reader is not None:
            return await self._off_loop(self._engines.sync_reader.session_info, session_id)

        def fn(connection: Connection) -> SessionSummary | None:
            row = (
                connection.execute(self._summary_query().where(sessions.c.id == session_id))
            ).first()
            return None if row is None else self._summary(row)

        return await self._read(fn)

    async def list_sessions(
        self,
        user_id: str | None,
        status: str | None,
        mode: str | None,
        limit: int,
        *,
        newest_by: str = "updated_at",
    ) -> list[SessionSummary]:
        """Sessions matching the filters, most recently updated (or created) first."""
        if self._engines.sync_reader is not None:
            reader = self._engines.sync_reader
            args = (user_id, status, mode, limit, newest_by)
            return await self._off_loop(reader.list_sessions, *args)

        def fn(connection: Connection) -> list[SessionSummary]:
            query = self._summary_query()
            if user_id is not None:
                query = query.where(sessions.c.user_id == user_id)
            if status is not None:
                query = query.where(states.c.status == status)
            if mode is not None:
                query = query.where(states.c.mode == mode)
            newest = sessions.c.created_at if newest_by == "created_at" else states.c.updated_at
            query = query.order_by(newest.desc(), sessions.c.id).limit(limit)
            return [self._summary(row) for row in connection.execute(query)]

        return await self._read(fn)

    # ------------------------------------------------------------------ approvals

    async def create_approval(  # noqa: PLR0917
        self,
        approval_id: str,
        session_id: str,
        approval_type: str,
        context_json: str,
        now: datetime,
        expires_at: datetime | None,
    ) -> None:
        """Insert a pending approval request for an existing session."""

        def op(connection: Connection) -> None:
            found = (
                connection.execute(select(states.c.status).where(states.c.session_id == session_id))
            ).first()
            if found is None:
                raise SessionNotFound(session_id)
            if found[0] not in LIVE_STATUSES:
                raise InvalidTransition(session_id, found[0], "request an approval for")
            connection.execute(
                insert(approvals).values(
                    id=approval_id,
                    session_id=session_id,
                    approval_type=approval_type,
                    context=context_json,
                    status="pending",
                    resolution=None,
                    result=None,
                    created_at=now,
                    expires_at=expires_at,
                    resolved_at=None,
                )
            )

        await self._writer.submit(op)

    async def resolve_approval(
        self, approval_id: str, resolution: str, result_json: str | None, now: datetime
    ) -> bool:
        """Resolve a pending, unexpired approval; ``False`` if it is no longer pending.

        Raises:
            ApprovalNotFound: no such approval request.
        """

        def op(connection: Connection) -> bool:
            result = connection.execute(
                update(approvals)
                .where(
                    approvals.c.id == approval_id,
                    approvals.c.status == "pending",
                    or_(approvals.c.expires_at.is_(None), approvals.c.expires_at >= now),
                )
                .values(
                    status="resolved", resolution=resolution, result=result_json, resolved_at=now
                )
            )
            if result.rowcount == 1:
                return True
            found = (
                connection.execute(select(approvals.c.id).where(approvals.c.id == approval_id))
            ).first()
            if found is None:
                raise ApprovalNotFound(approval_id)
            return False

        return await self._writer.submit(op)

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        """One approval request."""

        def fn(connection: Connection) -> ApprovalRecord | None:
            row = (
                connection.execute(select(approvals).where(approvals.c.id == approval_id))
            ).first()
            return None if row is None else _approval(row)

        return await self._read(fn)

    async def pending_approvals(self, session_id: str) -> list[ApprovalRecord]:
        """The pending approval requests of a session, oldest first."""

        def fn(connection: Connection) -> list[ApprovalRecord]:
            rows = connection.execute(
                select(approvals)
                .where(approvals.c.session_id == session_id, approvals.c.status == "pending")
                .order_by(approvals.c.created_at, approvals.c.id)
            )
            return [_approval(row) for row in rows]

        return await self._read(fn)

    # ------------------------------------------------------------------ connections

    async def register_connection(
        self, task_id: str, session_id: str | None, instance: str, now: datetime
    ) -> None:
        """Record (or refresh) a live connection of a task."""

        def op(connection: Connection) -> None:
            if session_id is not None:
                found = (
                    connection.execute(select(sessions.c.id).where(sessions.c.id == session_id))
                ).first()
                if found is None:
                    raise SessionNotFound(session_id)
            result = connection.execute(
                update(connections)
                .where(connections.c.task_id == task_id)
                .values(session_id=session_id, server_instance=instance, last_heartbeat=now)
            )
            if result.rowcount == 0:
                connection.execute(
                    insert(connections).values(
                        task_id=task_id,
                        session_id=session_id,
                        server_instance=instance,
                        connected_at=now,
                        last_heartbeat=now,
                    )
                )

        await self._writer.submit(op)

    async def heartbeat(self, task_id: str, now: datetime) -> bool:
        """Refresh a connection's heartbeat; ``False`` if it is unknown (or was reaped)."""

        def op(connection: Connection) -> bool:
            result = connection.execute(
                update(connections)
                .where(connections.c.task_id == task_id)
                .values(last_heartbeat=now)
            )
            return bool(result.rowcount)

        return await self._writer.submit(op)

    async def unregister_connection(self, task_id: str) -> bool:
        """Forget a connection; ``False`` if it was unknown."""

        def op(connection: Connection) -> bool:
            result = connection.execute(delete(connections).where(connections.c.task_id == task_id))
            return bool(result.rowcount)

        return await self._writer.submit(op)

    async def connections_of(
        self, session_ids: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Live connections (of the given sessions, or all)."""

        def fn(connection: Connection) -> list[dict[str, Any]]:
            query = select(connections).order_by(connections.c.connected_at)
            if session_ids is not None:
                query = query.where(connections.c.session_id.in_(list(session_ids)))
            return [dict(row._mapping) for row in connection.execute(query)]

        return await self._read(fn)

    # ------------------------------------------------------------------ operators

    async def history(
        self, session_id: str, tail: int | None = None
    ) -> list[tuple[int, dict[str, Any]]] | None:
        """The last ``tail`` messages (all if ``None``) as ``(seq, message)``, oldest first.

        Returns ``None`` when the session does not exist.
        """
        return await self._read(_admin.history_fn(session_id, tail))

    async def count_purgeable(
        self, statuses: Sequence[str], cutoff: datetime, now: datetime
    ) -> int:
        """How many sessions :meth:`purge` would delete."""
        return await self._read(_admin.count_purgeable_fn(statuses, cutoff, now))

    async def purge(
        self, statuses: Sequence[str], cutoff: datetime, now: datetime, limit: int
    ) -> list[str]:
        """Delete at most ``limit`` unowned sessions in ``statuses`` not updated since ``cutoff``.

        One transaction per call: interrupting a purge between calls (or during one)
        leaves whole sessions or none. Returns the ids deleted.
        """
        return await self._writer.submit(_admin.purge_op(statuses, cutoff, now, limit))

    async def overview(self, now: datetime) -> _admin.StoreOverview:
        """Counts by status and mode, database size, oldest active, pending approvals."""
        return await self._read(_admin.overview_fn(now))

    async def export_session(self, session_id: str) -> dict[str, Any] | None:
        """A session with its history and approvals as a JSON-ready document, or ``None``."""
        return await self._read(_admin.export_fn(session_id))

    async def import_session(self, document: Any, now: datetime, *, replace: bool = False) -> str:
        """Write a document of :meth:`export_session` (validated first); return its id.

        Raises:
            InvalidArgument: not a valid export; nothing was written.
            SessionExists: the session exists and ``replace`` is false.
            SessionOwnedElsewhere: ``replace`` of a session a live owner holds.
        """
        return await self._writer.submit(_admin.import_op(document, now, replace=replace))

    async def schema_revision(self) -> str | None:
        """The alembic revision the database is at (``None``: no schema yet)."""
        return await self._read(current_revision)

    async def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to ``revision`` (one transaction, see :func:`upgrade_op`)."""
        await self._writer.submit(upgrade_op(revision))


def _explain_refusal(
    session_id: str,
    row: Sequence[Any] | None,
    *,
    action: str,
    epoch: int | None,
    version: int | None,
    allowed: Sequence[str],
) -> NoReturn:
    """Raise the error that explains why a guarded write matched no row.

    ``row`` is the state row's (status, version, epoch, owner), ``None`` if there is none.
    """
    if row is None:
        raise SessionNotFound(session_id)
    status, actual_version, actual_epoch, owner = row
    if epoch is not None and actual_epoch != epoch:
        raise SessionOwnedElsewhere(session_id, owner)
    if status not in allowed:
        raise InvalidTransition(session_id, status, action)
    if version is not None and actual_version != version:
        raise StaleSession(session_id, version, actual_version)
    raise SessionOwnedElsewhere(session_id, owner)


def _core_checkpoint(connection: Connection, cp: Checkpoint) -> bool:
    """The checkpoint through SQLAlchemy Core (PostgreSQL); see :func:`sqlite_checkpoint`."""
    values: dict[str, Any] = {
        "context_variables": cp.context_json,
        "current_phase": cp.phase,
        "current_step": cp.step,
        "updated_at": cp.now,
        "expires_at": cp.expires_at,
        "version": cp.expected_version + 1,
        "message_count": cp.message_count,
    }
    if cp.set_plan:
        values["plan_data"] = cp.plan_json
    result = connection.execute(
        update(states)
        .where(
            states.c.session_id == cp.session_id,
            states.c.version == cp.expected_version,
            states.c.epoch == cp.epoch,
            states.c.status == "active",
        )
        .values(**values)
    )
    if result.rowcount != 1:
        return False
    if cp.rewrite_from is not None:
        connection.execute(
            delete(messages).where(
                messages.c.session_id == cp.session_id, messages.c.seq >= cp.rewrite_from
            )
        )
    if cp.new_messages:
        sid, first = cp.session_id, cp.first_seq
        connection.execute(
            insert(messages),
            [
                {
                    "session_id": sid,
                    "seq": first + offset,
                    "role": row[0],
                    "agent": row[1],
                    "content": row[2],
                    "timestamp": row[3],
                    "extra": row[4],
                }
                for offset, row in enumerate(cp.new_messages)
            ],
        )
    connection.execute(
        update(sessions).where(sessions.c.id == cp.session_id).values(last_active_at=cp.now)
    )
    return True


def _approval(row: Row[Any]) -> ApprovalRecord:
    m = row._mapping
    return ApprovalRecord(
        approval_id=m["id"],
        session_id=m["session_id"],
        approval_type=m["approval_type"],
        context=_json.decode(m["context"]),
        status=m["status"],
        resolution=m["resolution"],
        result=_json.decode(m["result"]),
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        resolved_at=m["resolved_at"],
    )
