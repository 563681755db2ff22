"""The seed's API on PostgreSQL: what works on the SQLite default works on a real server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from actors import ManualClock
from persistence import Database, StoreUnavailable, downgrade_op, head_revision
from persistence._backend import Tx
from persistence._models import Base, UTCDateTime
from persistence._write_ops import HotOp, Phases, WriteOp
from tests.conftest import ManagerFactory, history
from tests.persistence._writing import WAIT, hold_writer, pg_dsn, queue_in_order

#: The JSON documents of the schema, stored as the text our encoder wrote.
JSON_COLUMNS = (
    ("sessions", "meta"),
    ("sessions", "resource_limits"),
    ("session_states", "context_variables"),
    ("session_states", "plan_data"),
    ("session_messages", "extra"),
    ("approval_requests", "context"),
    ("approval_requests", "result"),
)


class TestBothBackends:
    """Round trips that must behave the same on SQLite and PostgreSQL."""

    def test_save_and_load_round_trip(self, any_db_url: str, make_manager: ManagerFactory) -> None:
        """A saved history, context, phase and step load back exactly, NUL included."""
        manager = make_manager(database_url=any_db_url)
        session_id = manager.create_session("copilot", {"model": "m"}, "u1", "demo")
        messages = [*history(3), {"role": "user", "content": "nul \x00 inside"}]
        assert manager.save_session_state(session_id, messages, {"k": [1, 2.5]}, "plan", 2)
        state = manager.load_session_state(session_id)
        assert state is not None
        assert state["conversation_history"] == messages
        assert state["context_variables"] == {"k": [1, 2.5]}
        assert (state["current_phase"], state["current_step"]) == ("plan", 2)

    def test_a_new_manager_reads_what_an_earlier_one_acknowledged(
        self, any_db_url: str, make_manager: ManagerFactory
    ) -> None:
        """Closing one manager and opening another on the same database loses nothing."""
        first = make_manager(database_url=any_db_url)
        session_id = first.create_session("copilot", {}, "u1")
        assert first.save_session_state(session_id, history(5), {"n": 5}, "exec", 5)
        first.close()
        second = make_manager(database_url=any_db_url)
        state = second.load_session_state(session_id)
        assert state is not None
        assert state["conversation_history"] == history(5)
        assert [s["session_id"] for s in second.list_sessions(user_id="u1")] == [session_id]

    def test_plan_data_and_a_rewritten_history(
        self, any_db_url: str, make_manager: ManagerFactory
    ) -> None:
        """A plan is set and then kept by saves without one; a summarised history replaces all.

        Every form of the checkpoint statement (with and without a plan, with the rewrite's
        delete) runs on each backend, and a new manager reads back exactly what was saved.
        """
        manager = make_manager(database_url=any_db_url)
        session_id = manager.create_session("copilot", {})
        assert manager.save_session_state(session_id, history(6), {"n": 1}, "plan", 1, {"p": [1]})
        assert manager.save_session_state(session_id, history(8), {"n": 2}, "exec", 2)
        summary = [{"role": "system", "content": "summary of 8 messages"}, *history(2, start=8)]
        assert manager.save_session_state(session_id, summary, {"n": 3}, "exec", 3)
        manager.close()
        state = make_manager(database_url=any_db_url).load(session_id)
        assert state["conversation_history"] == summary
        assert (state["plan_data"], state["context_variables"]) == ({"p": [1]}, {"n": 3})
        assert (state["current_phase"], state["current_step"], state["version"]) == ("exec", 3, 4)
        assert state["message_count"] == 3

    def test_lifecycle_and_its_refusals(
        self, any_db_url: str, make_manager: ManagerFactory
    ) -> None:
        """Active, suspended, active again, completed: each refusal changes nothing."""
        manager = make_manager(database_url=any_db_url)
        session_id = manager.create_session("copilot", {}, "u1")
        assert manager.save_session_state(session_id, history(2), {"a": 1}, "plan", 1)
        assert manager.suspend_session(session_id)
        assert manager.save_session_state(session_id, history(3), {"a": 2}, "exec") is False
        assert manager.suspend_session(session_id) is False
        assert manager.resume_session(session_id)
        assert manager.resume_session(session_id) is False
        assert manager.save_session_state(session_id, history(3), {"a": 3}, "exec", 2)
        assert manager.complete_session(session_id)
        assert manager.load_session_state(session_id) is None
        state = manager.load(session_id)
        assert (state["status"], state["context_variables"], state["version"]) == (
            "completed", {"a": 3}, 6
        )  # fmt: skip
        assert [s["status"] for s in manager.list_sessions(user_id="u1")] == ["completed"]
        assert manager.delete_session(session_id)
        assert manager.get_session_info(session_id) is None
        assert manager.delete_session(session_id) is False

    def test_approvals_connections_and_the_sweep(
        self, any_db_url: str, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """Approvals expire, stale connections go and idle sessions expire, on both backends."""
        manager = make_manager(database_url=any_db_url, session_ttl=timedelta(hours=1))
        idle, fresh = manager.create_session("c", {}), manager.create_session("c", {})
        late = manager.request_approval(fresh, "plan", {"p": 1}, timeout=60)
        answered = manager.request_approval(fresh, "plan", {"p": 2}, timeout=7200)
        manager.register_connection("task-1", fresh)
        clock.advance(minutes=59)
        assert manager.save_session_state(fresh, history(1), {}, "x")
        assert manager.resolve_approval(answered, "approved")
        clock.advance(minutes=2)
        counts = manager.sweep()
        assert manager.resolve_approval(late, "approved") is False
        assert (counts["sessions_expired"], counts["approvals_expired"]) == (1, 1)
        assert counts["connections_removed"] == 1
        assert manager.load(idle)["status"] == "expired"
        assert manager.load(fresh)["status"] == "active"


def _pg_schema(pg_url: str, inspect: Callable[[sa.Connection], Any]) -> Any:
    """Run ``inspect`` on a SQLAlchemy connection (psycopg) to the PostgreSQL database."""
    engine = sa.create_engine(sa.make_url(pg_url).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as connection:
            return inspect(connection)
    finally:
        engine.dispose()


@pytest.mark.postgres
class TestPostgresSchema:
    """The migrated PostgreSQL schema: the models exactly, with timestamptz and text JSON."""

    def test_migrations_and_models_agree(self, pg_url: str) -> None:
        """Autogenerate finds no difference between the migrated schema and the models."""
        Database.open(pg_url).close()

        def compare(connection: sa.Connection) -> Any:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)

        assert _pg_schema(pg_url, compare) == []

    def test_downgrade_to_base_and_upgrade_again(self, pg_url: str) -> None:
        """The migrations are reversible on PostgreSQL too."""
        db = Database.open(pg_url)
        db.store.write(downgrade_op("base"))
        db.close()
        tables = _pg_schema(pg_url, lambda c: sa.inspect(c).get_table_names())
        assert set(tables) <= {"alembic_version"}
        db = Database.open(pg_url)
        try:
            assert db.store.schema_revision() == head_revision()
        finally:
            db.close()

    def test_times_are_timestamptz_and_json_is_text(self, pg_url: str) -> None:
        """Every time column is timestamptz; every JSON document is text (see the README)."""
        Database.open(pg_url).close()

        def column_types(connection: sa.Connection) -> dict[tuple[str, str], str]:
            rows = connection.exec_driver_sql(
                "SELECT table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'public'"
            )
            return {(table, column): kind for table, column, kind in rows}

        types = _pg_schema(pg_url, column_types)
        times = {
            (table.name, column.name)
            for table in Base.metadata.tables.values()
            for column in table.columns
            if isinstance(column.type, UTCDateTime)
        }
        assert len(times) >= 10
        assert {types[key] for key in times} == {"timestamp with time zone"}
        assert not [key for key, kind in types.items() if kind == "timestamp without time zone"]
        for key in JSON_COLUMNS:
            assert types[key] == "text", key

    def test_jsonb_would_not_store_session_data_faithfully(self, pg_url: str) -> None:
        """Why JSON stays text: JSONB refuses NUL, reorders keys and rounds big floats."""

        def probe(connection: sa.Connection) -> Any:
            def jsonb(text: str) -> Any:
                return connection.exec_driver_sql(
                    "SELECT CAST(CAST(%s AS text) AS jsonb)::text", (text,)
                ).scalar()

            nul = json.dumps({"content": "nul \x00 inside"})
            with (
                pytest.raises(sa.exc.DBAPIError, match="unsupported Unicode escape"),
                connection.begin_nested(),
            ):
                jsonb(nul)
            return jsonb('{"zeta":1,"a":2}'), jsonb(json.dumps({"x": 1e300}))

        reordered, rounded = _pg_schema(pg_url, probe)
        assert list(json.loads(reordered)) == ["a", "zeta"]
        assert json.loads(rounded)["x"] != 1e300  # numeric: back as the int 10**300


_INSERT = "INSERT INTO probe VALUES (1)"


@pytest.mark.postgres
class TestPostgresRetry:
    """A batch the server rolled back for a deadlock runs again; other failures do not."""

    @pytest.fixture
    def database(self, pg_url: str) -> Iterator[Database]:
        """The bare store on a fresh PostgreSQL database, with a scratch table."""
        db = Database.open(pg_url)
        db.store.write(lambda c: c.execute(sa.text("CREATE TABLE probe (n int)")))
        yield db
        db.close()

    @staticmethod
    def _insert_then_deadlock(times: int, kind: str) -> tuple[WriteOp, list[int]]:
        """An op that inserts a row, then fails as a deadlock victim its first ``times`` runs.

        ``kind`` ``core``: a Core op (a SQLAlchemy transaction); ``hot``: a hot op (on the
        driver's connection).
        """
        runs: list[int] = []
        victim = "DO $$ BEGIN RAISE EXCEPTION 'victim' USING ERRCODE = '40P01'; END $$"

        def op(connection: sa.Connection) -> int:
            runs.append(1)
            connection.execute(sa.text(_INSERT))
            if len(runs) <= times:
                connection.execute(sa.text(victim))
            return len(runs)

        def run(tx: Tx) -> Phases[int]:
            runs.append(1)
            tx.driver.execute(_INSERT)
            yield
            if len(runs) <= times:
                tx.driver.execute(victim)
                yield
            return len(runs)

        return (op if kind == "core" else HotOp(run)), runs

    @staticmethod
    def _hot_insert(pipelined: list[bool]) -> HotOp[None]:
        """A hot op that inserts a row and records whether its batch runs pipelined."""

        def run(tx: Tx) -> Phases[None]:
            pipelined.append(tx.driver.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF)
            tx.driver.execute(_INSERT)
            yield

        return HotOp(run)

    def _rows(self, db: Database) -> int:
        count: int = db.store.read(
            lambda c: c.execute(sa.text("SELECT count(*) FROM probe")).scalar_one()
        )
        return count

    def test_a_deadlock_victim_runs_again_and_commits_once(self, database: Database) -> None:
        """Acknowledged after the second run; the first run's insert was rolled back."""
        op, runs = self._insert_then_deadlock(times=1, kind="core")
        assert database.store.write(op, 10) == 2
        assert len(runs) == 2
        assert self._rows(database) == 1
        stats = database.store.writer.stats
        assert (stats.retried_batches, stats.failed_batches) == (1, 0)

    def test_a_batch_that_keeps_deadlocking_is_refused_with_nothing_stored(
        self, database: Database
    ) -> None:
        """Three runs, then StoreUnavailable naming the deadlock; not one row stored."""
        op, runs = self._insert_then_deadlock(times=99, kind="core")
        with pytest.raises(StoreUnavailable, match="victim"):
            database.store.write(op, 10)
        assert len(runs) == 3
        assert self._rows(database) == 0
        stats = database.store.writer.stats
        assert (stats.retried_batches, stats.failed_batches) == (2, 1)

    def test_a_pipelined_deadlock_victim_runs_again_and_commits_once(
        self, database: Database
    ) -> None:
        """A pipelined batch of hot operations the server rolled back runs again, whole.

        Both operations of the batch are acknowledged after its second run, and each
        row is stored once.
        """
        writer = database.store.writer
        op, runs = self._insert_then_deadlock(times=1, kind="hot")
        pipelined: list[bool] = []
        gate, held = hold_writer(writer)
        victim, companion = queue_in_order(writer, [op, self._hot_insert(pipelined)])
        gate.release.set()
        held.result(WAIT)
        assert (victim.result(WAIT), companion.result(WAIT)) == (2, None)
        assert len(runs) == 2
        assert pipelined == [True, True]
        assert self._rows(database) == 2
        assert (writer.stats.retried_batches, writer.stats.failed_batches) == (1, 0)

    def test_a_pipelined_batch_that_keeps_deadlocking_is_refused_whole(
        self, database: Database
    ) -> None:
        """Three runs, then every operation of the batch fails; not one row stored.

        The next batch commits (on a new connection).
        """
        writer = database.store.writer
        op, runs = self._insert_then_deadlock(times=99, kind="hot")
        pipelined: list[bool] = []
        gate, held = hold_writer(writer)
        batch = queue_in_order(writer, [op, self._hot_insert(pipelined)])
        gate.release.set()
        held.result(WAIT)
        for future in batch:
            with pytest.raises(StoreUnavailable, match="victim"):
                future.result(WAIT)
        assert len(runs) == 3
        assert self._rows(database) == 0
        assert (writer.stats.retried_batches, writer.stats.failed_batches) == (2, 1)
        assert database.store.write(self._hot_insert(pipelined), 10) is None
        assert self._rows(database) == 1

    def test_a_write_after_the_server_dropped_the_connection_commits_once(
        self, database: Database, pg_url: str
    ) -> None:
        """The writer's connection killed between batches: the next write is not refused."""
        writer = database.store.writer
        pid = database.store.write(lambda c: c.exec_driver_sql("SELECT pg_backend_pid()").scalar())
        with psycopg.connect(pg_dsn(pg_url), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert database.store.write(self._hot_insert([]), 10) is None
        assert self._rows(database) == 1
        assert writer.stats.failed_batches == 0

    def test_other_errors_are_not_retried(self, database: Database) -> None:
        """A failure that is not a rollback-for-retry fails the batch on its first run."""
        runs: list[int] = []

        def op(connection: sa.Connection) -> None:
            runs.append(1)
            connection.execute(sa.text("INSERT INTO no_such_table VALUES (1)"))

        with pytest.raises(StoreUnavailable):
            database.store.write(op, 10)
        assert len(runs) == 1
        assert database.store.writer.stats.retried_batches == 0
