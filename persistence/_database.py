"""The thread-safe entry point of the store: loop thread + engines + writer + migrations."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog

from persistence import _migrate
from persistence._engine import Engines, SqliteSynchronous, create_engines, resolve_url
from persistence._errors import StoreUnavailable
from persistence._loop import EventLoopThread
from persistence._reader import SqliteReader
from persistence._records import SessionDocument, SessionSummary, StateRecord
from persistence._store import Store
from persistence._writer import GroupCommitWriter

T = TypeVar("T")
log = structlog.get_logger("persistence")


class Database:
    """An open session store, callable from any thread.

    Example:
        >>> db = Database.open("sqlite+aiosqlite:///./sessions.db")  # doctest: +SKIP
        >>> db.run(db.store.state("some-id"))  # doctest: +SKIP
        >>> db.close()  # doctest: +SKIP
    """

    def __init__(
        self, loop: EventLoopThread, engines: Engines, store: Store, url: str, timeout: float
    ) -> None:
        self._loop = loop
        self._engines = engines
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
    ) -> Database:
        """Open the database, apply pending migrations and start the writer.

        Args:
            database_url: SQLAlchemy URL; default ``$SESSIONS_DATABASE_URL`` or
                ``sqlite+aiosqlite:///./sessions.db``.
            sqlite_synchronous: ``NORMAL`` (default; WAL survives process crashes) or
                ``FULL`` (also survives power loss, one fsync per commit).
            busy_timeout_ms: how long SQLite waits for another process's write lock.
            max_batch: most checkpoints that share one transaction (group commit).
            timeout: seconds a caller waits for one store operation.
            migrate: apply the alembic migrations (on by default).

        Raises:
            InvalidArgument: the URL is not usable.
            StoreUnavailable: the database cannot be reached or migrated.
        """
        url = resolve_url(database_url)
        engines = create_engines(
            url, sqlite_synchronous=sqlite_synchronous, busy_timeout_ms=busy_timeout_ms
        )
        loop = EventLoopThread()

        async def start() -> Store:
            if engines.writer is not None:
                writer = GroupCommitWriter(sync_engine=engines.writer, max_batch=max_batch)
            else:
                writer = GroupCommitWriter(engines.reader, max_batch=max_batch)
            writer.start()
            if migrate:
                try:
                    await writer.submit(_migrate.upgrade_op())
                except BaseException:
                    await writer.close()
                    raise
            return Store(engines, writer)

        try:
            store = loop.run(start(), timeout)
        except Exception as exc:
            loop.run(engines.dispose(), 5.0)
            loop.stop()
            # Name the database in every refusal: the writer's own message does not.
            safe = url.render_as_string(hide_password=True)
            raise StoreUnavailable(f"cannot open the session store at {safe}: {exc}") from exc
        safe_url = url.render_as_string(hide_password=True)
        log.debug("store.opened", url=safe_url)
        return cls(loop, engines, store, safe_url, timeout)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._closed

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule a store coroutine; return a future of its result."""
        if self._closed:
            coro.close()
            raise StoreUnavailable("the session store is closed")
        return self._loop.submit(coro)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a store coroutine and wait for it (at most ``timeout`` seconds).

        Raises:
            StoreUnavailable: the store is closed or did not answer in time.
        """
        future = self.submit(coro)
        try:
            return future.result(self.timeout if timeout is None else timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise StoreUnavailable("the session store did not answer in time") from None

    # ------------------------------------------------------------------ hot reads
    # From a plain thread (the façade's, an actor's) these read in that thread on SQLite
    # (see :class:`SqliteReader`); on PostgreSQL they run the store's coroutine.

    def load(self, session_id: str) -> SessionDocument | None:
        """:meth:`Store.load`, blocking: the whole session, or ``None``.

        Raises:
            StoreUnavailable: the store is closed, unreadable or did not answer in time.
        """
        reader = self._sync_reader()
        if reader is not None:
            return reader.load(session_id)
        return self.run(self.store.load(session_id))

    def state(self, session_id: str) -> StateRecord | None:
        """:meth:`Store.state`, blocking: the state row, or ``None``.

        Raises:
            StoreUnavailable: the store is closed, unreadable or did not answer in time.
        """
        reader = self._sync_reader()
        if reader is not None:
            return reader.state(session_id)
        return self.run(self.store.state(session_id))

    def session_info(self, session_id: str) -> SessionSummary | None:
        """:meth:`Store.session_info`, blocking: the summary, or ``None``.

        Raises:
            StoreUnavailable: the store is closed, unreadable or did not answer in time.
        """
        reader = self._sync_reader()
        if reader is not None:
            return reader.session_info(session_id)
        return self.run(self.store.session_info(session_id))

    def list_sessions(
        self, user_id: str | None, status: str | None, mode: str | None, limit: int
    ) -> list[SessionSummary]:
        """:meth:`Store.list_sessions`, blocking (most recently updated first).

        Raises:
            StoreUnavailable: the store is closed, unreadable or did not answer in time.
        """
        reader = self._sync_reader()
        if reader is not None:
            return reader.list_sessions(user_id, status, mode, limit)
        return self.run(self.store.list_sessions(user_id, status, mode, limit))

    def _sync_reader(self) -> SqliteReader | None:
        if self._closed:
            raise StoreUnavailable("the session store is closed")
        return self._engines.sync_reader

    def close(self) -> None:
        """Commit pending writes, close the connections and stop the loop thread."""
        if self._closed:
            return
        self._closed = True

        async def shutdown() -> None:
            try:
                await self.store.writer.close()
            finally:
                await self._engines.dispose()
                # The async SQLite reads ran on the loop's default executor (Store._off_loop).
                await asyncio.get_running_loop().shutdown_default_executor()

        try:
            self._loop.run(shutdown(), self.timeout)
        except Exception as exc:  # noqa: BLE001 - closing must always stop the loop
            log.warning("store.close_failed", error=repr(exc))
        finally:
            self._loop.stop()
            log.debug("store.closed", url=self.url)
