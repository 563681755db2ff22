"""Operators' reads: a page of the listing, ids by prefix, live holds, and the health check.

Each function returns the body of one read for :meth:`Store.read` (Core, one transaction
on the read engine), on both backends; :func:`vacuum_sqlite` runs outside the store.
Nothing here knows about actors.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, or_, select, text
from sqlalchemy.sql import Select

from persistence import _json
from persistence._models import APPROVAL_STATUSES, LIVE_STATUSES, SESSION_STATUSES
from persistence._records import SessionSummary
from persistence._tables import SUMMARY_COLUMNS, approvals, connections, messages, sessions, states

#: How many example ids a problem of :func:`check_fn` names.
EXAMPLES = 5


# ---------------------------------------------------------------------- listing


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the session listing and how many sessions match in all."""

    rows: list[SessionSummary]
    total: int


def page_fn(  # noqa: PLR0917 - the listing's filters and window
    user_id: str | None,
    status: str | None,
    mode: str | None,
    limit: int | None,
    offset: int,
    newest_by: str,
) -> Callable[[Connection], Page]:
    """Sessions matching the filters, newest first, from ``offset`` (all if ``limit`` is None).

    The page and the total are read in one transaction, so they agree.
    """
    joined = sessions.outerjoin(states, sessions.c.id == states.c.session_id)
    filters: list[ColumnElement[bool]] = []
    if user_id is not None:
        filters.append(sessions.c.user_id == user_id)
    if status is not None:
        filters.append(states.c.status == status)
    if mode is not None:
        filters.append(states.c.mode == mode)
    newest = sessions.c.created_at if newest_by == "created_at" else states.c.updated_at
    query = (
        select(*SUMMARY_COLUMNS)
        .select_from(joined)
        .where(*filters)
        .order_by(newest.desc(), sessions.c.id)
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)

    def fn(connection: Connection) -> Page:
        with connection.begin():
            total = connection.execute(
                select(func.count()).select_from(joined).where(*filters)
            ).scalar_one()
            rows = [_summary(row) for row in connection.execute(query)]
        return Page(rows, int(total))

    return fn


def _summary(row: Any) -> SessionSummary:
    values = list(row)
    values[3] = _json.decode(values[3]) or {}
    return SessionSummary(*values)


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


def ids_with_prefix_fn(prefix: str, limit: int) -> Callable[[Connection], list[str]]:
    """At most ``limit`` session ids that start with ``prefix``, in order."""

    def fn(connection: Connection) -> list[str]:
        query = (
            select(sessions.c.id)
            .where(
                sessions.c.id.like(_like_prefix(prefix), escape="\\"),
                # LIKE ignores case on SQLite: compare the start exactly as well.
                func.substr(sessions.c.id, 1, len(prefix)) == prefix,
            )
            .order_by(sessions.c.id)
            .limit(limit)
        )
        return [row[0] for row in connection.execute(query)]

    return fn


def held_fn(
    statuses: Sequence[str], cutoff: datetime, now: datetime
) -> Callable[[Connection], list[str]]:
    """The sessions a purge would take but for a live worker's lease on them."""

    def fn(connection: Connection) -> list[str]:
        query = (
            select(states.c.session_id)
            .where(
                states.c.status.in_(list(statuses)),
                states.c.updated_at < cutoff,
                states.c.owner.is_not(None),
                states.c.lease_expires_at >= now,
            )
            .order_by(states.c.session_id)
        )
        return [row[0] for row in connection.execute(query)]

    return fn


# ---------------------------------------------------------------------- health


@dataclass(frozen=True, slots=True)
class Problem:
    """One kind of damage or inconsistency, how often it occurs and a few examples."""

    what: str
    count: int
    examples: list[str]


def _has_state() -> Any:
    return select(states.c.session_id).where(states.c.session_id == sessions.c.id).exists()


def _checks() -> list[tuple[str, Select[Any]]]:
    """(description, query of the offending ids) for every consistency rule."""
    joined = sessions.join(states, sessions.c.id == states.c.session_id)
    checks: list[tuple[str, Select[Any]]] = [
        ("sessions without a state row", select(sessions.c.id).where(~_has_state())),
        (
            "sessions whose status differs from their state's",
            select(sessions.c.id).select_from(joined).where(sessions.c.status != states.c.status),
        ),
        (
            "sessions with an unknown status",
            select(states.c.session_id).where(states.c.status.not_in(SESSION_STATUSES)),
        ),
        (
            "active sessions that never expire (expires_at is null)",
            select(states.c.session_id).where(
                states.c.status == "active", states.c.expires_at.is_(None)
            ),
        ),
        (
            "messages past their session's message_count",
            select(messages.c.session_id)
            .select_from(messages.join(states, messages.c.session_id == states.c.session_id))
            .where(messages.c.seq >= states.c.message_count)
            .distinct(),
        ),
        (
            "pending approval requests of sessions that are not active or suspended",
            select(approvals.c.id)
            .select_from(approvals.join(states, approvals.c.session_id == states.c.session_id))
            .where(approvals.c.status == "pending", states.c.status.not_in(LIVE_STATUSES)),
        ),
        (
            "approval requests with an unknown status, or a resolution that disagrees with it",
            select(approvals.c.id).where(
                or_(
                    approvals.c.status.not_in(APPROVAL_STATUSES),
                    and_(approvals.c.status == "resolved", approvals.c.resolution.is_(None)),
                    and_(approvals.c.status != "resolved", approvals.c.resolution.is_not(None)),
                )
            ),
        ),
    ]
    for table, column in (
        (states, states.c.session_id),
        (messages, messages.c.session_id),
        (approvals, approvals.c.session_id),
        (connections, connections.c.session_id),
    ):
        known = select(sessions.c.id).where(sessions.c.id == column).exists()
        checks.append(
            (
                f"{table.name} rows of sessions that do not exist",
                select(column).where(column.is_not(None), ~known).distinct(),
            )
        )
    return checks


def consistency_fn() -> Callable[[Connection], list[Problem]]:
    """Every broken invariant of the store (none: consistent), read in one transaction."""

    def fn(connection: Connection) -> list[Problem]:
        problems: list[Problem] = []
        with connection.begin():
            for what, query in _checks():
                ids = [str(row[0]) for row in connection.execute(query.limit(EXAMPLES))]
                if ids:
                    count = connection.execute(
                        select(func.count()).select_from(query.subquery())
                    ).scalar_one()
                    problems.append(Problem(what, int(count), ids))
        return problems

    return fn


def integrity_fn(*, quick: bool) -> Callable[[Connection], list[Problem]]:
    """SQLite's ``PRAGMA integrity_check`` (``quick``: the faster ``quick_check``).

    A sound file is then checked with ``foreign_key_check`` too (unless ``quick``). Nothing
    runs on PostgreSQL, whose pages check themselves.
    """

    def fn(connection: Connection) -> list[Problem]:
        if connection.dialect.name != "sqlite":
            return []
        with connection.begin():
            return _sqlite_integrity(connection, quick=quick)

    return fn


def _sqlite_integrity(connection: Connection, *, quick: bool) -> list[Problem]:
    pragma = "quick_check" if quick else "integrity_check"
    # One row can hold several lines, under a "*** in database main ***" heading.
    found = [
        line.strip()
        for row in connection.execute(text(f"PRAGMA {pragma}"))
        for line in str(row[0]).splitlines()
        if line.strip() and not line.startswith("***")
    ]
    problems = []
    if found != ["ok"]:
        # Nothing more: on damaged pages the next reads only fail.
        return [Problem(f"SQLite's {pragma} failed", len(found), found[:EXAMPLES])]
    if not quick:
        keys = [
            f"{row[0]} row {row[1]}" for row in connection.execute(text("PRAGMA foreign_key_check"))
        ]
        if keys:
            problems.append(
                Problem("rows whose foreign key points nowhere", len(keys), keys[:EXAMPLES])
            )
    return problems


# ---------------------------------------------------------------------- vacuum


def vacuum_sqlite(path: Path, busy_timeout_ms: int = 5000) -> tuple[int, int]:
    """``VACUUM`` a SQLite file (outside the store: it cannot run in a transaction).

    Returns the bytes of the file and its WAL before and after.
    """

    def size() -> int:
        wal = path.with_name(path.name + "-wal")
        return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    before = size()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        connection.execute("VACUUM")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return before, size()
