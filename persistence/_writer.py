"""Group commit: every write of the store goes through one writer per database.

Writes that arrive while a transaction is running wait in a queue; the writer thread
takes all of them (up to ``max_batch``) into the next transaction and acknowledges each
caller only after that transaction committed. A caller that finds the writer idle (no
transaction running, nothing queued) runs its write in its own thread at once: no hand-off,
which is what one busy caller needs.

Each operation raises its domain error (``StaleSession``, ``SessionNotFound`` ...)
*before* it writes anything: the other operations of its batch still commit. An operation
whose own data the database refuses (a value it cannot encode, a constraint) fails alone:
the transaction is rolled back and the rest of the batch runs again without it (on
PostgreSQL, after a pipelined batch failed at a sync that names no operation, the rest runs
once more one operation after the other to find it; no savepoints: psycopg's ROLLBACK TO
SAVEPOINT deallocates its prepared statements). An error of the database itself (lost
connection, locked or read-only file) fails every operation of the batch with
:class:`StoreUnavailable`, and no other batch. A batch the database rolled back whole (a
PostgreSQL deadlock victim, a serialization failure) runs again first, up to three runs
in all.

**The timeout rule.** A caller that gives up while its write is queued withdraws it (see
:func:`persistence._write_ops.wait_for_ack`); a write that started is waited for. To keep
that wait short the writer bounds its lock waits (SQLite's ``busy_timeout``, PostgreSQL's
``lock_timeout``) by the earliest deadline of the batch, and never runs a batch again past
it. **Unknown outcomes are resolved:** when the connection drops once COMMIT was sent, the
writer reads back, on a new connection, whether the transaction committed (each operation's
``recover``); only when no operation of the batch can tell are its callers told
:class:`OutcomeUnknown`.

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
    OpFailed,
    Outcome,
    WriteOp,
    WriterStats,
    outcome_unknown,
    refusal,
    run_mixed,
    run_phased,
    settle,
    wait_for_ack,
)

T = TypeVar("T")
log = structlog.get_logger("persistence.writer")

#: The shortest lock wait the writer sets (ms), and the ratio between two settings.
LOCK_WAIT_FLOOR_MS = 10.0
LOCK_WAIT_RATIO = 1.25

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
        self._decided: list[Outcome] | None = None  # the outcomes of the batch being committed
        self._lock_wait_ms: int | None = None  # the lock wait set on the connection
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
            StoreUnavailable: the store is closed, refused the write, or the write was
                still queued after ``timeout`` seconds (withdrawn: it never runs).
            OutcomeUnknown: the write started and its outcome could not be learnt.
            SessionSupervisorError: the operation's own (domain) error.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the session store is closed")
            inline = self._inbox.empty() and self._connection_lock.acquire(blocking=False)
            if not inline:
                ack: Ack[Any] = Ack(deadline)
                self._inbox.put((op, ack))
        if not inline:
            return wait_for_ack(ack, timeout)
        try:
            ((ok, value),) = self._commit_locked([op], deadline)
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
                deadline = min((ack.deadline for _, ack in live), default=0.0)
                outcomes = self._commit_locked([op for op, _ in live], deadline) if live else []
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

    def _commit_locked(self, ops: list[WriteOp], deadline: float) -> list[Outcome]:
        """Run ``ops`` in one transaction (the caller holds the connection lock).

        An operation the database refuses on its own is refused alone and the others run
        again without it; a batch rolled back whole runs again (before ``deadline`` only).
        Returns the outcomes for :func:`settle`, which the caller runs after releasing the
        lock, so that an acknowledged caller finds the writer idle again.
        """
        started = time.perf_counter()
        outcomes: list[Outcome | None] = [None] * len(ops)
        pending = list(range(len(ops)))
        sequential = False  # after a pipelined batch failed: find which operation did
        attempt = 1
        while pending:
            run = [ops[index] for index in pending]
            try:
                ran = self._transaction(run, deadline, sequential=sequential)
                for index, outcome in zip(pending, ran, strict=True):
                    outcomes[index] = outcome
                break
            except Exception as raised:  # noqa: BLE001 - every database failure is handled
                culprit, exc = (None, raised)
                if isinstance(raised, OpFailed):
                    culprit, exc = raised.index, raised.error
                if self._committing:
                    found = self._recover(run, exc)
                    if found is not None:
                        committed, recovered = found
                        for index, outcome in zip(pending, recovered, strict=True):
                            outcomes[index] = outcome
                        if not committed:
                            return [outcome for outcome in outcomes if outcome is not None]
                        break
                    # It did not commit: it simply runs again, if there is time.
                elif (
                    len(run) > 1
                    and self._backend.data_fault(exc)
                    and (culprit is not None or not sequential)
                ):
                    if self._backend.pipelines:
                        self._drop_connection()  # see below: psycopg after a pipeline error
                    if culprit is None:
                        sequential = True  # the sync named no operation: run one by one
                    else:
                        outcomes[pending.pop(culprit)] = (False, refusal(exc))
                        log.info("store.operation_refused", size=len(run), error=repr(exc))
                    continue
                elif self._backend.connection_lost(exc) or self._backend.retryable(exc):
                    pass  # rolled back whole, or lost before COMMIT: nothing committed
                else:
                    return self._failed(outcomes, exc)
                if attempt >= ATTEMPTS or time.monotonic() >= deadline:
                    return self._failed(outcomes, exc)
                attempt += 1
                self.stats.retried_batches += 1
                log.info("store.batch_retried", size=len(run), error=repr(exc))
                lost = self._backend.connection_lost(exc)
                if lost or self._backend.pipelines:
                    # After an error inside a pipeline, psycopg may believe a statement
                    # prepared that the server skipped: a new connection starts clean.
                    self._drop_connection()
                if not lost:
                    time.sleep(random.uniform(0, 0.01 * attempt))  # noqa: S311 - jitter
        self.stats.committed(len(pending), time.perf_counter() - started)
        self._backend.committed(len(pending))
        return [outcome for outcome in outcomes if outcome is not None]

    def _failed(self, outcomes: list[Outcome | None], exc: Exception) -> list[Outcome]:
        """Refuse every operation without an outcome yet: nothing of the batch committed."""
        self._drop_connection()
        self.stats.failed_batches += 1
        log.warning("store.batch_failed", size=outcomes.count(None), error=repr(exc))
        return [(False, refusal(exc)) if outcome is None else outcome for outcome in outcomes]

    def _recover(
        self, ops: list[WriteOp], error: BaseException
    ) -> tuple[bool, list[Outcome]] | None:
        """Whether the batch committed although its connection died during COMMIT.

        Read back on a new connection by the first operation able to tell (its
        ``recover``); the transaction committed whole or not at all, so its answer is the
        batch's. Returns ``None`` if it did not commit (it may run again), else whether it
        is known to have committed and the outcomes: the operations' own if it committed,
        :class:`OutcomeUnknown` for those that wrote if nothing could tell.
        """
        decided = self._decided
        if decided is None or not self._backend.connection_lost(error):
            return False, self._unknown(ops, decided, error)
        self._drop_connection()
        self.stats.recovered_batches += 1
        log.info("store.outcome_unknown", action="reading back whether the write committed")
        try:
            self._connect()
            tx = Tx(self._backend, self._driver)
            try:
                for index, (op, (ok, _)) in enumerate(zip(ops, decided, strict=True)):
                    if not ok or not isinstance(op, HotOp) or op.recover is None:
                        continue
                    try:
                        value = op.recover(tx)
                    except SessionSupervisorError:
                        continue  # changed since by another process: this one cannot tell
                    found = list(decided)  # committed: what each operation decided stands
                    found[index] = (True, value)
                    return True, found
            finally:
                with contextlib.suppress(Exception):
                    self._backend.commit(self._driver)
        except NotCommitted:
            return None
        except Exception:  # noqa: BLE001, S110 - still unknown
            pass
        return False, self._unknown(ops, decided, error)

    def _unknown(
        self, ops: list[WriteOp], decided: list[Outcome] | None, error: BaseException
    ) -> list[Outcome]:
        """Outcomes of a batch whose COMMIT may or may not have happened."""
        self._drop_connection()
        self.stats.failed_batches += 1
        log.warning("store.outcome_unknown", size=len(ops), error=repr(error))
        if decided is None:
            return [(False, outcome_unknown(error)) for _ in ops]
        # An operation refused by its own guard wrote nothing, committed or not.
        return [(False, outcome_unknown(error)) if ok else (ok, value) for ok, value in decided]

    def _transaction(
        self, ops: list[WriteOp], deadline: float, *, sequential: bool = False
    ) -> list[Outcome]:
        """Run ``ops`` in one transaction and commit it; their outcomes.

        ``self._decided`` holds the outcomes once COMMIT is sent (``None`` before, and for
        a lone statement in autocommit), for :meth:`_recover`.
        """
        self._committing = False
        self._decided = None
        connection = self._connect()
        backend, driver = self._backend, self._driver
        self._bound_lock_wait(deadline)
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
                self._decided, self._committing = outcomes, True
                transaction.commit()
                return outcomes
            hot = cast("list[HotOp[Any]]", ops)
            if len(hot) == 1 and hot[0].autocommit and backend.append_statement is not None:
                self._decided, self._committing = [(True, None)], True  # its own transaction
                with backend.autocommit(driver):
                    return run_mixed(Tx(backend, driver, autocommit=True), connection, list(hot))
            backend.begin(driver)
            try:
                # Measured: a pipeline pays from two operations on; one runs faster without.
                if sequential or not backend.pipelines or len(hot) == 1:
                    outcomes = run_mixed(tx, connection, list(hot))
                    self._decided, self._committing = outcomes, True
                    backend.commit(driver)
                    return outcomes
                with backend.pipeline(driver) as sync:
                    outcomes = run_phased(tx, hot, sync)
                    self._decided, self._committing = outcomes, True
                    backend.commit(driver)
            except BaseException:
                backend.rollback(driver)
                raise
            return outcomes
        finally:
            self._last_used = time.monotonic()

    def _bound_lock_wait(self, deadline: float) -> None:
        """Wait for another transaction's locks no longer than until ``deadline``.

        Rounded down to a step of a geometric scale, so that callers with the same
        timeout rarely change the setting (each change costs a statement).
        """
        remaining_ms = (deadline - time.monotonic()) * 1000
        step = LOCK_WAIT_FLOOR_MS
        while step * LOCK_WAIT_RATIO <= remaining_ms:
            step *= LOCK_WAIT_RATIO
        cap = self._backend.lock_wait_cap_ms
        wait_ms = int(step) if cap is None else min(int(step), cap)
        if wait_ms != self._lock_wait_ms:
            self._backend.set_lock_wait(self._driver, wait_ms)
            self._lock_wait_ms = wait_ms

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
            self._lock_wait_ms = self._backend.lock_wait_cap_ms  # as the connection opened
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
