"""The one synchronous store on both databases, and what its design adds.

Group commit and fenced writes in a batch, every form of a checkpoint, compiled
statements, PostgreSQL's connection settings and the hot reads' pool. Batches are built
as in ``test_writer``: a gate holds the writer's transaction open while the operations
queue behind it (see :mod:`tests.persistence._writing`).
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, bindparam, create_engine, select
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from persistence import (
    DEFAULT_APPLICATION_NAME,
    Checkpoint,
    Database,
    InvalidTransition,
    SessionNotFound,
    SessionOwnedElsewhere,
    SessionSupervisorError,
    StaleSession,
    StoreUnavailable,
)
from persistence import _statements as sql
from persistence._backend import Driver, Tx, core_connection_driver
from persistence._lifecycle import checkpoint as checkpoint_op
from persistence._lifecycle import take_lease as take_lease_op
from persistence._reads import ReadPool
from persistence._sql import Statement
from persistence._tables import states
from persistence._write_ops import HotOp, Phases
from tests.persistence._writing import (
    NOW,
    WAIT,
    HotGate,
    broken_hot_op,
    checkpoint,
    create,
    hold_writer,
    messages_of,
    pg_dsn,
    queue_in_order,
    version_of,
)


@pytest.fixture
def db(any_db_url: str) -> Iterator[Database]:
    """An open store on a fresh SQLite file, then on a fresh PostgreSQL database."""
    database = Database.open(any_db_url)
    yield database
    database.close()


def _in_pipeline(driver: Driver) -> bool:
    """Whether the driver's connection is in pipeline mode now (only psycopg can be)."""
    if not isinstance(driver, psycopg.Connection):
        return False
    return driver.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF


def _probe_pipeline(seen: list[bool]) -> HotOp[None]:
    """A hot operation that records whether its batch runs pipelined."""

    def run(tx: Tx) -> Phases[None]:
        seen.append(_in_pipeline(tx.driver))
        return
        yield

    return HotOp(run)


def _is_closed(driver: Driver) -> bool:
    """Whether a driver's connection (``sqlite3`` or psycopg) is closed."""
    if isinstance(driver, psycopg.Connection):
        return driver.closed
    try:
        driver.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


class TestCheckpointForms:
    """Every form of a checkpoint writes the same thing, alone or in a batch."""

    @staticmethod
    def _forms(session_id: str) -> list[Checkpoint]:
        """Set a plan, keep it, replace the history, clear the plan (versions 1 to 4)."""
        plan = replace(checkpoint(session_id, 1, 0, 2), plan_json='{"p":[1]}', set_plan=True)
        keep = replace(checkpoint(session_id, 2, 2, 1), context_json='{"v":2}')
        rewrite = replace(checkpoint(session_id, 3, 1, 1), rewrite_from=1)
        clear = replace(checkpoint(session_id, 4, 2, 0), plan_json=None, set_plan=True)
        return [plan, keep, rewrite, clear]

    @staticmethod
    def _expected(session_id: str) -> list[list[Any]]:
        """Version, plan, context, message count and contents after each form."""
        two = [f"{session_id} 0", f"{session_id} 1"]
        return [
            [2, '{"p":[1]}', '{"v":1}', 2, two],
            [3, '{"p":[1]}', '{"v":2}', 3, [*two, f"{session_id} 2"]],
            [4, '{"p":[1]}', '{"v":1}', 2, two],
            [5, None, '{"v":1}', 2, two],
        ]

    @staticmethod
    def _stored(db: Database, session_id: str) -> list[Any]:
        document = db.store.load(session_id)
        assert document is not None
        state = document.state
        contents = [message["content"] for message in document.history]
        return [state.version, state.plan_json, state.context_json, state.message_count, contents]

    def test_alone(self, db: Database) -> None:
        """Each checkpoint committed on its own (a batch of one) stores plan, context, history."""
        create(db, "a")
        for form, expected in zip(self._forms("a"), self._expected("a"), strict=True):
            assert db.store.checkpoint(form) == expected[0]
            assert self._stored(db, "a") == expected

    def test_in_a_batch(self, db: Database) -> None:
        """The same checkpoints of three sessions, each form in one shared transaction."""
        writer = db.store.writer
        names = [f"s{i}" for i in range(3)]
        for name in names:
            create(db, name)
        forms = {name: self._forms(name) for name in names}
        for step in range(4):
            gate, held = hold_writer(writer)
            batch = queue_in_order(writer, [checkpoint_op(forms[n][step]) for n in names])
            gate.release.set()
            held.result(WAIT)
            assert [f.result(WAIT) for f in batch] == [step + 2] * len(names)
            for name in names:
                assert self._stored(db, name) == self._expected(name)[step]


class TestGroupCommit:
    """Checkpoints queued behind a transaction commit together, on both databases."""

    def test_queued_checkpoints_commit_in_one_transaction_each_acknowledged(
        self, db: Database
    ) -> None:
        """Five checkpoints queued behind a held transaction share the next one.

        Each caller gets its own new version back once it committed; on PostgreSQL the
        batch is sent pipelined and every row carries the same transaction id (xmin).
        """
        writer = db.store.writer
        names = [f"s{i}" for i in range(5)]
        for name in names:
            create(db, name)
        gate, held = hold_writer(writer)
        seen: list[bool] = []
        batches_before = writer.stats.batches
        futures = queue_in_order(
            writer,
            [*(checkpoint_op(checkpoint(name, 1, 0, 3)) for name in names), _probe_pipeline(seen)],
        )
        assert not any(f.done() for f in futures)
        gate.release.set()
        assert [f.result(WAIT) for f in futures] == [2] * len(names) + [None]
        assert held.result(WAIT) == "gate"
        assert writer.stats.batches - batches_before == 2  # the gate's, then all of them
        assert writer.stats.largest_batch == len(names) + 1
        assert [messages_of(db, name) for name in names] == [3] * len(names)
        postgres = db.store.dialect == "postgresql"
        assert seen == [postgres]
        if postgres:
            # Only these five sessions exist: one transaction wrote every state row.
            xmins = db.store.read(
                lambda c: {
                    row[0] for row in c.exec_driver_sql("SELECT xmin::text FROM session_states")
                }
            )
            assert len(xmins) == 1

    @pytest.mark.parametrize(
        ("refused", "error"),
        [
            (checkpoint("bad", 7, 0, 2), StaleSession),
            (checkpoint("bad", 1, 0, 2, epoch=9), SessionOwnedElsewhere),
            (checkpoint("missing", 1, 0, 2), SessionNotFound),
        ],
        ids=["stale-version", "stale-epoch", "unknown-session"],
    )
    def test_a_refused_checkpoint_in_a_batch_fails_alone(
        self, db: Database, refused: Checkpoint, error: type[SessionSupervisorError]
    ) -> None:
        """A checkpoint whose guard does not match fails alone and writes nothing.

        Its neighbours before and after it in the same transaction commit.
        """
        writer = db.store.writer
        for name in ("before", "bad", "after"):
            create(db, name)
        gate, held = hold_writer(writer)
        batches_before = writer.stats.batches
        before, bad, after = queue_in_order(
            writer,
            [
                checkpoint_op(checkpoint("before", 1, 0, 2)),
                checkpoint_op(refused),
                checkpoint_op(checkpoint("after", 1, 0, 2)),
            ],
        )
        gate.release.set()
        held.result(WAIT)
        assert (before.result(WAIT), after.result(WAIT)) == (2, 2)
        with pytest.raises(error):
            bad.result(WAIT)
        assert writer.stats.batches - batches_before == 2
        assert (writer.stats.failed_batches, writer.stats.largest_batch) == (0, 3)
        assert (version_of(db, "bad"), messages_of(db, "bad")) == (1, 0)
        assert db.store.load("missing") is None
        assert [messages_of(db, name) for name in ("before", "after")] == [2, 2]
        assert db.store.checkpoint(checkpoint("bad", 1, 0, 1)) == 2  # nothing half-done

    def test_a_database_error_fails_the_whole_hot_batch_and_only_it(self, db: Database) -> None:
        """A driver error in a batch of hot operations rolls all of it back, and only it."""
        writer = db.store.writer
        for name in ("x", "y", "after"):
            create(db, name)
        gate, held = hold_writer(writer)
        batch = queue_in_order(
            writer,
            [
                checkpoint_op(checkpoint("x", 1, 0, 2)),
                broken_hot_op(),
                checkpoint_op(checkpoint("y", 1, 0, 2)),
            ],
        )
        gate.release.set()
        assert held.result(WAIT) == "gate"
        for future in batch:
            with pytest.raises(StoreUnavailable, match="refused the write"):
                future.result(WAIT)
        assert writer.stats.failed_batches == 1
        assert [version_of(db, name) for name in ("x", "y")] == [1, 1]
        assert [messages_of(db, name) for name in ("x", "y")] == [0, 0]
        assert db.store.checkpoint(checkpoint("after", 1, 0, 2)) == 2
        assert db.store.checkpoint(checkpoint("x", 1, 0, 2)) == 2


@pytest.mark.postgres
class TestLeaseTakesInABatch:
    """A lease take refused inside a batch keeps no row lock until the batch commits."""

    @staticmethod
    def _lock_free(pg_url: str, session_id: str) -> bool:
        """Whether another connection can lock the session's state row right now."""
        with psycopg.connect(pg_dsn(pg_url), autocommit=True) as probe:
            try:
                probe.execute(
                    "SELECT 1 FROM session_states WHERE session_id = %s FOR UPDATE NOWAIT",
                    (session_id,),
                )
            except psycopg.errors.LockNotAvailable:
                return False
        return True

    def test_a_refused_take_leaves_no_row_lock_behind(self, pg_url: str) -> None:
        """While the batch is still open, the refused takes' rows can be locked by others.

        One take is refused after it locked the row (the session is completed), one
        before (a live owner holds it); the row of the take that succeeded stays locked
        until the batch commits, which shows the probe would see a lock.
        """
        db = Database.open(pg_url)
        try:
            writer = db.store.writer
            lease_until = NOW + timedelta(minutes=1)
            create(db, "done", owner=None)
            db.store.transition("done", 1, 1, ("active",), "completed", "complete", NOW, None, True)
            create(db, "held", owner="other")
            create(db, "free", owner=None)
            gate, held = hold_writer(writer)
            late = HotGate()
            done, taken_elsewhere, free, late_future = queue_in_order(
                writer,
                [
                    take_lease_op("done", "me", NOW, lease_until),
                    take_lease_op("held", "me", NOW, lease_until),
                    take_lease_op("free", "me", NOW, lease_until),
                    late.op,
                ],
            )
            gate.release.set()
            assert held.result(WAIT) == "gate"
            assert late.entered.wait(WAIT)  # the batch's transaction is still open
            try:
                assert self._lock_free(pg_url, "done")
                assert self._lock_free(pg_url, "held")
                assert not self._lock_free(pg_url, "free")
            finally:
                late.release.set()
            assert late_future.result(WAIT) == "hot gate"
            with pytest.raises(InvalidTransition):
                done.result(WAIT)
            with pytest.raises(SessionOwnedElsewhere):
                taken_elsewhere.result(WAIT)
            assert free.result(WAIT).state.owner == "me"
            assert self._lock_free(pg_url, "free")
            state = db.store.state("done")
            assert state is not None
            assert (state.owner, state.epoch) == (None, 1)
        finally:
            db.close()

    def test_a_take_of_a_row_another_transaction_locks_is_refused_at_once(
        self, pg_url: str
    ) -> None:
        """The writer does not wait on a peer's row lock (it would stall every batch)."""
        db = Database.open(pg_url)
        try:
            create(db, "busy", owner=None)
            with psycopg.connect(pg_dsn(pg_url)) as peer:
                peer.execute("SELECT 1 FROM session_states WHERE session_id = 'busy' FOR UPDATE")
                with pytest.raises(SessionOwnedElsewhere):
                    db.store.take_lease("busy", "me", NOW, NOW + timedelta(minutes=1))
                peer.rollback()
            assert (
                db.store.take_lease("busy", "me", NOW, NOW + timedelta(minutes=1)).state.epoch == 2
            )
        finally:
            db.close()


class TestStatement:
    """A hot statement is written once in Core and compiled once per dialect."""

    # As the backends compile them; an engine that never connects gives psycopg's.
    DIALECTS = (
        SQLiteDialect_pysqlite(paramstyle="named"),
        create_engine("postgresql+psycopg://").dialect,
    )

    def test_compiles_once_per_dialect(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Repeated use reuses the first compilation; each dialect gets its own text."""
        core = select(states.c.owner).where(states.c.session_id == bindparam("sid"))
        compiles: list[str] = []
        compile_core = core.compile

        def counted(*args: Any, **kwargs: Any) -> Any:
            compiles.append(kwargs["dialect"].name)
            return compile_core(*args, **kwargs)

        monkeypatch.setattr(core, "compile", counted)
        statement = Statement("owner", core)
        sqlite_dialect, pg_dialect = self.DIALECTS
        first = statement.compiled(sqlite_dialect)
        assert all(statement.compiled(sqlite_dialect) is first for _ in range(3))
        on_pg = statement.compiled(pg_dialect)
        assert statement.compiled(pg_dialect) is on_pg
        assert compiles == ["sqlite", "postgresql"]
        assert ":sid" in first.text
        assert "%(sid)s" in on_pg.text

    def test_concurrent_first_use_compiles_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Two threads using a new statement at once share one compilation."""
        core = select(states.c.owner).where(states.c.session_id == bindparam("sid"))
        statement = Statement("owner", core)
        dialect = self.DIALECTS[0]
        compiles: list[str] = []
        compile_core = core.compile
        other = threading.Thread(target=statement.compiled, args=(dialect,))

        def counted(*args: Any, **kwargs: Any) -> Any:
            compiles.append(threading.current_thread().name)
            if len(compiles) == 1:
                # The other thread finds no compilation yet and waits for the lock.
                other.start()
                other.join(0.2)
            return compile_core(*args, **kwargs)

        monkeypatch.setattr(core, "compile", counted)
        statement.compiled(dialect)
        other.join(WAIT)
        assert len(compiles) == 1

    @pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
    def test_an_expanding_in_is_refused(self, dialect: Any) -> None:
        """An IN whose values are only known at execution cannot be compiled once."""
        expanding = Statement(
            "expanding",
            select(states.c.owner).where(states.c.session_id.in_(bindparam("ids", expanding=True))),
        )
        with pytest.raises(ValueError, match="expanding IN"):
            expanding.compiled(dialect)
        literal = Statement(
            "literal", select(states.c.owner).where(states.c.session_id.in_(["a", "b"]))
        )
        assert "'a', 'b'" in literal.compiled(dialect).text  # known values are written in
        positions = sql.samples(3).compiled(dialect)  # one parameter per value instead
        assert all(f"p{i}" in positions.text for i in range(3))

    @pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
    def test_literal_values_are_written_into_the_sql(self, dialect: Any) -> None:
        """The statement's own literals ('active', 1, NULL) are written into its text.

        A call binds exactly its own values: nothing is merged in per execution.
        """
        update_state = sql.UPDATE_STATE.compiled(dialect)
        assert "'active'" in update_state.text
        assert update_state.defaults == {}
        params = {"sid": "s", "expected": 1}
        assert update_state.bind(params) is params
        assert "epoch + 1" in sql.TAKE.compiled(dialect).text
        assert "owner=NULL" in sql.RELEASE.compiled(dialect).text


@pytest.mark.postgres
class TestPostgresConnections:
    """The store's settings reach every PostgreSQL connection it opens."""

    @staticmethod
    def _prepared(db: Database) -> tuple[Any, Any, Any, int, int]:
        """What the writer's, a hot reader's and a cold read's connections prepare.

        Their psycopg ``prepare_threshold``, then how many statements the writer's and
        the hot reader's server sessions hold prepared (``pg_prepared_statements``).
        """

        def writer_side(connection: Connection) -> tuple[Any, int]:
            driver = core_connection_driver(connection)
            count = connection.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements")
            return driver.prepare_threshold, int(count.scalar_one())

        def reader_side(driver: Driver) -> tuple[Any, int]:
            row = driver.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
            return driver.prepare_threshold, int(row[0])

        writer_threshold, writer_prepared = db.store.write(writer_side)
        reader_threshold, reader_prepared = db.store.reads.read(reader_side)
        cold = db.store.read(lambda c: core_connection_driver(c).prepare_threshold)
        return writer_threshold, reader_threshold, cold, writer_prepared, reader_prepared

    @staticmethod
    def _work(db: Database) -> None:
        """A create, a checkpoint and loads: the hot statements on writer and reader."""
        create(db, "a")
        assert db.store.checkpoint(checkpoint("a", 1, 0, 2)) == 2
        assert db.store.checkpoint(checkpoint("a", 2, 2, 1)) == 3
        for _ in range(2):
            document = db.store.load("a")
            assert document is not None
            assert len(document.history) == 3

    def test_prepared_statements_off(self, pg_url: str) -> None:
        """Off (PgBouncer in transaction mode): checkpoints and loads work, nothing prepared."""
        db = Database.open(pg_url, prepared_statements=False)
        try:
            self._work(db)
            assert db.store.reads.open_connections == 1  # the one the loads used
            assert self._prepared(db) == (None, None, None, 0, 0)
        finally:
            db.close()

    def test_prepared_statements_on_by_default(self, pg_url: str) -> None:
        """By default every connection prepares on first use, and the hot ones did."""
        db = Database.open(pg_url)
        try:
            self._work(db)
            threshold, reader, cold, writer_prepared, reader_prepared = self._prepared(db)
            assert (threshold, reader, cold) == (0, 0, 0)
            assert writer_prepared > 0
            assert reader_prepared > 0
        finally:
            db.close()

    @pytest.mark.parametrize("name", [None, "ss-tests-instance-7"])
    def test_application_name_is_set_on_every_connection(
        self, pg_url: str, name: str | None
    ) -> None:
        """pg_stat_activity shows the instance's name for the writer and both read paths."""
        if name is None:
            db, expected = Database.open(pg_url), DEFAULT_APPLICATION_NAME
        else:
            db, expected = Database.open(pg_url, application_name=name), name
        try:
            create(db, "a")
            assert db.store.load("a") is not None
            assert db.store.list_sessions(None, None, None, 10)
            assert db.store.history("a") == []
            own = db.store.write(
                lambda c: c.exec_driver_sql("SELECT current_setting('application_name')").scalar()
            )
            assert own == expected
            with psycopg.connect(pg_dsn(pg_url), autocommit=True) as probe:
                rows = probe.execute(
                    "SELECT application_name FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchall()
            names = [row[0] for row in rows]
            assert len(names) >= 3  # the writer, a hot reader, a cold read's pooled one
            assert set(names) == {expected}
        finally:
            db.close()


class TestReadPool:
    """The hot reads' pool reuses its connections and closes them with the store."""

    def test_sequential_reads_reuse_one_connection(self, db: Database) -> None:
        """Reads one after the other, of any kind, run on the same driver's connection."""
        create(db, "a")
        pool = db.store.reads
        used = {id(pool.read(lambda driver: driver)) for _ in range(3)}
        for _ in range(3):
            assert db.store.load("a") is not None
            assert db.store.state("a") is not None
            assert db.store.session_info("a") is not None
        used.add(id(pool.read(lambda driver: driver)))
        assert len(used) == 1
        assert pool.open_connections == 1

    def test_concurrent_reads_keep_at_most_pool_size_connections(self, db: Database) -> None:
        """Four reads at once open four connections; two stay pooled, close() ends them."""
        pool = ReadPool(db.store.backend, pool_size=2)
        barrier = threading.Barrier(4, timeout=WAIT)
        drivers: list[Driver] = []

        def together(driver: Driver) -> None:
            drivers.append(driver)
            driver.execute("SELECT 1").fetchall()
            barrier.wait()

        with concurrent.futures.ThreadPoolExecutor(4) as threads:
            for future in [threads.submit(pool.read, together) for _ in range(4)]:
                future.result(WAIT)
        assert len({id(d) for d in drivers}) == 4
        assert pool.open_connections == 2
        assert sum(_is_closed(d) for d in drivers) == 2
        pool.close()
        assert pool.open_connections == 0
        assert all(_is_closed(d) for d in drivers)
        with pytest.raises(StoreUnavailable, match="closed"):
            pool.read(lambda driver: driver)

    def test_close_closes_the_stores_read_connections(self, any_db_url: str) -> None:
        """Database.close() closes the pooled connections; reads then fail as closed."""
        db = Database.open(any_db_url)
        create(db, "a")
        driver = db.store.reads.read(lambda d: d)
        assert db.store.load("a") is not None
        assert db.store.reads.open_connections == 1
        db.close()
        assert db.store.reads.open_connections == 0
        assert _is_closed(driver)
        with pytest.raises(StoreUnavailable, match="closed"):
            db.store.load("a")

    def test_a_failed_read_drops_its_connection(self, db: Database) -> None:
        """A read the database refused closes its connection; the next read opens a new one."""
        create(db, "a")
        pool = db.store.reads
        first = pool.read(lambda d: d)

        def broken(driver: Driver) -> None:
            driver.execute("SELECT * FROM no_such_table")

        with pytest.raises(StoreUnavailable, match="could not be read"):
            pool.read(broken)
        assert _is_closed(first)
        assert pool.open_connections == 0
        assert db.store.state("a") is not None
        assert pool.open_connections == 1
        assert pool.read(lambda d: d) is not first

    @pytest.mark.postgres
    def test_a_read_on_a_connection_the_server_dropped_runs_again(self, pg_url: str) -> None:
        """Pooled connections killed while idle: the next read runs on a new one, no refusal."""
        db = Database.open(pg_url)
        try:
            create(db, "a")
            pool = db.store.reads
            first = pool.read(lambda d: d)
            with psycopg.connect(pg_dsn(pg_url), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (first.info.backend_pid,))
            document = db.store.load("a")
            assert document is not None
            assert document.state.session_id == "a"
            assert _is_closed(first)
            assert pool.open_connections == 1
            assert pool.read(lambda d: d) is not first
        finally:
            db.close()
