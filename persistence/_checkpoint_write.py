"""The checkpoint as one writer operation: SQLAlchemy Core on PostgreSQL, prebuilt SQL on SQLite.

Both paths run the same guarded statements in the same order (see :mod:`persistence._statements`
for why SQLite skips Core), so a refused checkpoint writes nothing on either.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Connection, bindparam, delete, insert, update

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


# Built once: constructing these per checkpoint cost more than PostgreSQL running them.
# Bind names differ from the column names, which SQLAlchemy reserves in SET clauses.
_UPDATE_STATE = (
    update(states)
    .where(
        states.c.session_id == bindparam("sid"),
        states.c.version == bindparam("expected"),
        states.c.epoch == bindparam("mine"),
        states.c.status == "active",
    )
    .values(
        context_variables=bindparam("context"),
        current_phase=bindparam("phase"),
        current_step=bindparam("step"),
        updated_at=bindparam("now"),
        expires_at=bindparam("expires"),
        version=bindparam("new_version"),
        message_count=bindparam("count"),
    )
)
_UPDATE_STATE_AND_PLAN = _UPDATE_STATE.values(plan_data=bindparam("plan"))
_DELETE_MESSAGES_FROM = delete(messages).where(
    messages.c.session_id == bindparam("sid"), messages.c.seq >= bindparam("first")
)
_INSERT_MESSAGE = insert(messages)
_TOUCH_SESSION = (
    update(sessions)
    .where(sessions.c.id == bindparam("sid"))
    .values(last_active_at=bindparam("now"))
)


def core_checkpoint(connection: Connection, cp: Checkpoint) -> bool:
    """The checkpoint through SQLAlchemy Core (PostgreSQL); see :func:`sqlite_checkpoint`."""
    sid = cp.session_id
    params: dict[str, Any] = {
        "sid": sid,
        "expected": cp.expected_version,
        "mine": cp.epoch,
        "context": cp.context_json,
        "phase": cp.phase,
        "step": cp.step,
        "now": cp.now,
        "expires": cp.expires_at,
        "new_version": cp.expected_version + 1,
        "count": cp.message_count,
    }
    statement = _UPDATE_STATE
    if cp.set_plan:
        statement = _UPDATE_STATE_AND_PLAN
        params["plan"] = cp.plan_json
    if connection.execute(statement, params).rowcount != 1:
        return False
    if cp.rewrite_from is not None:
        connection.execute(_DELETE_MESSAGES_FROM, {"sid": sid, "first": cp.rewrite_from})
    if cp.new_messages:
        first = cp.first_seq
        connection.execute(
            _INSERT_MESSAGE,
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
    connection.execute(_TOUCH_SESSION, {"sid": sid, "now": cp.now})
    return True
