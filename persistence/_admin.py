"""Operators' store operations: history, purge and overview.

Each function returns the synchronous body of one store operation; :class:`Store` runs
reads on the reader engine and writes through the group-commit writer, so each is one
transaction. Export and import of a session document live in
:mod:`persistence._transfer`. Nothing here knows about actors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, or_, select, text

from persistence._codec import decode_message
from persistence._migrate import current_revision
from persistence._models import SESSION_STATUSES
from persistence._tables import (
    MESSAGE_COLUMNS,
    approvals,
    connections,
    messages,
    sessions,
    states,
)


@dataclass(frozen=True, slots=True)
class OldestActive:
    """The active session that was created first."""

    session_id: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoreOverview:
    """What :meth:`Store.overview` counts, all read in one transaction."""

    sessions: int
    by_status: dict[str, int]
    by_mode: dict[str, dict[str, int]]
    messages: int
    pending_approvals: int
    overdue_approvals: int
    connections: int
    leased: int
    oldest_active: OldestActive | None
    database_bytes: int | None
    schema_revision: str | None
    dialect: str


def _unowned(now: datetime) -> Any:
    return or_(states.c.owner.is_(None), states.c.lease_expires_at < now)


def delete_rows(connection: Connection, ids: Sequence[str]) -> None:
    """Delete sessions and everything attached (explicitly, not relying on cascades).

    Shared by purge and by an import that replaces a session, so both remove exactly
    the same rows.
    """
    for table in (messages, approvals, connections, states):
        connection.execute(delete(table).where(table.c.session_id.in_(ids)))
    connection.execute(delete(sessions).where(sessions.c.id.in_(ids)))


# ---------------------------------------------------------------------- history


def history_fn(
    session_id: str, tail: int | None
) -> Callable[[Connection], list[tuple[int, dict[str, Any]]] | None]:
    """Read the last ``tail`` messages (all if ``None``) with their ``seq``, oldest first.

    The body returns ``None`` when the session does not exist.
    """

    def fn(connection: Connection) -> list[tuple[int, dict[str, Any]]] | None:
        with connection.begin():
            found = connection.execute(
                select(sessions.c.id).where(sessions.c.id == session_id)
            ).first()
            if found is None:
                return None
            query = (
                select(messages.c.seq, *MESSAGE_COLUMNS)
                .where(messages.c.session_id == session_id)
                .order_by(messages.c.seq.desc())
            )
            if tail is not None:
                query = query.limit(tail)
            rows = list(connection.execute(query))
        rows.reverse()
        return [(row[0], decode_message(tuple(row[1:]))) for row in rows]

    return fn


# ---------------------------------------------------------------------- purge


def _purgeable(statuses: Sequence[str], cutoff: datetime, now: datetime) -> list[Any]:
    return [states.c.status.in_(list(statuses)), states.c.updated_at < cutoff, _unowned(now)]


def count_purgeable_fn(
    statuses: Sequence[str], cutoff: datetime, now: datetime
) -> Callable[[Connection], int]:
    """Count the sessions :func:`purge_op` would delete."""

    def fn(connection: Connection) -> int:
        query = select(func.count()).select_from(states).where(*_purgeable(statuses, cutoff, now))
        return int(connection.execute(query).scalar_one())

    return fn


def purge_op(
    statuses: Sequence[str], cutoff: datetime, now: datetime, limit: int
) -> Callable[[Connection], list[str]]:
    """Delete at most ``limit`` sessions in ``statuses`` untouched since ``cutoff``.

    Sessions another owner holds a valid lease on are never deleted. Returns the ids
    deleted; one transaction, so an interrupted purge leaves whole sessions or none.
    """

    def op(connection: Connection) -> list[str]:
        ids = [
            row[0]
            for row in connection.execute(
                select(states.c.session_id)
                .where(*_purgeable(statuses, cutoff, now))
                .order_by(states.c.updated_at, states.c.session_id)
                .limit(limit)
            )
        ]
        if ids:
            # Delete the state rows first with the guard again (PostgreSQL: rows may have
            # changed since the select); only the sessions that still match go.
            deleted = connection.execute(
                delete(states)
                .where(states.c.session_id.in_(ids), *_purgeable(statuses, cutoff, now))
                .returning(states.c.session_id)
            )
            ids = [row[0] for row in deleted]
            if ids:
                delete_rows(connection, ids)
        return ids

    return op


# ---------------------------------------------------------------------- overview


def _database_bytes(connection: Connection) -> int | None:
    if connection.dialect.name == "sqlite":
        pages = connection.execute(text("PRAGMA page_count")).scalar_one()
        size = connection.execute(text("PRAGMA page_size")).scalar_one()
        return int(pages) * int(size)
    if connection.dialect.name == "postgresql":
        value = connection.execute(text("SELECT pg_database_size(current_database())"))
        return int(value.scalar_one())
    return None  # pragma: no cover - only sqlite and postgresql are supported


def overview_fn(now: datetime) -> Callable[[Connection], StoreOverview]:
    """Counts by status and mode, sizes, the oldest active session, pending approvals."""

    def fn(connection: Connection) -> StoreOverview:
        with connection.begin():
            by_status = dict.fromkeys(SESSION_STATUSES, 0)
            by_mode: dict[str, dict[str, int]] = {}
            total = 0
            for mode, status, count in connection.execute(
                select(states.c.mode, states.c.status, func.count()).group_by(
                    states.c.mode, states.c.status
                )
            ):
                by_status[status] = by_status.get(status, 0) + count
                by_mode.setdefault(mode, {})[status] = count
                total += count
            message_total = connection.execute(
                select(func.coalesce(func.sum(states.c.message_count), 0))
            ).scalar_one()
            pending = connection.execute(
                select(func.count()).select_from(approvals).where(approvals.c.status == "pending")
            ).scalar_one()
            overdue = connection.execute(
                select(func.count())
                .select_from(approvals)
                .where(approvals.c.status == "pending", approvals.c.expires_at < now)
            ).scalar_one()
            live_connections = connection.execute(
                select(func.count()).select_from(connections)
            ).scalar_one()
            leased = connection.execute(
                select(func.count())
                .select_from(states)
                .where(states.c.owner.is_not(None), states.c.lease_expires_at >= now)
            ).scalar_one()
            oldest_row = connection.execute(
                select(states.c.session_id, states.c.created_at, states.c.updated_at)
                .where(states.c.status == "active")
                .order_by(states.c.created_at, states.c.session_id)
                .limit(1)
            ).first()
            size = _database_bytes(connection)
            revision = current_revision(connection)
        return StoreOverview(
            sessions=total,
            by_status=by_status,
            by_mode={mode: dict(sorted(by_mode[mode].items())) for mode in sorted(by_mode)},
            messages=int(message_total),
            pending_approvals=int(pending),
            overdue_approvals=int(overdue),
            connections=int(live_connections),
            leased=int(leased),
            oldest_active=None if oldest_row is None else OldestActive(*oldest_row),
            database_bytes=size,
            schema_revision=revision,
            dialect=connection.dialect.name,
        )

    return fn
