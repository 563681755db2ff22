"""Group commit isolates failures, and resolves unknown outcomes before it answers.

A value the database refuses fails only its own operation: the rest of its batch runs
again without it. A batch whose connection died during COMMIT is read back before any
caller is answered. And a write that had already started when its caller's timeout
passed is waited for, not refused while it commits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from persistence import Database, OutcomeUnknown, StoreUnavailable
from persistence._backend import Tx
from persistence._lifecycle import checkpoint as checkpoint_op
from persistence._write_ops import HotOp, Phases
from tests.persistence._writing import (
    WAIT,
    HotGate,
    checkpoint,
    create,
    hold_writer,
    messages_of,
    queue_in_order,
    submit,
    version_of,
    wait_for_pending,
)


class Poisoned(str):
    """A str that passes our validation but carries a lone surrogate to the driver."""

    __slots__ = ()


POISON = Poisoned("bad \udc80 value")


def poisoned_op() -> HotOp[None]:
    """A hot write whose value the driver refuses to encode (its own data's fault)."""

    def run(tx: Tx) -> Phases[None]:
        tx.driver.execute(
            "UPDATE sessions SET name = " + ("%s" if tx.backend.name == "postgresql" else "?"),
            (POISON,),
        )
        yield

    return HotOp(run)


@pytest.fixture
def db(any_db_url: str) -> Iterator[Database]:
    """An open store on a fresh SQLite file, then on a fresh PostgreSQL database."""
    database = Database.open(any_db_url)
    yield database
    database.close()


class TestAPoisonedOperation:
    """One operation's bad value fails it alone; its batch commits without it."""

    def test_the_rest_of_the_batch_commits(self, db: Database) -> None:
        """X and y commit in the batch the poisoned write shared; it alone is refused."""
        writer = db.store.writer
        for name in ("x", "y"):
            create(db, name)
        gate, held = hold_writer(writer)
        x, bad, y = queue_in_order(
            writer,
            [
                checkpoint_op(checkpoint("x", 1, 0, 2)),
                poisoned_op(),
                checkpoint_op(checkpoint("y", 1, 0, 3)),
            ],
        )
        gate.release.set()
        held.result(WAIT)
        assert (x.result(WAIT), y.result(WAIT)) == (2, 2)
        with pytest.raises(StoreUnavailable, match="surrogates"):
            bad.result(WAIT)
        assert [messages_of(db, "x"), messages_of(db, "y")] == [2, 3]
        assert writer.stats.failed_batches == 0

    def test_a_fault_at_the_pipeline_sync_is_found_and_isolated(self, db: Database) -> None:
        """An error the server reports for a whole batch (a constraint) still fails one.

        On PostgreSQL the pipelined batch fails at a sync that names no operation; the
        writer runs it again one operation after the other to find it.
        """
        writer = db.store.writer
        for name in ("x", "y"):
            create(db, name)

        def insert_twice(tx: Tx) -> Phases[None]:
            tx.driver.execute(
                "INSERT INTO sessions (id, name, created_at, last_active_at, status)"
                " SELECT id, name, created_at, last_active_at, status FROM sessions"
                " WHERE id = 'x'"
            )
            yield

        duplicate = HotOp(insert_twice)
        gate, held = hold_writer(writer)
        x, bad, y = queue_in_order(
            writer,
            [
                checkpoint_op(checkpoint("x", 1, 0, 2)),
                duplicate,
                checkpoint_op(checkpoint("y", 1, 0, 2)),
            ],
        )
        gate.release.set()
        held.result(WAIT)
        assert (x.result(WAIT), y.result(WAIT)) == (2, 2)
        with pytest.raises(StoreUnavailable, match="refused"):
            bad.result(WAIT)


class TestAStartedWrite:
    """The timeout rule inside the writer."""

    def test_a_write_that_started_is_waited_for_past_the_timeout(self, db: Database) -> None:
        """Its caller's timeout passes while its batch runs: it gets the version, not False.

        The old rule refused it "in time" and then committed it all the same.
        """
        writer = db.store.writer
        create(db, "a")
        gate, held = hold_writer(writer)
        slow = HotGate(phases=1)
        slow_call = submit(writer, slow.op)
        wait_for_pending(writer, 1)
        answer: dict[str, Any] = {}

        def impatient() -> None:
            try:
                answer["value"] = writer.call(checkpoint_op(checkpoint("a", 1, 0, 2)), 0.2)
            except StoreUnavailable as error:
                answer["error"] = error

        caller = threading.Thread(target=impatient)
        caller.start()
        wait_for_pending(writer, 2)
        gate.release.set()  # the next batch (slow gate, then a) starts and holds
        held.result(WAIT)
        assert slow.entered.wait(WAIT)
        time.sleep(0.4)  # past the caller's timeout, while its write is running
        slow.release.set()
        caller.join(WAIT)
        slow_call.result(WAIT)
        assert answer == {"value": 2}
        assert version_of(db, "a") == 2


@pytest.mark.postgres
class TestLostCommit:
    """The connection drops during COMMIT: the writer reads back before it answers."""

    @pytest.fixture
    def database(self, pg_url: str) -> Iterator[Database]:
        """An open store on a fresh PostgreSQL database."""
        database = Database.open(pg_url)
        yield database
        database.close()

    @staticmethod
    def _lose_commit(database: Database, *, after: bool) -> list[int]:
        """Make the next COMMIT raise a lost connection, after or before it happened."""
        backend = database.store.backend
        real = backend.commit
        calls: list[int] = []

        def commit(driver: Any) -> None:
            calls.append(1)
            if len(calls) == 1:
                if after:
                    real(driver)
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            real(driver)

        backend.commit = commit  # type: ignore[method-assign]
        return calls

    def _batch(self, database: Database) -> list[Any]:
        writer = database.store.writer
        for name in ("x", "y"):
            create(database, name)
        gate, held = hold_writer(writer)
        batch = queue_in_order(
            writer,
            [checkpoint_op(checkpoint("x", 1, 0, 2)), checkpoint_op(checkpoint("y", 1, 0, 2))],
        )
        return [gate, held, batch]

    def test_a_batch_that_committed_is_acknowledged(self, database: Database) -> None:
        """Both checkpoints committed before the answer was lost: both get their version."""
        gate, held, batch = self._batch(database)
        self._lose_commit(database, after=True)
        gate.release.set()
        held.result(WAIT)
        assert [future.result(WAIT) for future in batch] == [2, 2]
        assert [version_of(database, n) for n in ("x", "y")] == [2, 2]
        assert [messages_of(database, n) for n in ("x", "y")] == [2, 2]

    def test_a_batch_that_did_not_commit_runs_again_once(self, database: Database) -> None:
        """The COMMIT never reached the server: read back, then run again; stored once."""
        gate, held, batch = self._batch(database)
        calls = self._lose_commit(database, after=False)
        gate.release.set()
        held.result(WAIT)
        assert [future.result(WAIT) for future in batch] == [2, 2]
        assert len(calls) >= 2
        assert [messages_of(database, n) for n in ("x", "y")] == [2, 2]

    def test_writes_that_cannot_tell_are_unknown_not_refused(self, database: Database) -> None:
        """A write without a read-back (a lease release): OutcomeUnknown, as it committed."""
        create(database, "x")
        self._lose_commit(database, after=True)
        with pytest.raises(OutcomeUnknown, match="could not be read back"):
            database.store.release_lease("x", "me", 1)
        state = database.store.state("x")
        assert state is not None
        assert state.owner is None  # it did commit: "refused" would have been a lie
