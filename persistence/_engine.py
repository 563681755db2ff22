"""Async engine factory: SQLite (WAL, one writer) and PostgreSQL (asyncpg pool)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from persistence._errors import InvalidArgument
from persistence._reader import SqliteReader

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./sessions.db"
DATABASE_URL_ENV = "SESSIONS_DATABASE_URL"

SqliteSynchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

#: Settings of every PostgreSQL connection the store opens. A process that is paused
#: (SIGSTOP, a frozen VM) inside one of its transactions keeps that transaction's row
#: locks, which would block a takeover for as long as the pause lasts; the server ends
#: such a transaction after this idle time, so its locks go and the writes it held were
#: never acknowledged. The store's own transactions never idle between statements.
PG_SERVER_SETTINGS = {
    "application_name": "session-supervisor",
    "idle_in_transaction_session_timeout": "5000",  # milliseconds
}


def resolve_url(database_url: str | None) -> URL:
    """Return the async URL to use: the argument, else ``$SESSIONS_DATABASE_URL``, else SQLite.

    Plain ``sqlite://`` and ``postgresql://`` URLs get their async driver.

    Raises:
        InvalidArgument: the URL cannot be parsed or names an unsupported database.
    """
    raw = database_url or os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL
    try:
        url = make_url(raw)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises several types here
        raise InvalidArgument(f"cannot parse database URL {raw!r}: {exc}") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database in (None, "", ":memory:"):
            msg = (
                "an in-memory SQLite database cannot be shared by the store's connections;"
                " give a file path, e.g. sqlite+aiosqlite:///./sessions.db"
            )
            raise InvalidArgument(msg)
        return url.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+asyncpg")
    msg = f"unsupported database {backend!r} in {raw!r}: use sqlite or postgresql"
    raise InvalidArgument(msg)


@dataclass(frozen=True)
class Engines:
    """The engines of one database.

    On SQLite the writer is a synchronous engine (stdlib ``sqlite3``, one connection) used
    from the writer thread, and ``sync_reader`` serves the hot reads in the calling thread;
    on PostgreSQL both are ``None`` and everything uses ``reader``.
    """

    reader: AsyncEngine
    writer: Engine | None
    dialect: str
    sync_reader: SqliteReader | None = None

    async def dispose(self) -> None:
        """Close every pooled connection."""
        if self.sync_reader is not None:
            self.sync_reader.close()
        await self.reader.dispose()
        if self.writer is not None:
            self.writer.dispose()


def _configure_sqlite(
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


def create_engines(
    url: URL,
    *,
    sqlite_synchronous: SqliteSynchronous = "NORMAL",
    busy_timeout_ms: int = 5000,
    pool_size: int = 5,
) -> Engines:
    """Create the engines for ``url`` (see :func:`resolve_url`)."""
    if sqlite_synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise InvalidArgument(
            f"sqlite_synchronous must be NORMAL or FULL, not {sqlite_synchronous!r}"
        )
    if url.get_backend_name() == "sqlite":
        sqlite = {"synchronous": sqlite_synchronous, "busy_timeout_ms": busy_timeout_ms}
        writer = create_engine(
            url.set(drivername="sqlite+pysqlite"),
            pool_size=1,
            max_overflow=0,
            connect_args={"check_same_thread": False},
        )
        _configure_sqlite(writer, begin="BEGIN IMMEDIATE", **sqlite)  # type: ignore[arg-type]
        reader = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)
        _configure_sqlite(reader.sync_engine, begin="BEGIN", **sqlite)  # type: ignore[arg-type]
        assert url.database is not None  # noqa: S101 - resolve_url refuses in-memory databases
        sync_reader = SqliteReader(
            url.database,
            busy_timeout_ms=busy_timeout_ms,
            uri=str(url.query.get("uri", "")).lower() in ("1", "true"),
            pool_size=2 * pool_size,  # as many as the async engine's pool + overflow
        )
        return Engines(reader=reader, writer=writer, dialect="sqlite", sync_reader=sync_reader)
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"server_settings": dict(PG_SERVER_SETTINGS)},
        # A pooled connection the server dropped (restart, failover, a killed backend)
        # is replaced at checkout instead of failing the next write once the server is
        # back; it also discards a connection asyncpg left mid-operation.
        pool_pre_ping=True,
    )
    return Engines(reader=engine, writer=None, dialect=url.get_backend_name())
