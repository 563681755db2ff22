"""Group commit: every write of the store goes through one writer task.

Writes that arrive while a transaction is running wait in a queue; the writer takes all of
them (up to ``max_batch``) into the next transaction and resolves each caller's future only
after that transaction committed. On SQLite this is also the single writer connection, so
writers never contend for the file lock inside one process.

Each operation must raise its domain error (``StaleSession``, ``SessionNotFound`` ...)
*before* it writes anything: the other operations of its batch still commit. An error of
the database itself (lost connection, locked or read-only file, failed commit) fails every
operation of the batch with :class:`StoreUnavailable` and no other batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence._errors import SessionSupervisorError, StoreUnavailable

T = TypeVar("T")
WriteOp = Callable[[Connection], Any]
_Outcome = tuple[bool, Any]

log = structlog.get_logger("persistence.writer")


@dataclass
class WriterStats:
    """Counters of the writer since it started."""

    batches: int = 0
    operations: int = 0
    failed_batches: int = 0
    largest_batch: int = 0
    commit_seconds: list[float] = field(default_factory=list)


def _apply(connection: Connection, ops: list[WriteOp]) -> list[_Outcome]:
    outcomes: list[_Outcome] = []
    for op in ops:
        try:
            outcomes.append((True, op(connection)))
        except SessionSupervisorError as error:
            outcomes.append((False, error))
    return outcomes


class GroupCommitWriter:
    """Runs write operations in shared transactions, one transaction at a time.

    Operations are plain functions of a synchronous :class:`~sqlalchemy.Connection`. On
    SQLite they run on a dedicated thread with the standard ``sqlite3`` driver, so a whole
    batch costs one thread hand-off (aiosqlite costs one per statement); on PostgreSQL they
    run through ``AsyncConnection.run_sync`` on asyncpg.
    """

    def __init__(
        self,
        engine: AsyncEngine | None = None,
        *,
        sync_engine: Engine | None = None,
        max_batch: int = 256,
    ) -> None:
        if (engine is None) == (sync_engine is None):
            msg = "give exactly one of engine (async) or sync_engine"
            raise ValueError(msg)
        self._engine = engine
        self._sync_engine = sync_engine
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        if sync_engine is not None:
            self._thread = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="session-store-writer"
            )
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[WriteOp, asyncio.Future[Any]] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = WriterStats()

    @property
    def pending(self) -> int:
        """Writes waiting for the next transaction."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the writer task on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def submit(self, op: Callable[[Connection], T]) -> T:
        """Run ``op`` in the next transaction; return once that transaction committed."""
        if self._closed:
            raise StoreUnavailable("the session store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))
        return await future

    async def close(self) -> None:
        """Commit every write already submitted, then stop."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task
        if self._thread is not None:
            self._thread.shutdown(wait=True)

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            item = await self._queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < self._max_batch and not self._queue.empty():
                more = self._queue.get_nowait()
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            await self._commit(batch)

    def _transaction(self, ops: list[WriteOp]) -> list[_Outcome]:
        assert self._sync_engine is not None  # noqa: S101 - only called on the sync path
        with self._sync_engine.begin() as connection:
            return _apply(connection, ops)

    async def _execute(self, ops: list[WriteOp]) -> list[_Outcome]:
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._transaction, ops)
        assert self._engine is not None  # noqa: S101 - one of the two is set
        async with self._engine.begin() as connection:
            return await connection.run_sync(_apply, ops)

    async def _commit(self, batch: list[tuple[WriteOp, asyncio.Future[Any]]]) -> None:
        started = time.perf_counter()
        try:
            outcomes = await self._execute([op for op, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every database failure fails the batch
            self.stats.failed_batches += 1
            log.warning("store.batch_failed", size=len(batch), error=repr(exc))
            for _, future in batch:
                if not future.done():
                    error = StoreUnavailable(f"the database refused the write: {exc}")
                    error.__cause__ = exc
                    future.set_exception(error)
            return
        self.stats.batches += 1
        self.stats.operations += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        timings = self.stats.commit_seconds
        timings.append(time.perf_counter() - started)
        if len(timings) > 4096:
            del timings[:2048]
        for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
