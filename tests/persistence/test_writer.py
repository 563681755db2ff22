"""The group-commit writer: acknowledgement after commit, shared transactions, failed batches.

Writers are driven from plain threads with ``submit_threadsafe`` (as session actors do).
To put several checkpoints into one transaction deterministically, a first operation holds
the writer's transaction open on an event while the others queue behind it.
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

from persistence import (
    Checkpoint,
    Database,
    NewSession,
    StaleSession,
    StoreUnavailable,
    encode_message,
)
from persistence._statements import sqlite_datetime
from persistence._walcheckpoint import CHECKPOINT_EVERY, FALLBACK_PAGES
from persistence._write_ops import DualOp
from persistence._writer import GroupCommitWriter

WAIT = 10.0
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """An open store on a fresh SQLite file."""
    database = Database.open(f"sqlite:///{tmp_path / 'w.db'}")
    yield database
    database.close()


def _create(db: Database, session_id: str) -> None:
    new = NewSession(session_id, None, session_id, "copilot", "{}", NOW, NOW + timedelta(days=1),
                     "me", NOW + timedelta(minutes=5))  # fmt: skip
    db.run(db.store.create_session(new))


def _checkpoint(session_id: str, version: int, first: int, count: int) -> Checkpoint:
    rows = [
        encode_message({"role": "user", "content": f"{session_id} {seq}"}, "m", None)
        for seq in range(first, first + count)
    ]
    return Checkpoint(
        session_id=session_id, epoch=1, expected_version=version, context_json='{"v":1}',
        plan_json=None, set_plan=False, phase="p", step=version, now=NOW,
        expires_at=NOW + timedelta(days=1), first_seq=first, new_messages=rows,
    )  # fmt: skip


class _Gate:
    """An operation that holds its transaction open until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, connection: Connection) -> str:
        self.entered.set()
        assert self.release.wait(WAIT)
        return "gate"


def _hold_writer(writer: GroupCommitWriter) -> tuple[_Gate, concurrent.futures.Future[Any]]:
    """Occupy the writer from a helper thread; return once its transaction is running."""
    gate = _Gate()
    submitted: concurrent.futures.Future[concurrent.futures.Future[Any]] = (
        concurrent.futures.Future()
    )
    threading.Thread(
        target=lambda: submitted.set_result(writer.submit_threadsafe(gate)), daemon=True
    ).start()
    assert gate.entered.wait(WAIT)
    return gate, _held_future(submitted)


def _held_future(
    submitted: concurrent.futures.Future[concurrent.futures.Future[Any]],
) -> concurrent.futures.Future[Any]:
    # The helper thread runs the gate inline (the writer was idle), so its future only
    # exists once the gate returns; chain it into one we can hand out now.
    chained: concurrent.futures.Future[Any] = concurrent.futures.Future()
    submitted.add_done_callback(
        lambda outer: outer.result().add_done_callback(
            lambda inner: chained.set_result(inner.result())
        )
    )
    return chained


def _trace_commits(writer: GroupCommitWriter, order: list[str]) -> None:
    """Append "commit" to ``order`` whenever the writer's connection runs COMMIT.

    Traced on the ``sqlite3`` connection itself: checkpoint batches commit there directly.
    """

    def trace(statement: str) -> None:
        if statement.strip().upper() == "COMMIT":
            order.append("commit")

    def install(connection: Connection) -> None:
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        driver.set_trace_callback(trace)

    writer.submit_threadsafe(install).result(WAIT)
    order.clear()


def _version(db: Database, session_id: str) -> int:
    state = db.run(db.store.state(session_id))
    assert state is not None
    return state.version


def _messages(db: Database, session_id: str) -> int:
    history = db.run(db.store.history(session_id))
    assert history is not None
    return len(history)


class TestAcknowledgement:
    """A checkpoint is acknowledged only after the transaction holding it committed."""

    def test_no_ack_before_commit_and_every_ack_after_it(self, db: Database) -> None:
        """Futures stay pending while their transaction is open; each resolves after COMMIT."""
        writer = db.store.writer
        for name in ("a", "b"):
            _create(db, name)
        order: list[str] = []
        _trace_commits(writer, order)
        gate, held = _hold_writer(writer)
        futures = [
            writer.submit_threadsafe(db.store._checkpoint_op(_checkpoint(name, 1, 0, 2)))
            for name in ("a", "b")
        ]
        for future in futures:
            future.add_done_callback(lambda _f: order.append("ack"))
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
        gate, held = _hold_writer(writer)
        batches_before = writer.stats.batches
        futures = [
            writer.submit_threadsafe(db.store._checkpoint_op(_checkpoint(name, 1, 0, 3)))
            for name in names
        ]
        assert writer.pending == len(names)
        gate.release.set()
        assert [f.result(WAIT) for f in futures] == [2] * len(names)
        held.result(WAIT)
        assert writer.stats.batches - batches_before == 2  # the gate's, then all five
        assert writer.stats.largest_batch == len(names)
        assert [_messages(db, name) for name in names] == [3] * len(names)

    def test_an_idle_writer_commits_in_the_callers_thread(self, db: Database) -> None:
        """With nothing queued, a thread's checkpoint is committed before submit returns."""
        _create(db, "a")
        threads: list[str] = []

        def op(connection: Connection) -> int:
            threads.append(threading.current_thread().name)
            return db.store._checkpoint_op(_checkpoint("a", 1, 0, 1))(connection)

        future = db.store.writer.submit_threadsafe(op)
        assert future.done()
        assert future.result() == 2
        assert threads == [threading.current_thread().name]


class TestCallThreadsafe:
    """``call_threadsafe``: the blocking call session actors use, with or without a future."""

    def test_idle_writer_runs_the_call_in_the_callers_thread(self, db: Database) -> None:
        """Idle: committed in the caller's thread, outcome returned (or raised) directly."""
        _create(db, "a")
        order: list[str] = []
        _trace_commits(db.store.writer, order)
        threads: list[str] = []

        def op(connection: Connection) -> int:
            threads.append(threading.current_thread().name)
            return db.store._checkpoint_op(_checkpoint("a", 1, 0, 1))(connection)

        assert db.store.writer.call_threadsafe(op, WAIT) == 2
        assert order == ["commit"]  # committed before the call returned
        assert threads == [threading.current_thread().name]
        with pytest.raises(StaleSession):
            db.store.checkpoint_blocking(_checkpoint("a", 1, 1, 1), WAIT)
        assert (_version(db, "a"), _messages(db, "a")) == (2, 1)

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
                got.append(
                    db.store.checkpoint_blocking(_checkpoint(name, version, version - 1, 1), WAIT)
                )
                try:
                    db.store.checkpoint_blocking(_checkpoint(name, version, version, 1), WAIT)
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
        # Held in the writer's own thread, so that the calls stay countable in its queue.
        gate = _Gate()
        held = writer._enqueue(gate, inline=False)
        assert gate.entered.wait(WAIT)

        def broken(driver: sqlite3.Connection) -> None:
            driver.execute("INSERT INTO no_such_table VALUES (1)")

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            x = pool.submit(
                writer.call_threadsafe, db.store._checkpoint_op(_checkpoint("x", 1, 0, 2)), WAIT
            )
            bad = pool.submit(writer.call_threadsafe, DualOp(lambda _c: None, broken), WAIT)
            while writer.pending < 2:
                threading.Event().wait(0.001)
            assert not x.done()
            gate.release.set()
            with pytest.raises(StoreUnavailable, match="refused the write"):
                x.result(WAIT)
            with pytest.raises(StoreUnavailable, match="refused the write"):
                bad.result(WAIT)
        held.result(WAIT)
        assert (_version(db, "x"), _messages(db, "x")) == (1, 0)
        assert writer.call_threadsafe(db.store._checkpoint_op(_checkpoint("y", 1, 0, 2)), WAIT) == 2

    def test_a_call_that_times_out_in_the_queue_is_dropped(self, db: Database) -> None:
        """Timed out before its transaction began: StoreUnavailable, and it never runs."""
        writer = db.store.writer
        _create(db, "a")
        gate, held = _hold_writer(writer)
        with pytest.raises(StoreUnavailable, match="in time"):
            writer.call_threadsafe(db.store._checkpoint_op(_checkpoint("a", 1, 0, 2)), 0.05)
        gate.release.set()
        held.result(WAIT)
        writer.call_threadsafe(lambda _c: None, WAIT)  # the queue has been worked off
        assert (_version(db, "a"), _messages(db, "a")) == (1, 0)

    def test_a_closed_writer_refuses_the_call(self, db: Database) -> None:
        """After close: StoreUnavailable, nothing runs."""
        _create(db, "a")
        writer = db.store.writer
        db.close()
        with pytest.raises(StoreUnavailable, match="closed"):
            writer.call_threadsafe(db.store._checkpoint_op(_checkpoint("a", 1, 0, 2)), WAIT)


class TestFailedBatch:
    """A failed transaction fails every checkpoint in it, and no other."""

    def test_a_database_error_fails_the_whole_batch_and_only_it(self, db: Database) -> None:
        """Rolled back together: none of the batch is stored; the batches around it commit."""
        writer = db.store.writer
        for name in ("before", "x", "y", "after"):
            _create(db, name)
        assert db.store.checkpoint_blocking(_checkpoint("before", 1, 0, 2), WAIT) == 2
        gate, held = _hold_writer(writer)

        def broken(connection: Connection) -> None:
            connection.execute(text("INSERT INTO no_such_table VALUES (1)"))

        batch: list[concurrent.futures.Future[Any]] = [
            writer.submit_threadsafe(db.store._checkpoint_op(_checkpoint("x", 1, 0, 2))),
            writer.submit_threadsafe(broken),
            writer.submit_threadsafe(db.store._checkpoint_op(_checkpoint("y", 1, 0, 2))),
        ]
        gate.release.set()
        assert held.result(WAIT) == "gate"
        for future in batch:
            with pytest.raises(StoreUnavailable, match="refused the write"):
                future.result(WAIT)
        assert (_version(db, "x"), _messages(db, "x")) == (1, 0)
        assert (_version(db, "y"), _messages(db, "y")) == (1, 0)
        assert (_version(db, "before"), _messages(db, "before")) == (2, 2)
        assert writer.stats.failed_batches == 1
        assert db.store.checkpoint_blocking(_checkpoint("after", 1, 0, 2), WAIT) == 2
        assert db.store.checkpoint_blocking(_checkpoint("x", 1, 0, 2), WAIT) == 2
        assert _messages(db, "x") == 2

    def test_a_database_error_in_a_batch_of_checkpoints_fails_only_it(self, db: Database) -> None:
        """Checkpoint batches commit on the bare connection: a failure there rolls back too."""
        writer = db.store.writer
        for name in ("x", "y", "after"):
            _create(db, name)
        begins: list[str] = []
        engine = db._engines.writer
        assert engine is not None
        event.listen(engine, "begin", lambda _conn: begins.append("begin"))
        gate, held = _hold_writer(writer)

        def broken(driver: sqlite3.Connection) -> None:
            driver.execute("INSERT INTO no_such_table VALUES (1)")

        x_op = db.store._checkpoint_op(_checkpoint("x", 1, 0, 2))
        y_op = db.store._checkpoint_op(_checkpoint("y", 1, 0, 2))
        batch: list[concurrent.futures.Future[Any]] = [
            writer.submit_threadsafe(x_op),
            writer.submit_threadsafe(DualOp(lambda _c: None, broken)),
            writer.submit_threadsafe(y_op),
        ]
        gate.release.set()
        assert held.result(WAIT) == "gate"
        for future in batch:
            with pytest.raises(StoreUnavailable, match="refused the write"):
                future.result(WAIT)
        assert begins == ["begin"]  # the gate's: the batch of checkpoints bypassed SQLAlchemy
        assert (_version(db, "x"), _messages(db, "x")) == (1, 0)
        assert (_version(db, "y"), _messages(db, "y")) == (1, 0)
        assert db.store.checkpoint_blocking(_checkpoint("after", 1, 0, 2), WAIT) == 2
        assert db.store.checkpoint_blocking(_checkpoint("x", 1, 0, 2), WAIT) == 2
        _create(db, "z")  # and SQLAlchemy's own transactions still work after it
        assert (_version(db, "after"), _messages(db, "x"), _version(db, "z")) == (2, 2, 1)

    def test_a_refused_checkpoint_fails_alone(self, db: Database) -> None:
        """A stale checkpoint (domain error) writes nothing; its batch mates still commit."""
        writer = db.store.writer
        for name in ("ok", "stale"):
            _create(db, name)
        gate, held = _hold_writer(writer)
        good = writer.submit_threadsafe(db.store._checkpoint_op(_checkpoint("ok", 1, 0, 2)))
        bad = writer.submit_threadsafe(db.store._checkpoint_op(_checkpoint("stale", 7, 0, 2)))
        gate.release.set()
        held.result(WAIT)
        assert good.result(WAIT) == 2
        with pytest.raises(StaleSession):
            bad.result(WAIT)
        assert (_version(db, "stale"), _messages(db, "stale")) == (1, 0)
        assert _messages(db, "ok") == 2


class TestWalCheckpoints:
    """WAL checkpoints run in the checkpointer's thread, not inside a caller's COMMIT."""

    @staticmethod
    def _commit_many(db: Database, session_id: str, count: int) -> None:
        _create(db, session_id)
        for version in range(1, count + 1):
            cp = _checkpoint(session_id, version, version - 1, 1)
            assert db.store.checkpoint_blocking(cp, WAIT) == version + 1

    @staticmethod
    def _wait_for(predicate: Any) -> None:
        for _ in range(int(WAIT / 0.01)):
            if predicate():
                return
            threading.Event().wait(0.01)
        raise AssertionError("timed out")

    def test_checkpoints_run_in_the_background_after_enough_commits(self, db: Database) -> None:
        """The writer's own automatic checkpoint is only a fallback; the thread checkpoints."""
        writer = db.store.writer
        checkpointer = writer._checkpointer
        assert checkpointer is not None
        autocheckpoint = writer.call_threadsafe(
            lambda c: c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar(), WAIT
        )
        assert autocheckpoint == FALLBACK_PAGES
        self._commit_many(db, "a", CHECKPOINT_EVERY + 1)
        self._wait_for(lambda: checkpointer.checkpoints >= 1)
        assert (_version(db, "a"), _messages(db, "a")) == (
            CHECKPOINT_EVERY + 2,
            CHECKPOINT_EVERY + 1,
        )

    def test_a_failing_checkpoint_fails_no_write(
        self, db: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A checkpointer that cannot work (full disk ...) fails no write, then retries."""
        checkpointer = db.store.writer._checkpointer
        assert checkpointer is not None
        attempts: list[int] = []

        def refuse() -> sqlite3.Connection:
            attempts.append(1)
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(checkpointer, "_connect", refuse)
        self._commit_many(db, "a", 2 * CHECKPOINT_EVERY)
        self._wait_for(lambda: len(attempts) >= 1)
        assert checkpointer.checkpoints == 0
        assert _messages(db, "a") == 2 * CHECKPOINT_EVERY
        monkeypatch.undo()
        self._commit_many(db, "b", CHECKPOINT_EVERY)
        self._wait_for(lambda: checkpointer.checkpoints >= 1)

    def test_close_stops_the_thread(self, db: Database) -> None:
        """close() ends the checkpointer's thread (it holds a connection to the file)."""
        checkpointer = db.store.writer._checkpointer
        assert checkpointer is not None
        thread = checkpointer._thread
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
        gate, held = _hold_writer(writer)
        queued = writer.submit_threadsafe(db.store._checkpoint_op(_checkpoint("a", 1, 0, 2)))
        threading.Timer(0.05, gate.release.set).start()
        db.close()
        assert held.result(WAIT) == "gate"
        assert queued.result(WAIT) == 2
        with pytest.raises(StoreUnavailable, match="closed"):
            writer.submit_threadsafe(db.store._checkpoint_op(_checkpoint("a", 2, 2, 1)))


class TestSqliteValues:
    """The driver-level checkpoint binds values exactly as SQLAlchemy's types do."""

    def test_datetimes_read_back_equal(self, db: Database) -> None:
        """A checkpoint's updated_at / expires_at load back as the aware datetimes given."""
        _create(db, "a")
        when = datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=UTC)
        cp = replace(_checkpoint("a", 1, 0, 1), now=when, expires_at=when + timedelta(hours=1))
        db.store.checkpoint_blocking(cp, WAIT)
        state = db.run(db.store.state("a"))
        assert state is not None
        assert (state.updated_at, state.expires_at) == (when, when + timedelta(hours=1))

    def test_naive_datetimes_are_refused(self) -> None:
        """Like the UTCDateTime type: a naive datetime is a ValueError, not a silent shift."""
        assert sqlite_datetime(datetime(2026, 1, 1, 12, tzinfo=UTC)) == "2026-01-01 12:00:00.000000"
        with pytest.raises(ValueError, match="naive"):
            sqlite_datetime(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
