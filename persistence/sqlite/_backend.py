"""SQLite: the embedded default. WAL, one writer connection, read-only readers.

The writer's connection begins its transactions with ``BEGIN IMMEDIATE`` (it takes the
file's write lock at once, so a transaction never fails half-way for a lock) and waits
``busy_timeout`` for another process holding it. Readers are ``query_only`` connections:
in WAL mode they never wait for the writer. WAL checkpoints run in a thread of their own
(see :mod:`persistence.sqlite._walcheckpoint`).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.pool import QueuePool

from persistence._backend import Backend
from persistence.sqlite._path import MEMORY_URL, check_file, is_memory, memory_uri
from persistence.sqlite._walcheckpoint import FALLBACK_PAGES, WalCheckpointer

SqliteSynchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


def sqlite_datetime(value: datetime) -> str:
    """An aware datetime as SQLAlchemy's SQLite ``DateTime`` stores it (naive UTC text).

    Raises:
        ValueError: ``value`` is naive (the clock must return aware UTC datetimes).
    """
    if value.tzinfo is None:
        msg = f"naive datetime {value!r}: the clock must return aware UTC datetimes"
        raise ValueError(msg)
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _configure(
    engine: Engine, *, begin: str, synchronous: SqliteSynchronous, busy_timeout_ms: int
) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy's recipe: let us emit BEGIN ourselves (IMMEDIATE for the writer).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)


class SqliteBackend(Backend):
    """A SQLite database file."""

    name: ClassVar[str] = "sqlite"
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = (sqlite3.Error,)
    data_errors: ClassVar[tuple[type[BaseException], ...]] = (
        *Backend.data_errors, sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError,
    )  # fmt: skip

    def __init__(
        self,
        url: URL,
        *,
        synchronous: SqliteSynchronous = "NORMAL",
        busy_timeout_ms: int = 5000,
        pool_size: int = 5,
    ) -> None:
        sync_url = url.set(drivername="sqlite+pysqlite")
        settings: dict[str, Any] = {"synchronous": synchronous, "busy_timeout_ms": busy_timeout_ms}
        self._keeper: sqlite3.Connection | None = None
        engine_options: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
        if is_memory(url.database):
            # One in-memory database for the writer and every reader, kept alive by one
            # connection held for the store's life (see persistence.sqlite._path).
            self._database, self._uri = memory_uri(), True
            self._keeper = sqlite3.connect(self._database, uri=True, check_same_thread=False)
            engine_options = {"creator": self._connect_memory, "poolclass": QueuePool}
        else:
            self._database = str(url.database)
            self._uri = str(url.query.get("uri", "")).lower() in ("1", "true")
            if not self._uri:  # a file: URI is the caller's own business
                check_file(self._database)
        write_engine = create_engine(sync_url, pool_size=1, max_overflow=0, **engine_options)
        _configure(write_engine, begin="BEGIN IMMEDIATE", **settings)
        read_engine = create_engine(
            sync_url, pool_size=pool_size, max_overflow=pool_size, **engine_options
        )
        _configure(read_engine, begin="BEGIN", **settings)
        dialect = SQLiteDialect_pysqlite(paramstyle="named")
        shown = MEMORY_URL if self._keeper is not None else url.render_as_string()
        super().__init__(dialect, write_engine, read_engine, shown)
        self._busy_timeout_ms = int(busy_timeout_ms)
        self.lock_wait_cap_ms = self._busy_timeout_ms  # the writer never waits longer
        self._checkpointer = WalCheckpointer(write_engine)

    def _connect_memory(self) -> sqlite3.Connection:
        return sqlite3.connect(self._database, uri=True, check_same_thread=False)

    @property
    def in_memory(self) -> bool:
        """Whether the database lives in this process's memory (gone when it closes)."""
        return self._keeper is not None

    def connect_reader(self) -> sqlite3.Connection:
        """A read-only connection: it never takes the write lock nor waits for the writer."""
        connection = sqlite3.connect(
            self._database, isolation_level=None, check_same_thread=False, uri=self._uri
        )
        # journal_mode is the file's (WAL, set by the writer); query_only makes any write
        # on this connection an error.
        connection.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA query_only=ON")
        return connection

    def begin_read(self, driver: sqlite3.Connection, *, snapshot: bool) -> None:
        """Every read is one short transaction: no snapshot outlives it."""
        driver.execute("BEGIN")

    def end_read(self, driver: sqlite3.Connection, *, snapshot: bool) -> None:
        """End the read's snapshot: the next read on this connection sees later commits."""
        driver.execute("COMMIT")

    def writer_opened(self, driver: sqlite3.Connection) -> None:
        """The automatic checkpoint only as a fallback (see the WAL checkpointer)."""
        driver.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_PAGES}")

    def begin(self, driver: sqlite3.Connection) -> None:
        """Take the write lock now (waiting ``busy_timeout`` for another process)."""
        driver.execute("BEGIN IMMEDIATE")

    def commit(self, driver: sqlite3.Connection) -> None:
        """Commit."""
        driver.execute("COMMIT")

    def rollback(self, driver: sqlite3.Connection) -> None:
        """Roll back, if a transaction is open."""
        if driver.in_transaction:
            driver.execute("ROLLBACK")

    def set_lock_wait(self, driver: sqlite3.Connection, milliseconds: int) -> None:
        """``busy_timeout``: how long ``BEGIN IMMEDIATE`` waits for another process."""
        driver.execute(f"PRAGMA busy_timeout={int(milliseconds)}")

    def bind_time(self, value: datetime) -> str:
        """Naive UTC text, as SQLAlchemy's SQLite ``DateTime`` stores it."""
        return sqlite_datetime(value)

    def load_time(self, value: Any) -> datetime | None:
        """Stored naive UTC text as an aware datetime."""
        if value is None:
            return None
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    def committed(self, operations: int) -> None:
        """Wake the WAL checkpointer when enough was committed."""
        self._checkpointer.committed(operations)

    @property
    def wal_checkpoints(self) -> int:
        """Background WAL checkpoints run so far."""
        return self._checkpointer.checkpoints

    def start(self) -> None:
        """Start the WAL checkpointer."""
        self._checkpointer.start()

    def close(self) -> None:
        """Stop the WAL checkpointer, dispose of the engines (an in-memory database goes)."""
        self._checkpointer.close()
        super().close()
        if self._keeper is not None:
            self._keeper.close()
