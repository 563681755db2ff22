"""The group-commit writer: acknowledgement after commit, shared transactions, failed batches.

Writers are driven from plain threads with ``writer.call`` (as session actors do), each
queued call on a helper thread of its own (see :mod:`tests.persistence._writing`). To put
several checkpoints into one transaction deterministically, a first operation holds the
writer's transaction open on an event while the others queue behind it.

These tests run on SQLite (they trace the ``sqlite3`` connection and the WAL);
``test_backends`` proves the group commit on both databases.
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, text

from persistence import Database, StaleSession, StoreUnavailable
from persistence._backend import Tx
from persistence._lifecycle import checkpoint as checkpoint_op
from persistence._lifecycle import transition as transition_op
from persistence._write_ops import HotOp, Phases
from persistence._writer import GroupCommitWriter
from persistence.sqlite import CHECKPOINT_EVERY, FALLBACK_PAGES, SqliteBackend, sqlite_datetime
from tests.persistence._writing import (
    NOW,
    WAIT,
    broken_hot_op,
    hold_writer,
    submit,
    wait_for_pending,
    wait_until,
)
from tests.persistence._writing import checkpoint as _checkpoint
from tests.persistence._writing import create as _create
from tests.persistence._writing import messages_of as _messages
from tests.persistence._writing import version_of as _version


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """An open store on a fresh SQLite file."""
    database = Database.open(f"sqlite:///{tmp_path / 'w.db'}")
    yield database
    database.close()


def _trace_commits(writer: GroupCommitWriter, order: list[str]) -> None:
    """Append "commit" to ``order`` whenever the writer's connection runs COMMIT.

    Traced on the ``sqlite3`` connection itself: batches of hot operations commit there
    directly, without SQLAlchemy.
    """

    def trace(statement: str) -> None:
        if statement.strip().upper() == "COMMIT":
            order.append("commit")

    def install(connection: Connection) -> None:
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        driver.set_trace_callback(trace)

    writer.call(install, WAIT)
    order.clear()


def _in_thread_of_caller(op: HotOp[Any], threads: list[str]) -> HotOp[Any]:
    """``op``, recording the name of the thread that runs it."""

    def run(tx: Tx) -> Phases[Any]:
        threads.append(threading.current_thread().name)
        return (yield from op.run(tx))

    return HotOp(run)


def _sqlalchemy_begins(db: Database) -> list[str]:
    """A list that gets "begin" whenever the writer's engine begins a SQLAlchemy transaction."""
    begins: list[str] = []
    event.listen(db.store.backend.write_engine, "begin", lambda _conn: begins.append("begin"))
    return begins


class TestAcknowledgement:
    """A checkpoint is acknowledged only after the transaction holding it committed."""

    def test_no_ack_before_commit_and_every_ack_after_it(self, db: Database) -> None:
        """Calls stay blocked while their transaction is open; each returns after COMMIT."""
        writer = db.store.writer
        for name in ("a", "b"):
            _create(db, name)
        order: list[str] = []
        _trace_commits(writer, order)
        gate, held = hold_writer(writer)
        futures = [
            submit(writer, checkpoint_op(_checkpoint(name, 1, 0, 2)), lambda: order.append("ack"))
            for name in ("a", "b")
        ]
        wait_for_pending(writer, 2)
        assert not any(f.done() for f in [held, *futures])
        assert order == []
        gate.release.set()
        assert [f.result(WAIT) for f in futures] == [2, 2]
        assert held.result(WAIT) == "gate"
        # The gate's commit, then the shared commit of a and b, then their two acks.
        assert order == ["commit", "commit", "ack", "ack"]

    def test_checkpoints_that_arrive_together_share_one_transaction(self, db: Database) -> None:
        """Everything queued behind a running transaction commits in the next one, together."""
        writer = db.store.writer
        names = [f"s{i}" for i in range(5)]
        for name in names:
            _create(db, name)
        gate, held = hold_writer(writer)
        batches_before = writer.stats.batches
        futures = [submit(writer, checkpoint_op(_checkpoint(name, 1, 0, 3))) for name in names]
        wait_for_pending(writer, len(names))
        gate.release.set()
        assert [f.result(WAIT) for f in futures] == [2] * len(names)
        held.result(WAIT)
        assert writer.stats.batches - batches_before == 2  # the gate's, then all five
        assert writer.stats.largest_batch == len(names)
        assert [_messages(db, name) for name in names] == [3] * len(names)

    def test_an_idle_writer_commits_in_the_callers_thread(self, db: Database) -> None:
        """With nothing queued, a thread's checkpoint is committed before the call returns.

        It runs in the caller's thread, as a hot operation on the driver's connection:
        no SQLAlchemy transaction begins.
        """
        _create(db, "a")
        order: list[str] = []
        _trace_commits(db.store.writer, order)
        begins = _sqlalchemy_begins(db)
        threads: list[str] = []
        op = _in_thread_of_caller(checkpoint_op(_checkpoint("a", 1, 0, 1)), threads)
        assert db.store.write(op) == 2
        assert order == ["commit"]
        assert threads == [threading.current_thread().name]
        assert begins == []

    def test_max_batch_bounds_a_shared_transaction(self, tmp_path: Path) -> None:
        """Queued writes are split into transactions of at most ``max_batch`` operations."""
        db = Database.open(f"sqlite:///{tmp_path / 'b.db'}", max_batch=2)
        try:
            writer = db.store.writer
            names = [f"s{i}" for i in range(5)]
            for name in names:
                _create(db, name)
            gate, held = hold_writer(writer)
            batches_before = writer.stats.batches
            futures = [submit(writer, checkpoint_op(_checkpoint(n, 1, 0, 1))) for n in names]
            wait_for_pending(writer, len(names))
            gate.release.set()
            assert [f.result(WAIT) for f in futures] == [2] * len(names)
            held.result(WAIT)
            # The gate's, then five in batches of at most two (the writer thread's abandoned
            # write, see hold_writer, takes a place in the first of them).
            assert writer.stats.batches - batches_before == 4
            assert writer.stats.largest_batch == 2
        finally:
            db.close()

    def test_max_batch_must_be_positive(self, db: Database) -> None:
        """A writer that could never take an operation is refused at construction."""
        with pytest.raises(ValueError, match="max_batch"):
            GroupCommitWriter(db.store.backend, max_batch=0)


class TestCall:
    """``writer.call``: the blocking call session actors use, inline or queued."""

    def test_idle_writer_runs_the_call_in_the_callers_thread(self, db: Database) -> None:
        """Idle: committed in the caller's thread, outcome returned (or raised) directly."""
        _create(db, "a")
        order: list[str] = []
        _trace_commits(db.store.writer, order)
        threads: list[str] = []
        suspend = transition_op("a", 1, 1, ("active",), "suspended", "suspend", NOW, None, False)
        resume = transition_op("a", 1, 2, ("suspended",), "active", "resume", NOW, None, False)

        def op(connection: Connection) -> int:
            threads.append(threading.current_thread().name)
            suspend(connection)
            return resume(connection)

        assert db.store.writer.call(op, WAIT) == 3
        assert order == ["commit"]  # committed before the call returned
        assert threads == [threading.current_thread().name]
        assert db.store.checkpoint(_checkpoint("a", 3, 0, 1)) == 4
        with pytest.raises(StaleSession):
            db.store.checkpoint(_checkpoint("a", 3, 1, 1))
        assert (_version(db, "a"), _messages(db, "a")) == (4, 1)

    def test_calls_from_many_threads_each_get_their_own_outcome(self, db: Database) -> None:
        """Each concurrent caller gets its own outcome, whichever path it took.

        Eight threads, inline and queued calls mixed: every caller gets its own new version
        back after its commit, and only its stale retry gets StaleSession.
        """
        names = [f"s{i}" for i in range(8)]
        for name in names:
            _create(db, name)
        rounds = 15
        barrier = threading.Barrier(len(names) + 1)

        def run(name: str) -> list[object]:
            barrier.wait(WAIT)
            got: list[object] = []
            for version in range(1, rounds + 1):
                got.append(db.store.checkpoint(_checkpoint(name, version, version - 1, 1)))
                try:
                    db.store.checkpoint(_checkpoint(name, version, version, 1))
                except StaleSession:
                    got.append("stale")
            return got

        with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
            results = [pool.submit(run, name) for name in names]
            barrier.wait(WAIT)
            outcomes = [future.result(WAIT * 3) for future in results]
        expected = [item for v in range(2, rounds + 2) for item in (v, "stale")]
        assert outcomes == [expected] * len(names)
        assert [_messages(db, name) for name in names] == [rounds] * len(names)

    def test_a_queued_call_waits_for_its_commit_and_shares_a_failed_batch(
        self, db: Database
    ) -> None:
        """A queued call returns only after its batch ran, and fails with it.

        A database error in that batch fails every call in it with StoreUnavailable.
        """
        writer = db.store.writer
        for name in ("x", "y"):
            _create(db, name)
        gate, held = hold_writer(writer)
        x = submit(writer, checkpoint_op(_checkpoint("x", 1, 0, 2)))
        bad = submit(writer, broken_hot_op())
        wait_for_pending(writer, 2)
        assert not x.done()
        gate.release.set()
        with pytest.raises(StoreUnavailable, match="refused the write"):
            x.result(WAIT)
        with pytest.raises(StoreUnavailable, match="refused the write"):
            bad.result(WAIT)
        held.result(WAIT)
        assert (_version(db, "x"), _messages(db, "x")) == (1, 0)
        assert writer.call(checkpoint_op(_checkpoint("y", 1, 0, 2)), WAIT) == 2

    def test_a_call_that_times_out_in_the_queue_is_dropped(self, db: Database) -> None:
        """Timed out before its transaction began: StoreUnavailable, and it never runs."""
        writer = db.store.writer
        _create(db, "a")
        gate, held = hold_writer(writer)
        with pytest.raises(StoreUnavailable, match="in time"):
            writer.call(checkpoint_op(_checkpoint("a", 1, 0, 2)), 0.05)
        gate.release.set()
        held.result(WAIT)
        writer.call(lambda _c: None, WAIT)  # the queue has been worked off
        assert (_version(db, "a"), _messages(db, "a")) == (1, 0)

    def test_a_closed_writer_refuses_the_call(self, db: Database) -> None:
        """After close: StoreUnavailable, nothing runs."""
        _create(db, "a")
        writer = db.store.writer
        db.close()
        with pytest.raises(StoreUnavailable, match="closed"):
            writer.call(checkpoint_op(_checkpoint("a", 1, 0, 2)), WAIT)


class TestFailedBatch:
    """A failed transaction fails every checkpoint in it, and no other."""

    def test_a_database_error_fails_the_whole_batch_and_only_it(self, db: Database) -> None:
        """Rolled back together: none of the batch is stored; the batches around it commit."""
        writer = db.store.writer
        for name in ("before", "x", "y", "after"):
            _create(db, name)
        assert db.store.checkpoint(_checkpoint("before", 1, 0, 2)) == 2
        gate, held = hold_writer(writer)

        def broken(connection: Connection) -> None:
            connection.execute(text("INSERT INTO no_such_table VALUES (1)"))

        batch = [
            submit(writer, checkpoint_op(_checkpoint("x", 1, 0, 2))),
            submit(writer, broken),
            submit(writer, checkpoint_op(_checkpoint("y", 1, 0, 2))),
        ]
        wait_for_pending(writer, 3)
        gate.release.set()
        assert held.result(WAIT) == "gate"
        for future in batch:
            with pytest.raises(StoreUnavailable, match="refused the write"):
                future.result(WAIT)
        assert (_version(db, "x"), _messages(db, "x")) == (1, 0)
        assert (_version(db, "y"), _messages(db, "y")) == (1, 0)
        assert (_version(db, "before"), _messages(db, "before")) == (2, 2)
        assert writer.stats.failed_batches == 1
        assert db.store.checkpoint(_checkpoint("after", 1, 0, 2)) == 2
        assert db.store.checkpoint(_checkpoint("x", 1, 0, 2)) == 2
        assert _messages(db, "x") == 2

    def test_a_database_error_in_a_batch_of_checkpoints_fails_only_it(self, db: Database) -> None:
        """A failed batch of only hot operations rolls back whole too, and only it.

        Such a batch begins and commits on the driver's connection, without SQLAlchemy:
        the only SQLAlchemy transaction is the gate's.
        """
        writer = db.store.writer
        for name in ("x", "y", "after", "z"):
            _create(db, name)
        begins = _sqlalchemy_begins(db)
        gate, held = hold_writer(writer)
        batch = [
            submit(writer, checkpoint_op(_checkpoint("x", 1, 0, 2))),
            submit(writer, broken_hot_op()),
            submit(writer, checkpoint_op(_checkpoint("y", 1, 0, 2))),
        ]
        wait_for_pending(writer, 3)
        gate.release.set()
        assert held.result(WAIT) == "gate"
        for future in batch:
            with pytest.raises(StoreUnavailable, match="refused the write"):
                future.result(WAIT)
        assert begins == ["begin"]  # the gate's: the batch of checkpoints bypassed SQLAlchemy
        assert writer.stats.failed_batches == 1
        assert (_version(db, "x"), _messages(db, "x")) == (1, 0)
        assert (_version(db, "y"), _messages(db, "y")) == (1, 0)
        assert db.store.checkpoint(_checkpoint("after", 1, 0, 2)) == 2
        assert db.store.checkpoint(_checkpoint("x", 1, 0, 2)) == 2
        # And SQLAlchemy's own transactions still work after it (a Core write).
        suspended = db.store.transition(
            "z", 1, 1, ("active",), "suspended", "suspend", NOW, None, False
        )
        assert (_version(db, "after"), _messages(db, "x"), suspended) == (2, 2, 2)
        assert begins == ["begin", "begin"]

    def test_a_refused_checkpoint_fails_alone(self, db: Database) -> None:
        """A stale checkpoint (domain error) writes nothing; its batch mates still commit."""
        writer = db.store.writer
        for name in ("ok", "stale"):
            _create(db, name)
        gate, held = hold_writer(writer)
        good = submit(writer, checkpoint_op(_checkpoint("ok", 1, 0, 2)))
        bad = submit(writer, checkpoint_op(_checkpoint("stale", 7, 0, 2)))
        wait_for_pending(writer, 2)
        gate.release.set()
        held.result(WAIT)
        assert good.result(WAIT) == 2
        with pytest.raises(StaleSession):
            bad.result(WAIT)
        assert (_version(db, "stale"), _messages(db, "stale")) == (1, 0)
        assert _messages(db, "ok") == 2
        assert writer.stats.failed_batches == 0


class TestWalCheckpoints:
    """WAL checkpoints run in the checkpointer's thread, not inside a caller's COMMIT."""

    @staticmethod
    def _commit_many(db: Database, session_id: str, count: int) -> None:
        _create(db, session_id)
        for version in range(1, count + 1):
            cp = _checkpoint(session_id, version, version - 1, 1)
            assert db.store.checkpoint(cp) == version + 1

    @staticmethod
    def _backend(db: Database) -> SqliteBackend:
        backend = db.store.backend
        assert isinstance(backend, SqliteBackend)
        return backend

    def test_checkpoints_run_in_the_background_after_enough_commits(self, db: Database) -> None:
        """The writer's own automatic checkpoint is only a fallback; the thread checkpoints."""
        backend = self._backend(db)
        autocheckpoint = db.store.write(
            lambda c: c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        )
        assert autocheckpoint == FALLBACK_PAGES
        self._commit_many(db, "a", CHECKPOINT_EVERY + 1)
        wait_until(lambda: backend.wal_checkpoints >= 1, "a background WAL checkpoint")
        assert (_version(db, "a"), _messages(db, "a")) == (
            CHECKPOINT_EVERY + 2,
            CHECKPOINT_EVERY + 1,
        )

    def test_a_failing_checkpoint_fails_no_write(
        self, db: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A checkpointer that cannot work (full disk ...) fails no write, then retries."""
        backend = self._backend(db)
        checkpointer = backend._checkpointer
        attempts: list[int] = []

        def refuse() -> sqlite3.Connection:
            attempts.append(1)
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(checkpointer, "_connect", refuse)
        self._commit_many(db, "a", 2 * CHECKPOINT_EVERY)
        wait_until(lambda: len(attempts) >= 1, "a checkpoint attempt")
        assert backend.wal_checkpoints == 0
        assert _messages(db, "a") == 2 * CHECKPOINT_EVERY
        monkeypatch.undo()
        self._commit_many(db, "b", CHECKPOINT_EVERY)
        wait_until(lambda: backend.wal_checkpoints >= 1, "a background WAL checkpoint")

    def test_close_stops_the_thread(self, db: Database) -> None:
        """close() ends the checkpointer's thread (it holds a connection to the file)."""
        thread = self._backend(db)._checkpointer._thread
        assert thread is not None
        assert thread.is_alive()
        db.close()
        assert not thread.is_alive()


class TestClose:
    """Closing commits what was submitted and refuses the rest."""

    def test_queued_writes_commit_before_close_returns(self, db: Database) -> None:
        """Writes queued behind a running transaction are committed by close(), not lost."""
        _create(db, "a")
        writer = db.store.writer
        gate, held = hold_writer(writer)
        queued = submit(writer, checkpoint_op(_checkpoint("a", 1, 0, 2)))
        wait_for_pending(writer, 1)
        threading.Timer(0.05, gate.release.set).start()
        db.close()
        assert held.result(WAIT) == "gate"
        assert queued.result(WAIT) == 2
        with pytest.raises(StoreUnavailable, match="closed"):
            writer.call(checkpoint_op(_checkpoint("a", 2, 2, 1)), WAIT)


class TestSqliteValues:
    """The driver-level checkpoint binds values exactly as SQLAlchemy's types do."""

    def test_datetimes_read_back_equal(self, db: Database) -> None:
        """A checkpoint's updated_at / expires_at load back as the aware datetimes given."""
        _create(db, "a")
        when = datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=UTC)
        cp = replace(_checkpoint("a", 1, 0, 1), now=when, expires_at=when + timedelta(hours=1))
        db.store.checkpoint(cp)
        state = db.store.state("a")
        assert state is not None
        assert (state.updated_at, state.expires_at) == (when, when + timedelta(hours=1))

    def test_naive_datetimes_are_refused(self) -> None:
        """Like the UTCDateTime type: a naive datetime is a ValueError, not a silent shift."""
        assert sqlite_datetime(datetime(2026, 1, 1, 12, tzinfo=UTC)) == "2026-01-01 12:00:00.000000"
        with pytest.raises(ValueError, match="naive"):
            sqlite_datetime(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
