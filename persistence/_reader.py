"""The read hot path on SQLite: prebuilt SQL on a small pool of stdlib ``sqlite3`` connections.

Loading a session is one read of its state row and all of its messages. Through the
async engine that read hops to the store's event loop, then to aiosqlite's thread, and
builds a SQLAlchemy row per message: more than twice the cost of the SELECT itself. Here
the calling thread runs prebuilt statements on a pooled connection and decodes each
message with a few dict stores, so a load costs about what its SELECT costs.

Every connection is read-only (``PRAGMA query_only``): it never takes the write lock, and in
WAL mode it never waits for the writer either. Each read is one short transaction that
ends before the connection goes back to the pool, so no snapshot outlives its read and a
read sees every write committed (acknowledged) before it began. PostgreSQL keeps the
async engine.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import BindParameter, bindparam, select
from sqlalchemy.dialects import sqlite as sqlite_dialect

from persistence import _json
from persistence._codec import decode_rows
from persistence._errors import StoreUnavailable
from persistence._records import SessionDocument, SessionSummary, StateRecord
from persistence._tables import (
    LOAD_SESSION_COLUMNS,
    MESSAGE_COLUMNS,
    STATE_COLUMNS,
    SUMMARY_COLUMNS,
    messages,
    sessions,
    states,
)

T = TypeVar("T")

#: Positions of the datetime columns in a state row and in a summary row.
_STATE_TIMES = (7, 8, 9, 14)
_SUMMARY_TIMES = (4, 5, 10, 14)


def _sql(statement: Any) -> str:
    """The SQLite text of a Core statement: built from the models, compiled once."""
    return str(statement.compile(dialect=sqlite_dialect.dialect()))


_SID: BindParameter[str] = bindparam("session_id")
LOAD_HEAD = _sql(
    select(*STATE_COLUMNS, *LOAD_SESSION_COLUMNS)
    .select_from(states.join(sessions, sessions.c.id == states.c.session_id))
    .where(states.c.session_id == _SID)
)
LOAD_MESSAGES = _sql(
    select(*MESSAGE_COLUMNS).where(messages.c.session_id == _SID).order_by(messages.c.seq)
)
STATE = _sql(select(*STATE_COLUMNS).where(states.c.session_id == _SID))
SESSION_INFO = _sql(
    select(*SUMMARY_COLUMNS)
    .select_from(sessions.outerjoin(states, sessions.c.id == states.c.session_id))
    .where(sessions.c.id == _SID)
)


@functools.cache
def list_sql(
    *, by_user: bool, by_status: bool, by_mode: bool, newest_by: str
) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """The SQL of one shape of :meth:`SqliteReader.list_sessions`.

    Returns:
        The SQL and its parameters in order, as ``(name, value)``: the value is the
        compiled one (the dialect's own ``OFFSET 0``) or ``None`` for the caller's.
    """
    query = select(*SUMMARY_COLUMNS).select_from(
        sessions.outerjoin(states, sessions.c.id == states.c.session_id)
    )
    if by_user:
        query = query.where(sessions.c.user_id == bindparam("user_id"))
    if by_status:
        query = query.where(states.c.status == bindparam("status"))
    if by_mode:
        query = query.where(states.c.mode == bindparam("mode"))
    newest = sessions.c.created_at if newest_by == "created_at" else states.c.updated_at
    query = query.order_by(newest.desc(), sessions.c.id).limit(bindparam("limit"))
    compiled = query.compile(dialect=sqlite_dialect.dialect())
    defaults = compiled.params
    return str(compiled), tuple((name, defaults[name]) for name in compiled.positiontup or ())


def _utc(value: str | None) -> datetime | None:
    """A stored datetime (naive UTC text) as the aware datetime SQLAlchemy would return."""
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _with_times(row: tuple[Any, ...], positions: tuple[int, ...]) -> list[Any]:
    values = list(row)
    for position in positions:
        values[position] = _utc(values[position])
    return values


def _state(row: tuple[Any, ...]) -> StateRecord:
    return StateRecord(*_with_times(row[:15], _STATE_TIMES))


def _summary(row: tuple[Any, ...]) -> SessionSummary:
    values = _with_times(row, _SUMMARY_TIMES)
    values[3] = _json.decode(values[3]) or {}
    return SessionSummary(*values)


class SqliteReader:
    """Read-only ``sqlite3`` connections to one database file, shared by every thread.

    A read checks a connection out of the pool (opening one if none is idle), runs in the
    calling thread, and checks it back in; at most ``pool_size`` idle connections are kept.
    """

    def __init__(
        self, database: str, *, busy_timeout_ms: int = 5000, uri: bool = False, pool_size: int = 8
    ) -> None:
        self._database = database
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._uri = uri
        self._pool_size = pool_size
        self._idle: list[sqlite3.Connection] = []
        self._open: set[sqlite3.Connection] = set()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def open_connections(self) -> int:
        """How many connections are open (idle or in use)."""
        with self._lock:
            return len(self._open)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self._database, isolation_level=None, check_same_thread=False, uri=self._uri
        )
        # The engines' PRAGMAs that matter to a reader; journal_mode is the file's (WAL,
        # set by the writer), and query_only makes any write on this connection an error.
        connection.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA query_only=ON")
        return connection

    def _checkout(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the session store is closed")
            if self._idle:
                return self._idle.pop()
        connection = self._connect()
        with self._lock:
            if self._closed:
                connection.close()
                raise StoreUnavailable("the session store is closed")
            self._open.add(connection)
        return connection

    def _checkin(self, connection: sqlite3.Connection, *, healthy: bool) -> None:
        with self._lock:
            if healthy and not self._closed and len(self._idle) < self._pool_size:
                self._idle.append(connection)
                return
            self._open.discard(connection)
        connection.close()

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one read transaction on a pooled connection, in this thread.

        Raises:
            StoreUnavailable: the store is closed or the database could not be read.
        """
        connection = self._checkout()
        healthy = False
        try:
            connection.execute("BEGIN")
            try:
                result = fn(connection)
            finally:
                # Ends the snapshot now: the next read on this connection sees later commits.
                connection.execute("COMMIT")
            healthy = True
            return result
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the database could not be read: {exc}") from exc
        finally:
            self._checkin(connection, healthy=healthy)

    def close(self) -> None:
        """Close every connection; connections in use close when their read ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            for connection in idle:
                self._open.discard(connection)
        for connection in idle:
            connection.close()

    # ------------------------------------------------------------------ reads

    def load(self, session_id: str) -> SessionDocument | None:
        """The whole session with its history, or ``None`` (see :meth:`Store.load`)."""

        def fn(connection: sqlite3.Connection) -> SessionDocument | None:
            head = connection.execute(LOAD_HEAD, (session_id,)).fetchall()
            if not head:
                return None
            rows = connection.execute(LOAD_MESSAGES, (session_id,))
            return SessionDocument(
                session_id=session_id,
                user_id=head[0][15],
                name=head[0][16],
                config=_json.decode(head[0][17]) or {},
                created_at=cast("datetime", _utc(head[0][18])),
                last_active_at=_utc(head[0][19]),
                state=_state(head[0]),
                history=decode_rows(rows),
            )

        return self.read(fn)

    def state(self, session_id: str) -> StateRecord | None:
        """The state row of a session, without its history."""

        def fn(connection: sqlite3.Connection) -> StateRecord | None:
            rows = connection.execute(STATE, (session_id,)).fetchall()
            return _state(rows[0]) if rows else None

        return self.read(fn)

    def session_info(self, session_id: str) -> SessionSummary | None:
        """A session's summary, whatever its status."""

        def fn(connection: sqlite3.Connection) -> SessionSummary | None:
            rows = connection.execute(SESSION_INFO, (session_id,)).fetchall()
            return _summary(rows[0]) if rows else None

        return self.read(fn)

    def list_sessions(
        self,
        user_id: str | None,
        status: str | None,
        mode: str | None,
        limit: int,
        newest_by: str = "updated_at",
    ) -> list[SessionSummary]:
        """Sessions matching the filters, most recently updated (or created) first."""
        sql, order = list_sql(
            by_user=user_id is not None,
            by_status=status is not None,
            by_mode=mode is not None,
            newest_by=newest_by,
        )
        values = {"user_id": user_id, "status": status, "mode": mode, "limit": limit}
        params = tuple(values.get(name, default) for name, default in order)

        def fn(connection: sqlite3.Connection) -> list[SessionSummary]:
            return [_summary(row) for row in connection.execute(sql, params).fetchall()]

        return self.read(fn)
