"""Group commit: every write of the store goes through one writer.

Writes that arrive while a transaction is running wait in a queue; the writer takes all of
them (up to ``max_batch``) into the next transaction and resolves each caller's future only
after that transaction committed. On SQLite this is also the single writer connection, so
writers never contend for the file lock inside one process.

Each operation must raise its domain error (``StaleSession``, ``SessionNotFound`` ...)
*before* it writes anything: the other operations of its batch still commit. An error of
the database itself (lost connection, locked or read-only file, failed commit), or any
other exception of an operation, rolls the transaction back and fails every operation of
the batch with :class:`StoreUnavailable`, and no other batch. On PostgreSQL a batch the
server rolled back as a deadlock victim (or for a serialization failure) runs again, up to
three runs in all, before that.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence._ack import Ack
from persistence._errors import StoreUnavailable
from persistence._walcheckpoint import FALLBACK_PAGES, WalCheckpointer
from persistence._write_ops import (
    PG_ATTEMPTS,
    DualOp,
    Item,
    Outcome,
    WriteOp,
    WriterStats,
    apply_ops,
    apply_sqlite,
    refusal,
    rolled_back_for_a_retry,
    settle,
    wait_for,
    wait_for_ack,
)

T = TypeVar("T")
log = structlog.get_logger("persistence.writer")


class GroupCommitWriter:
    """Runs write operations in shared transactions, one transaction at a time.

    Operations are plain functions of a synchronous :class:`~sqlalchemy.Connection`.

    On SQLite one ``sqlite3`` connection does every write, guarded by a lock. A thread that
    submits with :meth:`submit_threadsafe` while the writer is idle (no transaction
    running, nothing queued) runs its operation in its own transaction at once, in its own
    thread: no hand-off at all, which is what one busy caller needs. Otherwise the
    operation queues, and the writer thread takes everything queued into the next
    transaction as soon as the running one committed: that is the group commit many
    concurrent callers need. Coroutines (:meth:`submit`) always queue.

    On PostgreSQL operations run through ``AsyncConnection.run_sync`` on asyncpg, in a
    task of the store's event loop, batched the same way.
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
        if max_batch < 1:
            msg = f"max_batch must be >= 1, not {max_batch}"
            raise ValueError(msg)
        self._engine = engine
        self._sync_engine = sync_engine
        self._max_batch = max_batch
        self._lock = threading.Lock()  # guards _closed and the idle check of submit
        self._closed = False
        self._connection_lock = threading.Lock()  # held by whoever runs a transaction
        self.stats = WriterStats()
        # The SQLite writer thread and its inbox.
        self._inbox: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._thread_done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._connection: Connection | None = None
        # Its DBAPI connection, valid while _connection is set (a failure drops both).
        self._driver: sqlite3.Connection | None = None
        self._checkpointer = None if sync_engine is None else WalCheckpointer(sync_engine)
        # The PostgreSQL writer task on the store's loop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[WriteOp, asyncio.Future[Any]] | None] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Writes waiting for the next transaction."""
        if self._queue is not None:
            return self._queue.qsize()
        return self._inbox.qsize()

    def start(self) -> None:
        """Start the writer (on PostgreSQL: as a task of the running loop)."""
        if self._sync_engine is not None:
            self._thread = threading.Thread(
                target=self._thread_main, name="session-store-writer", daemon=True
            )
            self._thread.start()
            if self._checkpointer is not None:
                self._checkpointer.start()
            return
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._task = self._loop.create_task(self._run(), name="group-commit")

    def submit_threadsafe(self, op: Callable[[Connection], T]) -> concurrent.futures.Future[T]:
        """Queue ``op`` for the next transaction from any thread but the store's loop.

        Returns:
            A future resolved once that transaction committed (or failed). Cancelling it
            before its transaction started drops the operation.

        Raises:
            StoreUnavailable: the writer is closed.
        """
        if self._sync_engine is None:
            if self._closed or self._loop is None:
                raise StoreUnavailable("the session store is closed")
            return asyncio.run_coroutine_threadsafe(self.submit(op), self._loop)
        return self._enqueue(op, inline=True)

    def call_threadsafe(self, op: Callable[[Connection], T], timeout: float) -> T:
        """Run ``op`` as :meth:`submit_threadsafe` would and return its result once committed.

        A caller that finds the SQLite writer idle commits in its own thread and gets the
        outcome directly: no future, so no lock or condition is created or signalled.

        Raises:
            StoreUnavailable: the store is closed, refused the write, or did not commit
                within ``timeout`` seconds (then it may still commit later).
            Exception: the operation's own (domain) error.
        """
        if self._sync_engine is None:
            return wait_for(self.submit_threadsafe(op), timeout)
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the session store is closed")
            if not (self._inbox.empty() and self._connection_lock.acquire(blocking=False)):
                ack: Ack[T] = Ack()
                self._inbox.put((op, ack))
                inline = False
            else:
                inline = True
        if not inline:
            return wait_for_ack(ack, timeout)
        try:
            ((ok, value),) = self._commit_locked([op])
        finally:
            self._connection_lock.release()
        if ok:
            return cast("T", value)
        raise value

    def _enqueue(
        self, op: Callable[[Connection], T], *, inline: bool
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:  # so that nothing slips in behind close()'s end marker
            if self._closed:
                raise StoreUnavailable("the session store is closed")
            inline = (
                inline and self._inbox.empty() and self._connection_lock.acquire(blocking=False)
            )
            if not inline:
                self._inbox.put((op, future))
        if inline:
            batch: list[Item] = [(op, future)]
            try:
                future.set_running_or_notify_cancel()
                outcomes = self._commit_locked([op])
            finally:
                self._connection_lock.release()
            settle(batch, outcomes)
        return future

    async def submit(self, op: Callable[[Connection], T]) -> T:
        """Run ``op`` in the next transaction; return once that transaction committed."""
        if self._sync_engine is not None:
            return await asyncio.wrap_future(self._enqueue(op, inline=False))
        if self._closed or self._queue is None:
            raise StoreUnavailable("the session store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))
        return await future

    async def close(self) -> None:
        """Commit every write already submitted, then stop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._sync_engine is not None:
            self._inbox.put(None)
            if self._thread is not None:
                # Waits without a helper thread (an executor's would outlive close()).
                await asyncio.wrap_future(self._thread_done)
                self._thread.join()
            if self._checkpointer is not None:
                self._checkpointer.close()
            return
        if self._queue is not None:
            self._queue.put_nowait(None)
        if self._task is not None:
            await self._task

    # ------------------------------------------------------------------ SQLite: a thread

    def _thread_main(self) -> None:
        try:
            self._drain()
        finally:
            with self._connection_lock:  # after a caller's own transaction, if one runs
                self._drop_connection()
            self._thread_done.set_result(None)

    def _drop_connection(self) -> None:
        """Close the writer's connection (after a failure: the next batch opens a new one)."""
        connection, self._connection = self._connection, None
        self._driver = None
        if connection is not None:
            try:
                connection.close()
            except Exception as exc:  # noqa: BLE001 - it is being discarded anyway
                log.warning("store.connection_close_failed", error=repr(exc))

    def _drain(self) -> None:
        inbox = self._inbox
        stopping = False
        while not stopping:
            item = inbox.get()
            if item is None:
                break
            # Take the connection first, then everything that queued meanwhile: what
            # arrived while another transaction ran shares the next one.
            with self._connection_lock:
                batch, stopping = self._gather(item)
                # A caller that gave up (timeout, cancelled task) before we began is dropped.
                live = [entry for entry in batch if entry[1].set_running_or_notify_cancel()]
                outcomes = self._commit_locked([op for op, _ in live]) if live else []
            settle(live, outcomes)

    def _gather(self, first: Item) -> tuple[list[Item], bool]:
        """``first`` and what is queued behind it (up to ``max_batch``); and whether to stop."""
        batch = [first]
        while len(batch) < self._max_batch:
            try:
                more = self._inbox.get_nowait()
            except queue.Empty:
                break
            if more is None:
                return batch, True
            batch.append(more)
        return batch, False

    def _commit_locked(self, ops: list[WriteOp]) -> list[Outcome]:
        """Run ``ops`` in one transaction (the caller holds the connection lock).

        Returns the outcomes for :func:`settle`, which the caller runs after releasing the
        lock, so that an acknowledged caller finds the writer idle again.
        """
        assert self._sync_engine is not None  # noqa: S101 - only on SQLite
        started = time.perf_counter()
        try:
            # One connection for the writer's life: a pool checkout per batch costs more
            # than the checkpoint itself.
            connection, driver = self._connection, self._driver
            if connection is None or driver is None:
                connection = self._connection = self._sync_engine.connect()
                driver = cast("sqlite3.Connection", connection.connection.driver_connection)
                driver.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_PAGES}")
                self._driver = driver
            if all(isinstance(op, DualOp) for op in ops):
                outcomes = self._commit_bare(driver, cast("list[DualOp]", ops))
            else:
                with connection.begin():
                    outcomes = apply_ops(connection, ops)
        except Exception as exc:  # noqa: BLE001 - every database failure fails the batch
            self._drop_connection()
            self.stats.failed_batches += 1
            log.warning("store.batch_failed", size=len(ops), error=repr(exc))
            return [(False, refusal(exc)) for _ in ops]
        self.stats.committed(len(ops), time.perf_counter() - started)
        if self._checkpointer is not None:
            self._checkpointer.committed(len(ops))
        return outcomes

    @staticmethod
    def _commit_bare(driver: sqlite3.Connection, ops: list[DualOp]) -> list[Outcome]:
        """Run ``ops`` in one transaction opened and committed on the ``sqlite3`` connection.

        SQLAlchemy's connection (``driver``'s owner) is idle meanwhile (no transaction of
        its own), so the other path finds it as it left it. On any failure the transaction
        is rolled back and the error propagates (the caller fails the batch and drops the
        connection).
        """
        driver.execute("BEGIN IMMEDIATE")
        try:
            outcomes = apply_sqlite(driver, ops)
            driver.execute("COMMIT")
        except BaseException:
            if driver.in_transaction:
                driver.execute("ROLLBACK")
            raise
        return outcomes

    # ------------------------------------------------------------------ PostgreSQL: a task

    async def _run(self) -> None:
        assert self._queue is not None  # noqa: S101 - set by start()
        pending = self._queue
        stopping = False
        while not stopping:
            item = await pending.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < self._max_batch and not pending.empty():
                more = pending.get_nowait()
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            await self._commit_async(batch)

    async def _commit_async(self, batch: list[tuple[WriteOp, asyncio.Future[Any]]]) -> None:
        assert self._engine is not None  # noqa: S101 - the task exists only then
        started = time.perf_counter()
        for attempt in range(1, PG_ATTEMPTS + 1):
            # A caller that gave up (a cancelled task, a timeout) is dropped, not run.
            batch = [entry for entry in batch if not entry[1].done()]
            if not batch:
                return
            try:
                async with self._engine.begin() as connection:
                    outcomes = await connection.run_sync(apply_ops, [op for op, _ in batch])
                break
            except Exception as exc:  # noqa: BLE001 - every database failure fails the batch
                if attempt < PG_ATTEMPTS and rolled_back_for_a_retry(exc):
                    self.stats.retried_batches += 1
                    log.info("store.batch_retried", size=len(batch), error=repr(exc))
                    await asyncio.sleep(random.uniform(0, 0.01 * attempt))  # noqa: S311
                    continue
                self.stats.failed_batches += 1
                log.warning("store.batch_failed", size=len(batch), error=repr(exc))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(refusal(exc))
                return
        self.stats.committed(len(batch), time.perf_counter() - started)
        for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
