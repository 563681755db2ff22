"""Which database a URL names, and the backend that opens it.

``sqlite://`` and ``postgresql://`` URLs with any driver name (``sqlite+aiosqlite``,
``postgresql+asyncpg``, ``postgresql+psycopg`` ...) name the same databases: the store
always uses the stdlib ``sqlite3`` and psycopg 3, from its own threads. A plain path is a
SQLite file.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy.engine import URL, make_url

from persistence._backend import DEFAULT_APPLICATION_NAME, Backend
from persistence._errors import InvalidArgument
from persistence.sqlite import SqliteSynchronous

DEFAULT_DATABASE_URL = "sqlite:///./sessions.db"
DATABASE_URL_ENV = "SESSIONS_DATABASE_URL"
SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def resolve_url(database_url: str | None) -> URL:
    """The URL to use: the argument, else ``$SESSIONS_DATABASE_URL``, else ``./sessions.db``.

    The driver name is dropped (``sqlite`` or ``postgresql`` remains); a string without
    ``://`` is a SQLite file path. ``:memory:``, ``sqlite://`` and ``sqlite:///:memory:``
    name a new in-memory SQLite database (``sqlite:///:memory:``), one per store.

    Raises:
        InvalidArgument: the URL cannot be parsed or names an unsupported database.
    """
    raw = database_url or os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL
    if raw == ":memory:":
        return URL.create("sqlite", database=":memory:")
    if "://" not in raw:
        return URL.create("sqlite", database=raw)
    try:
        url = make_url(raw)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises several types here
        raise InvalidArgument(f"cannot parse database URL {raw!r}: {exc}") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database in (None, "", ":memory:"):  # one per store, shared by its threads
            return URL.create("sqlite", database=":memory:")
        return url.set(drivername="sqlite")
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql")
    msg = f"unsupported database {backend!r} in {raw!r}: use sqlite or postgresql"
    raise InvalidArgument(msg)


def open_backend(
    url: URL,
    *,
    sqlite_synchronous: SqliteSynchronous = "NORMAL",
    busy_timeout_ms: int = 5000,
    pool_size: int = 5,
    application_name: str = DEFAULT_APPLICATION_NAME,
    prepared_statements: bool = True,
) -> Backend:
    """The backend of ``url`` (see :func:`resolve_url`); nothing is connected yet.

    Raises:
        InvalidArgument: a setting is out of range.
    """
    if sqlite_synchronous not in SQLITE_SYNCHRONOUS:
        raise InvalidArgument(
            f"sqlite_synchronous must be NORMAL or FULL, not {sqlite_synchronous!r}"
        )
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or not 1 <= pool_size <= 1000:
        raise InvalidArgument(f"pool_size must be an int from 1 to 1000, not {pool_size!r}")
    options: dict[str, Any] = {"pool_size": pool_size}
    if url.get_backend_name() == "sqlite":
        # Imported here: each backend's driver is only needed when its database is used.
        from persistence.sqlite import SqliteBackend  # noqa: PLC0415

        return SqliteBackend(
            url, synchronous=sqlite_synchronous, busy_timeout_ms=busy_timeout_ms, **options
        )
    try:
        from persistence.postgres import PostgresBackend  # noqa: PLC0415
    except ImportError as exc:  # psycopg is the optional extra [postgres]
        msg = (
            f"PostgreSQL needs psycopg 3 ({exc}):"
            " pip install 'session-supervisor[postgres]' (or 'psycopg[binary]')"
        )
        raise InvalidArgument(msg) from None

    return PostgresBackend(
        url,
        application_name=application_name,
        prepared_statements=prepared_statements,
        **options,
    )
