"""The entry point of the store: open a database (backend, writer, reads, migrations), close it."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import event

from persistence import _fork
from persistence._backend import DEFAULT_APPLICATION_NAME
from persistence._engine import open_backend, resolve_url
from persistence._errors import InvalidArgument, SchemaOutdated, SchemaTooNew, StoreUnavailable
from persistence._reads import ReadPool
from persistence._store import Store
from persistence._writer import GroupCommitWriter
from persistence.sqlite import SqliteSynchronous

log = structlog.get_logger("persistence")


def _track_connection(dbapi_connection: Any, _record: Any) -> None:
    _fork.track(dbapi_connection)


class Database:
    """An open session store, callable from any thread.

    Example:
        >>> db = Database.open("sqlite:///./sessions.db")  # doctest: +SKIP
        >>> db.store.state("some-id")  # doctest: +SKIP
        >>> db.close()  # doctest: +SKIP
    """

    def __init__(self, store: Store, url: str, timeout: float) -> None:
        self.store = store
        self.url = url
        self.timeout = timeout
        self._closed = False

    @classmethod
    def open(
        cls,
        database_url: str | None = None,
        *,
        sqlite_synchronous: SqliteSynchronous = "NORMAL",
        busy_timeout_ms: int = 5000,
        max_batch: int = 256,
        timeout: float = 30.0,
        migrate: bool = True,
        pool_size: int = 5,
        application_name: str = DEFAULT_APPLICATION_NAME,
        prepared_statements: bool = True,
        auto_migrate: bool = True,
    ) -> Database:
        """Open the database, apply pending migrations and start the writer.

        Args:
            database_url: ``sqlite:///path``, a plain path, or ``postgresql://...``;
                default ``$SESSIONS_DATABASE_URL`` or ``./sessions.db``.
            sqlite_synchronous: ``NORMAL`` (default; WAL survives process crashes) or
                ``FULL`` (also survives power loss, one fsync per commit).
            busy_timeout_ms: how long SQLite waits for another process's write lock.
            max_batch: most operations that share one transaction (group commit).
            timeout: seconds a caller waits for one write.
            migrate: check the schema and apply the alembic migrations (on by default);
                off, nothing is checked (operators' tools that inspect any schema).
            auto_migrate: with ``migrate``: upgrade a database behind this code (the
                default); off (fleets that run ``sessions db upgrade`` once), such a
                database is refused with ``SchemaOutdated``. Either way a database newer
                than this code's compatibility window is refused (``SchemaTooNew``).
            pool_size: connections kept for reads.
            application_name: PostgreSQL's ``application_name`` of every connection.
            prepared_statements: PostgreSQL: prepare statements (off behind PgBouncer in
                transaction mode).

        Raises:
            InvalidArgument: the URL or a setting is not usable.
            SchemaOutdated: ``auto_migrate`` is off and the schema is behind the code.
            SchemaTooNew: the schema needs newer code than this.
            StoreUnavailable: the database cannot be reached or migrated.
        """
        if not isinstance(auto_migrate, bool):
            raise InvalidArgument(f"auto_migrate must be True or False, not {auto_migrate!r}")
        url = resolve_url(database_url)
        backend = open_backend(
            url,
            sqlite_synchronous=sqlite_synchronous,
            busy_timeout_ms=busy_timeout_ms,
            pool_size=pool_size,
            application_name=application_name,
            prepared_statements=prepared_statements,
        )
        writer = GroupCommitWriter(backend, max_batch=max_batch)
        reads = ReadPool(backend, pool_size=2 * pool_size)
        store = Store(backend, writer, reads, timeout)
        for engine in (backend.write_engine, backend.read_engine):
            event.listen(engine, "connect", _track_connection)
        backend.start()
        writer.start()
        try:
            if migrate:
                # A read first: a database that is up to date (or newer, within the
                # window) is never written, and one that must not be upgraded is refused.
                if store.check_schema(upgrade_allowed=auto_migrate):
                    store.migrate()
            else:
                store.schema_revision()  # reach the database now, not on first use
        except Exception as exc:
            writer.close(5.0)
            reads.close()
            backend.close()
            if isinstance(exc, InvalidArgument | SchemaOutdated | SchemaTooNew):
                raise
            # Name the database in every refusal: the writer's own message does not.
            raise StoreUnavailable(
                f"cannot open the session store at {backend.url}: {exc}"
            ) from exc
        log.debug("store.opened", url=backend.url)
        return cls(store, backend.url, timeout)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._closed

    @property
    def forked(self) -> bool:
        """Whether this process is a fork of the one that opened the database."""
        return self.store.forked

    def close(self) -> None:
        """Commit pending writes, stop the writer, close every connection.

        In a forked child it only marks the store closed: the writer thread does not
        exist there, and the connections are the parent's.
        """
        if self._closed:
            return
        self._closed = True
        if self.store.forked:
            return
        try:
            self.store.writer.close(self.timeout)
        finally:
            self.store.reads.close()
            self.store.backend.close()
            log.debug("store.closed", url=self.url)
