"""The checkpoint as one writer operation: SQLAlchemy Core on PostgreSQL, prebuilt SQL on SQLite.

Both paths run the same guarded statements in the same order (see :mod:`persistence._statements`
for why SQLite skips Core), so a refused checkpoint writes nothing on either.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Connection, delete, insert, update

from persistence._records import Checkpoint
from persistence._refusals import diagnose, explain_refusal
from persistence._statements import sqlite_checkpoint, sqlite_state_guard
from persistence._tables import messages, sessions, states
from persistence._write_ops import DualOp


def checkpoint_op(cp: Checkpoint, dialect: str) -> Callable[[Connection], int]:
    """The writer operation that applies ``cp`` and returns the new version.

    On SQLite it is a :class:`DualOp`, so the writer thread can run it on its bare
    ``sqlite3`` connection.
    """

    def op(connection: Connection) -> int:
        if connection.dialect.name == "sqlite":
            driver = cast("sqlite3.Connection", connection.connection.driver_connection)
            return bare(driver)
        if not core_checkpoint(connection, cp):
            diagnose(
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
            explain_refusal(
                cp.session_id,
                sqlite_state_guard(driver, cp.session_id),
                action="save",
                epoch=cp.epoch,
                version=cp.expected_version,
                allowed=("active",),
            )
        return cp.expected_version + 1

    return DualOp(op, bare) if dialect == "sqlite" else op


def core_checkpoint(connection: Connection, cp: Checkpoint) -> bool:
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
