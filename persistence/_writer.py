"""Group commit: every write of the store goes through one writer per database.

Writes that arrive while a transaction is running wait in a queue; the writer thread
takes all of them (up to ``max_batch``) into the next transaction and acknowledges each
caller only after that transaction committed. A caller that finds the writer idle (no
transaction running, nothing queued) runs its write in its own thread at once: no hand-off,
which is what one busy caller needs.

Each operation raises its domain error (``StaleSession``, ``SessionNotFound`` ...)
*before* it writes anything: the other operations of its batch still commit. An error of
the database itself (lost connection, locked or read-only file, failed commit), or any
other exception of an operation, rolls the transaction back and fails every operation of
the batch with :class:`StoreUnavailable`, and no other batch. A batch the database rolled
back whole (a PostgreSQL deadlock victim, a serialization failure) runs again first, up
to three runs in all.

A batch of hot operations only runs on the driver's connection: the writer begins and
commits it there, and on PostgreSQL sends it pipelined (one round trip per phase of the
batch, see :class:`HotOp`). A batch with any Core operation runs in a SQLAlchemy
transaction on the same connection.
"""

from __future__ import annotations

import contextlib
import queue
import random
import threading
import time
from typing import Any, TypeVar, cast

import structlog
from sqlalchemy import Connection

from persistence._ack import Ack
from persistence._backend import Backend, Driver, Tx, core_connection_driver
from persistence._errors import SessionSupervisorError, StoreUnavailable
from persistence._write_ops import (
    ATTEMPTS,
    HotOp,
    Item,
    NotCommitted,
    Outcome,
    WriteOp,
    WriterStats,
    refusal,
    run_mixed,
    run_phased,
    settle,
    wait_for_ack,
)

T = TypeVar("T")
log = structlog.get_logger("persistence.writer")

#: A writer connection idle for longer is checked before its next batch: a server may
#: have dropped it meanwhile (a restart, a killed backend), and a batch that fails once
#: COMMIT was sent has an unknown outcome.
IDLE_CHECK_SECONDS = 1.0


class GroupCommitWriter:
    """Runs write operations in shared transactions on one connection, one at a time."""

    def __init__(self, backend: Backend, *, max_batch: int = 256) -> None:
        if max_batch < 1:
            msg = f"max_batch must be >= 1, not {max_batch}"
            raise ValueError(msg)
        self._backend = backend
        self._max_batch = max_batch
        self._lock = threading.Lock()  # guards _closed and the idle check of call()
        self._closed = False
        self._connection_lock = threading.Lock()  # held by whoever runs a transaction
        self._inbox: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._connection: Connection | None = None
        self._driver: Driver = None  # valid while _connection is set
        self._last_used = 0.0
        self._committing = False  # COMMIT was sent: a failure from here has an unknown outcome
        self.stats = WriterStats()

    @property
    def pending(self) -> int:
        """Writes waiting for the next transaction."""
        return self._inbox.qsize()

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(
            target=self._thread_main, name="session-store-writer", daemon=True
        )
        self._thread.start()

    def call(self, op: WriteOp, timeout: float) -> Any:
        """Run ``op`` in the next transaction; return its result once that committed.

        Raises:
            StoreUnavailable: the store is closed, refused the write, or did not commit
                within ``timeout`` seconds (then it may still commit later).
            SessionSupervisorError: the operation's own (domain) error.
        """
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the session store is closed")
            inline = self._inbox.empty() and self._connection_lock.acquire(blocking=False)
            if not inline:
                ack: Ack[Any] = Ack()
                self._inbox.put((op, ack))
        if not inline:
            return wait_for_ack(ack, timeout)
        try:
            ((ok, value),) = self._commit_locked([op])
        finally:
            self._connection_lock.release()
        if ok:
            return value
        raise value

    def close(self, timeout: float | None = None) -> None:
        """Commit every write already submitted, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ the thread

    def _thread_main(self) -> None:
        try:
            self._drain()
        finally:
            with self._connection_lock:  # after a caller's own transaction, if one runs
                self._drop_connection()

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
                # A caller that gave up (timeout) before we began is dropped.
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

    # ------------------------------------------------------------------ transactions

    def _commit_locked(self, ops: list[WriteOp]) -> list[Outcome]:
        """Run ``ops`` in one transaction (the caller holds the connection lock).

        Returns the outcomes for :func:`settle`, which the caller runs after releasing the
        lock, so that an acknowledged caller finds the writer idle again.
        """
        started = time.perf_counter()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                outcomes = self._transaction(ops)
                break
            except Exception as exc:  # noqa: BLE001 - every database failure fails the batch
                recoverable = self._committing and self._recoverable(ops, exc)
                if recoverable:
                    found = self._recover(cast("HotOp[Any]", ops[0]))
                    if found is not None:
                        return [found]
                    if attempt < ATTEMPTS:  # it did not commit: it simply runs again
                        self.stats.retried_batches += 1
                        continue
                lost = not self._committing and self._backend.connection_lost(exc)
                if attempt < ATTEMPTS and (lost or self._backend.retryable(exc)):
                    # Rolled back whole, or the connection died before COMMIT was sent:
                    # nothing of the batch committed, so it simply runs again.
                    self.stats.retried_batches += 1
                    log.info("store.batch_retried", size=len(ops), error=repr(exc))
                    if lost or self._backend.pipelines:
                        # After an error inside a pipeline, psycopg may believe a statement
                        # prepared that the server skipped: a new connection starts clean.
                        self._drop_connection()
                    if not lost:
                        time.sleep(random.uniform(0, 0.01 * attempt))  # noqa: S311 - jitter
                    continue
                self._drop_connection()
                self.stats.failed_batches += 1
                log.warning("store.batch_failed", size=len(ops), error=repr(exc))
                return [(False, refusal(exc)) for _ in ops]
        self.stats.committed(len(ops), time.perf_counter() - started)
        self._backend.committed(len(ops))
        return outcomes

    def _recoverable(self, ops: list[WriteOp], error: BaseException) -> bool:
        """A lone operation that can tell whether it committed, whose connection died."""
        return (
            len(ops) == 1
            and isinstance(ops[0], HotOp)
            and ops[0].recover is not None
            and self._backend.connection_lost(error)
        )

    def _recover(self, op: HotOp[Any]) -> Outcome | None:
        """Whether ``op`` committed, read on a new connection; ``None`` if it did not.

        Returns its outcome if it committed, or the error that explains its refusal.
        """
        self._drop_connection()
        log.info("store.outcome_unknown", action="reading back whether the write committed")
        try:
            self._connect()
            tx = Tx(self._backend, self._driver)
            try:
                assert op.recover is not None  # noqa: S101 - checked by _recoverable
                return (True, op.recover(tx))
            finally:
                with contextlib.suppress(Exception):
                    self._backend.commit(self._driver)
        except NotCommitted:
            return None
        except SessionSupervisorError as error:
            return (False, error)
        except Exception as exc:  # noqa: BLE001 - still unknown: refuse, typed
            self._drop_connection()
            return (False, refusal(exc))

    def _transaction(self, ops: list[WriteOp]) -> list[Outcome]:
        self._committing = False
        connection = self._connect()
        backend, driver = self._backend, self._driver
        tx = Tx(backend, driver)
        try:
            if not (isinstance(ops[0], HotOp) and all(isinstance(op, HotOp) for op in ops)):
                transaction = connection.begin()
                try:
                    outcomes = run_mixed(tx, connection, ops)
                except BaseException:
                    with contextlib.suppress(Exception):  # a lost connection cannot roll back
                        transaction.rollback()
                    raise
                self._committing = True
                transaction.commit()
                return outcomes
            hot = cast("list[HotOp[Any]]", ops)
            if len(hot) == 1 and hot[0].autocommit and backend.append_statement is not None:
                self._committing = True  # the statement is its own transaction
                with backend.autocommit(driver):
                    return run_mixed(Tx(backend, driver, autocommit=True), connection, list(hot))
            backend.begin(driver)
            try:
                # Measured: a pipeline pays from two operations on; one runs faster without.
                if not backend.pipelines or len(hot) == 1:
                    outcomes = run_mixed(tx, connection, list(hot))
                    self._committing = True
                    backend.commit(driver)
                    return outcomes
                with backend.pipeline(driver) as sync:
                    outcomes = run_phased(tx, hot, sync)
                    self._committing = True
                    backend.commit(driver)
            except BaseException:
                backend.rollback(driver)
                raise
            return outcomes
        finally:
            self._last_used = time.monotonic()

    def _connect(self) -> Connection:
        """The writer's connection, opened once (a pool checkout per batch costs more)."""
        if (
            self._connection is not None
            and time.monotonic() - self._last_used > IDLE_CHECK_SECONDS
            and not self._backend.alive(self._driver)
        ):
            self._drop_connection()
        if self._connection is None:
            connection = self._backend.write_engine.connect()
            try:
                driver = core_connection_driver(connection)
                self._backend.writer_opened(driver)
            except BaseException:
                connection.close()
                raise
            self._connection, self._driver = connection, driver
        return self._connection

    def _drop_connection(self) -> None:
        """Close the writer's connection (after a failure: the next batch opens a new one)."""
        connection, self._connection = self._connection, None
        self._driver = None
        if connection is not None:
            try:
                connection.invalidate()
                connection.close()
            except Exception as exc:  # noqa: BLE001 - it is being discarded anyway
                log.warning("store.connection_close_failed", error=repr(exc))
