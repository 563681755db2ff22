"""The hot reads: compiled statements on a small pool of the driver's own connections.

Loading a session is one read of its state row and all of its messages. Through
SQLAlchemy that read would build a row object per message, more than the SELECT itself
costs; here the calling thread runs compiled statements on a pooled connection and
decodes each message with a few dict stores. The same code serves both databases.

On SQLite every connection is read-only (``query_only``) and never waits for the writer
(WAL); on PostgreSQL a one-statement read runs in autocommit and a load reads one
snapshot. Either way a read sees every write acknowledged before it began.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar, cast

from persistence import _fork, _json, _statements
from persistence._backend import Backend, Driver
from persistence._codec import decode_rows
from persistence._errors import StoreUnavailable
from persistence._records import MessageRow, SessionDocument, SessionSummary, StateRecord
from persistence._sql import Statement
from persistence._tables import state_record

T = TypeVar("T")

#: Positions of the datetime columns in a summary row.
_SUMMARY_TIMES = (4, 5, 10, 14)


class _StaleConnection(Exception):
    """A read failed because its pooled connection was dead; carries the error to raise."""

    def __init__(self, error: StoreUnavailable) -> None:
        super().__init__(str(error))
        self.error = error


class ReadPool:
    """Connections for the hot reads of one database, shared by every thread.

    A read checks a connection out of the pool (opening one if none is idle), runs in the
    calling thread, and checks it back in; at most ``pool_size`` idle connections are kept.
    """

    def __init__(self, backend: Backend, *, pool_size: int = 8) -> None:
        self._backend = backend
        self._pool_size = pool_size
        self._idle: list[Driver] = []
        self._open: set[int] = set()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def open_connections(self) -> int:
        """How many connections are open (idle or in use)."""
        with self._lock:
            return len(self._open)

    def _checkout(self, *, fresh: bool = False) -> tuple[Driver, bool]:
        """A connection, and whether it was reused from the pool."""
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the session store is closed")
            if self._idle and not fresh:
                return self._idle.pop(), True
        connection = self._backend.connect_reader()
        _fork.track(connection)
        with self._lock:
            if self._closed:
                connection.close()
                raise StoreUnavailable("the session store is closed")
            self._open.add(id(connection))
        return connection, False

    def _checkin(self, connection: Driver, *, healthy: bool) -> None:
        with self._lock:
            if healthy and not self._closed and len(self._idle) < self._pool_size:
                self._idle.append(connection)
                return
            self._open.discard(id(connection))
        connection.close()

    def read(self, fn: Callable[[Driver], T], *, snapshot: bool = False) -> T:
        """Run ``fn`` on a pooled connection, in this thread (``snapshot``: one snapshot).

        Raises:
            StoreUnavailable: the store is closed or the database could not be read.
        """
        try:
            return self._read_once(fn, snapshot=snapshot, fresh=False)
        except _StaleConnection:
            # A pooled connection the server dropped while it was idle (a restart, a
            # killed backend), and likely its idle peers too: a read changes nothing, so
            # it runs again on a new connection.
            self._discard_idle()
            return self._read_once(fn, snapshot=snapshot, fresh=True)

    def _discard_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            for connection in idle:
                self._open.discard(id(connection))
        for connection in idle:
            with contextlib.suppress(Exception):  # already broken
                connection.close()

    def _read_once(self, fn: Callable[[Driver], T], *, snapshot: bool, fresh: bool) -> T:
        backend = self._backend
        try:
            connection, reused = self._checkout(fresh=fresh)
        except backend.driver_errors as exc:
            raise StoreUnavailable(f"the database could not be read: {exc}") from exc
        healthy = False
        try:
            backend.begin_read(connection, snapshot=snapshot)
            try:
                result = fn(connection)
            finally:
                backend.end_read(connection, snapshot=snapshot)
            healthy = True
            return result
        except backend.driver_errors as exc:
            error = StoreUnavailable(f"the database could not be read: {exc}")
            error.__cause__ = exc
            if reused and backend.connection_lost(exc):
                raise _StaleConnection(error) from exc
            raise error from exc
        finally:
            self._checkin(connection, healthy=healthy)

    def close(self) -> None:
        """Close every connection; connections in use close when their read ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            for connection in idle:
                self._open.discard(id(connection))
        for connection in idle:
            connection.close()

    # ------------------------------------------------------------------ reads

    def _rows(self, connection: Driver, statement: Statement, params: dict[str, Any]) -> Any:
        compiled = statement.compiled(self._backend.dialect)
        return connection.execute(compiled.text, compiled.bind(params))

    def _with_times(self, row: tuple[Any, ...], positions: tuple[int, ...]) -> list[Any]:
        values = list(row)
        load_time = self._backend.load_time
        for position in positions:
            values[position] = load_time(values[position])
        return values

    def _state(self, row: tuple[Any, ...]) -> StateRecord:
        return state_record(row, self._backend.load_time)

    def _summary(self, row: tuple[Any, ...]) -> SessionSummary:
        values = self._with_times(row, _SUMMARY_TIMES)
        values[3] = _json.decode(values[3]) or {}
        return SessionSummary(*values)

    def load(self, session_id: str) -> SessionDocument | None:
        """The whole session with its history, or ``None`` if it does not exist."""
        params = {"sid": session_id}

        def fn(connection: Driver) -> SessionDocument | None:
            head = self._rows(connection, _statements.LOAD_HEAD, params).fetchall()
            if not head:
                return None
            rows = self._rows(connection, _statements.LOAD_MESSAGES, params).fetchall()
            first = head[0]
            return SessionDocument(
                session_id=session_id,
                user_id=first[15],
                name=first[16],
                config=_json.decode(first[17]) or {},
                created_at=cast("datetime", self._backend.load_time(first[18])),
                last_active_at=self._backend.load_time(first[19]),
                state=self._state(first),
                history=decode_rows(rows),
            )

        return self.read(fn, snapshot=True)

    def state(self, session_id: str) -> StateRecord | None:
        """The state row of a session, without its history."""

        def fn(connection: Driver) -> StateRecord | None:
            rows = self._rows(connection, _statements.STATE, {"sid": session_id}).fetchall()
            return self._state(rows[0]) if rows else None

        return self.read(fn)

    def message_rows(self, session_id: str) -> list[MessageRow]:
        """A session's history as stored: its encoded rows, oldest first."""

        def fn(connection: Driver) -> list[MessageRow]:
            rows = self._rows(connection, _statements.LOAD_MESSAGES, {"sid": session_id})
            return [(row[0], row[1], row[2], row[3], row[4]) for row in rows.fetchall()]

        return self.read(fn)

    def session_info(self, session_id: str) -> SessionSummary | None:
        """A session's summary, whatever its status."""

        def fn(connection: Driver) -> SessionSummary | None:
            statement = _statements.SESSION_INFO
            rows = self._rows(connection, statement, {"sid": session_id}).fetchall()
            return self._summary(rows[0]) if rows else None

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
        statement = _statements.list_sessions(
            by_user=user_id is not None,
            by_status=status is not None,
            by_mode=mode is not None,
            newest_by=newest_by,
        )
        params = {"user_id": user_id, "status": status, "mode": mode, "limit": limit}

        def fn(connection: Driver) -> list[SessionSummary]:
            return [self._summary(row) for row in self._rows(connection, statement, params)]

        return self.read(fn)
