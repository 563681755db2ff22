"""The entry point of the store: open a database (backend, writer, reads, migrations), close it."""

from __future__ import annotations

import structlog

from persistence._engine import DEFAULT_APPLICATION_NAME, open_backend, resolve_url
from persistence._errors import InvalidArgument, StoreUnavailable
from persistence._reads import ReadPool
from persistence._store import Store
from persistence._writer import GroupCommitWriter
from persistence.sqlite import SqliteSynchronous

log = structlog.get_logger("persistence")


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
            migrate: apply the alembic migrations (on by default).
            pool_size: connections kept for reads.
            application_name: PostgreSQL's ``application_name`` of every connection.
            prepared_statements: PostgreSQL: prepare statements (off behind PgBouncer in
                transaction mode).

        Raises:
            InvalidArgument: the URL or a setting is not usable.
            StoreUnavailable: the database cannot be reached or migrated.
        """
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
        backend.start()
        writer.start()
        try:
            if migrate:
                store.migrate()
            else:
                store.schema_revision()  # reach the database now, not on first use
        except Exception as exc:
            writer.close(5.0)
            reads.close()
            backend.close()
            if isinstance(exc, InvalidArgument):
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

    def close(self) -> None:
        """Commit pending writes, stop the writer, close every connection."""
        if self._closed:
            return
        self._closed = True
        try:
            self.store.writer.close(self.timeout)
        finally:
            self.store.reads.close()
            self.store.backend.close()
            log.debug("store.closed", url=self.url)
