"""Apply the alembic migrations that define the schema."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every process sharing the database.
_PG_MIGRATION_LOCK = 0x5E5510


def alembic_config() -> Config:
    """The alembic configuration of the store (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    """The newest revision the migrations define."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (``None`` for a fresh database)."""
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection, revision: str) -> None:
    if revision == "head" and current_revision(connection) == head_revision():
        return
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _downgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


def upgrade_op(revision: str = "head") -> Callable[[Connection], None]:
    """A write operation that brings the database to ``revision``.

    Run it through the store's writer (one transaction; on PostgreSQL concurrent
    processes are serialised by an advisory lock, on SQLite by ``BEGIN IMMEDIATE``).
    """

    def op(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        _upgrade(connection, revision)

    return op


def downgrade_op(revision: str) -> Callable[[Connection], None]:
    """A write operation that takes the database back to ``revision`` (``"base"``: empty)."""

    def op(connection: Connection) -> None:
        _downgrade(connection, revision)

    return op
