"""The PostgreSQL floors: bare psycopg 3 on a two-table schema with primary keys only.

Not contenders: they show what PostgreSQL itself costs per checkpoint on this machine, so
ours can be read against them. One checkpoint is the state row updated, guarded by
``version = expected``, and the step's new messages inserted; statements are prepared
(``prepare_threshold=0``), values are JSON-encoded in the timed region, as ours does.
No actor, no validation, no fencing, no leases; the caller is trusted completely.

- Floor A: one connection, one checkpoint per transaction, one statement at a time.
- Floor B: one connection, 16 checkpoints (16 different sessions) per transaction, sent
  in one pipeline (``with conn.pipeline(): ...; conn.commit()``), one round trip per
  transaction.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg

from benchmarks._workload import Workload

#: Checkpoints per transaction of floor B.
GROUP = 16

_SCHEMA = (
    "DROP TABLE IF EXISTS floor_messages, floor_state",
    "CREATE TABLE floor_state (session_id text PRIMARY KEY, version int NOT NULL,"
    " context text, phase text, step int, updated_at timestamptz)",
    "CREATE TABLE floor_messages (session_id text, seq int, role text, agent text,"
    " content text, timestamp text, extra text, PRIMARY KEY (session_id, seq))",
)
_UPDATE = (
    "UPDATE floor_state SET version = version + 1, context = %s, phase = %s, step = %s,"
    " updated_at = now() WHERE session_id = %s AND version = %s"
)
_COLUMNS = 7  # session_id, seq, role, agent, content, timestamp, extra

Row = tuple[str, int, str, str | None, str, str, str | None]


def _insert(rows: int) -> str:
    """One INSERT of ``rows`` message rows (one statement, one round trip)."""
    values = ", ".join("(" + ", ".join(["%s"] * _COLUMNS) + ")" for _ in range(rows))
    return f"INSERT INTO floor_messages VALUES {values}"


class _Floor:
    """Sessions on the floor schema, the expected version and stored length of each."""

    def __init__(self, url: str, sessions: int) -> None:
        self.conn = psycopg.connect(url, prepare_threshold=0)
        with self.conn.transaction():
            for statement in _SCHEMA:
                self.conn.execute(statement)
        self.ids = [str(uuid.uuid4()) for _ in range(sessions)]
        with self.conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO floor_state (session_id, version) VALUES (%s, 0)",
                [(sid,) for sid in self.ids],
            )
        self.conn.commit()
        self.versions = dict.fromkeys(self.ids, 0)
        self.stored = dict.fromkeys(self.ids, 0)
        self._inserts: dict[int, str] = {}

    def statements(
        self, sid: str, messages: list[dict[str, Any]], context: dict[str, Any], phase: str,
        step: int,
    ) -> list[tuple[str, tuple[Any, ...]]]:  # fmt: skip
        """The checkpoint's statements and parameters; the bookkeeping moves on."""
        version, seq = self.versions[sid], self.stored[sid]
        stamp = datetime.now(UTC).isoformat()
        params: list[Any] = []
        for i, message in enumerate(messages):
            extra = {k: v for k, v in message.items() if k not in {"role", "agent", "content"}}
            content = message["content"]
            row: Row = (sid, seq + i, message["role"], message.get("agent"),
                        content if isinstance(content, str) else json.dumps(content), stamp,
                        json.dumps(extra) if extra else None)  # fmt: skip
            params += row
        insert = self._inserts.get(len(messages))
        if insert is None:
            insert = self._inserts[len(messages)] = _insert(len(messages))
        self.versions[sid] = version + 1
        self.stored[sid] = seq + len(messages)
        update = (json.dumps(context), phase, step, sid, version)
        return [(_UPDATE, update), (insert, tuple(params))]

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def floor_a(url: str, wl: Workload, sessions: int, steps: int) -> float:
    """Floor A: ``sessions`` x ``steps`` checkpoints, round-robin, one per transaction.

    Returns:
        Checkpoints per second.
    """
    floor = _Floor(url, sessions)
    try:
        plans = [[(wl.messages(s, k), wl.context(s, k), wl.phase(k), k) for s in range(sessions)]
                 for k in range(steps)]  # fmt: skip
        conn = floor.conn
        started = time.perf_counter()
        for round_ in plans:
            for sid, (messages, context, phase, step) in zip(floor.ids, round_, strict=True):
                (update, state), (insert, rows) = floor.statements(
                    sid, messages, context, phase, step
                )
                if conn.execute(update, state).rowcount != 1:
                    raise RuntimeError(f"floor A: version guard refused {sid}")
                conn.execute(insert, rows)
                conn.commit()
        wall = time.perf_counter() - started
    finally:
        floor.close()
    return sessions * steps / wall


def floor_b(url: str, wl: Workload, sessions: int, steps: int) -> float:
    """Floor B: ``sessions`` x ``steps`` checkpoints, :data:`GROUP` per pipelined transaction.

    The version guards are checked once the transaction's results are in.

    Returns:
        Checkpoints per second.
    """
    floor = _Floor(url, sessions)
    try:
        plans = [[(wl.messages(s, k), wl.context(s, k), wl.phase(k), k) for s in range(sessions)]
                 for k in range(steps)]  # fmt: skip
        conn = floor.conn
        started = time.perf_counter()
        for round_ in plans:
            for first in range(0, sessions, GROUP):
                guards: list[psycopg.Cursor[Any]] = []
                with conn.pipeline():
                    for sid, plan in zip(
                        floor.ids[first : first + GROUP], round_[first : first + GROUP],
                        strict=True,
                    ):  # fmt: skip
                        (update, state), (insert, rows) = floor.statements(sid, *plan)
                        guards.append(conn.execute(update, state))
                        conn.execute(insert, rows)
                    conn.commit()
                if any(cursor.rowcount != 1 for cursor in guards):
                    raise RuntimeError("floor B: a version guard refused")
        wall = time.perf_counter() - started
    finally:
        floor.close()
    return sessions * steps / wall
