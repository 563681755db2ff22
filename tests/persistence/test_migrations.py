"""The alembic migrations are the schema's source, and they agree with the models."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from persistence import Database, downgrade_op, head_revision
from persistence._models import Base


def _sync_url(path: Path) -> str:
    return f"sqlite:///{path}"


class TestMigrations:
    """Opening a database migrates it; the result is exactly the models."""

    def test_fresh_database_is_migrated_to_head(self, tmp_path: Path) -> None:
        """A new file gets every table and the head revision."""
        db = Database.open(_sync_url(tmp_path / "m.db"))
        try:
            assert db.store.schema_revision() == head_revision()
        finally:
            db.close()
        tables = set(sa.inspect(sa.create_engine(_sync_url(tmp_path / "m.db"))).get_table_names())
        assert tables >= {
            "sessions",
            "session_states",
            "session_messages",
            "approval_requests",
            "active_connections",
            "alembic_version",
        }

    def test_migrations_and_models_agree(self, tmp_path: Path) -> None:
        """Autogenerate finds no difference between the migrated schema and the models."""
        Database.open(_sync_url(tmp_path / "m.db")).close()
        engine = sa.create_engine(_sync_url(tmp_path / "m.db"))
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []

    def test_downgrade_to_base_and_upgrade_again(self, tmp_path: Path) -> None:
        """The migrations are reversible; reopening upgrades again."""
        path = tmp_path / "m.db"
        db = Database.open(_sync_url(path))
        db.store.downgrade("base")
        assert db.store.schema_revision() is None
        db.close()
        engine = sa.create_engine(_sync_url(path))
        assert "sessions" not in sa.inspect(engine).get_table_names()
        engine.dispose()
        db = Database.open(_sync_url(path))
        try:
            assert db.store.schema_revision() == head_revision()
        finally:
            db.close()

    def test_revisions_step_by_step_through_the_writer(self, tmp_path: Path) -> None:
        """migrate/downgrade to a named revision; a migration op is a write like any other."""
        db = Database.open(_sync_url(tmp_path / "m.db"))
        try:
            db.store.downgrade("0001")
            assert db.store.schema_revision() == "0001"
            db.store.migrate("0002")
            assert db.store.schema_revision() == "0002"
            db.store.write(downgrade_op("base"))
            assert db.store.schema_revision() is None
            db.store.migrate()
            assert db.store.schema_revision() == head_revision()
        finally:
            db.close()

    def test_sqlite_runs_in_wal_mode(self, tmp_path: Path) -> None:
        """The embedded default uses WAL (readers never block the writer)."""
        path = tmp_path / "m.db"
        db = Database.open(_sync_url(path))
        try:
            engine = sa.create_engine(_sync_url(path))
            with engine.connect() as connection:
                mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            engine.dispose()
            assert mode == "wal"
        finally:
            db.close()
