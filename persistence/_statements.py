"""The checkpoint's hot path on SQLite: prebuilt SQL run on the writer's ``sqlite3`` connection.

A checkpoint is the one write that happens on every step of every session, so on SQLite it
skips SQLAlchemy's statement building and result machinery (about 90 % of its cost) and
runs three prebuilt statements directly on the writer thread's DBAPI connection, inside
the transaction the group-commit writer opened. The statements are built once from the
table definitions, so they follow the models; values are bound exactly as the SQLAlchemy
types bind them (datetimes as naive UTC text with microseconds), so rows written here and
rows written through SQLAlchemy are indistinguishable. PostgreSQL keeps the Core path.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from persistence._records import Checkpoint
from persistence._tables import messages, sessions, states


def _update_state_sql(*, set_plan: bool) -> str:
    plan = ", plan_data = ?" if set_plan else ""
    return (
        f"UPDATE {states.name} SET context_variables = ?, current_phase = ?,"  # noqa: S608 - names from the models
        f" current_step = ?, updated_at = ?, expires_at = ?, version = ?, message_count = ?{plan}"
        " WHERE session_id = ? AND version = ? AND epoch = ? AND status = 'active'"
    )


UPDATE_STATE = _update_state_sql(set_plan=False)
UPDATE_STATE_AND_PLAN = _update_state_sql(set_plan=True)
DELETE_MESSAGES_FROM = f"DELETE FROM {messages.name} WHERE session_id = ? AND seq >= ?"  # noqa: S608
INSERT_MESSAGE = (
    f"INSERT INTO {messages.name} (session_id, seq, role, agent, content, timestamp, extra)"  # noqa: S608
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
STATE_GUARD = f"SELECT status, version, epoch, owner FROM {states.name} WHERE session_id = ?"  # noqa: S608
TOUCH_SESSION = f"UPDATE {sessions.name} SET last_active_at = ? WHERE id = ?"  # noqa: S608


def sqlite_datetime(value: datetime) -> str:
    """An aware datetime as SQLAlchemy's SQLite ``DateTime`` stores it (naive UTC text).

    Raises:
        ValueError: ``value`` is naive (the clock must return aware UTC datetimes).
    """
    if value.tzinfo is None:
        msg = f"naive datetime {value!r}: the clock must return aware UTC datetimes"
        raise ValueError(msg)
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def sqlite_checkpoint(connection: sqlite3.Connection, cp: Checkpoint) -> bool:
    """Apply ``cp`` inside the open transaction; ``False`` if its guard matched no row.

    The guarded state update runs first, so a refused checkpoint writes nothing.
    """
    now = sqlite_datetime(cp.now)
    sid = cp.session_id
    params: tuple[object, ...] = (
        cp.context_json,
        cp.phase,
        cp.step,
        now,
        sqlite_datetime(cp.expires_at),
        cp.expected_version + 1,
        cp.message_count,
    )
    if cp.set_plan:
        statement = UPDATE_STATE_AND_PLAN
        params = (*params, cp.plan_json)
    else:
        statement = UPDATE_STATE
    if connection.execute(statement, (*params, sid, cp.expected_version, cp.epoch)).rowcount != 1:
        return False
    if cp.rewrite_from is not None:
        connection.execute(DELETE_MESSAGES_FROM, (sid, cp.rewrite_from))
    if cp.new_messages:
        first = cp.first_seq
        connection.executemany(
            INSERT_MESSAGE,
            [(sid, first + offset, *row) for offset, row in enumerate(cp.new_messages)],
        )
    connection.execute(TOUCH_SESSION, (now, sid))
    return True


def sqlite_state_guard(
    connection: sqlite3.Connection, session_id: str
) -> tuple[object, ...] | None:
    """The columns a checkpoint's guard compares (status, version, epoch, owner), if any."""
    row: tuple[object, ...] | None = connection.execute(STATE_GUARD, (session_id,)).fetchone()
    return row
