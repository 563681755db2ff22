"""Apply the alembic migrations that define the schema, and check a database's against the code.

The policy for rolling deploys: migrations only add (a table, a nullable column, an
index); what a release stops using is removed a release later. So the code of the release
before a schema keeps working against it while a deploy rolls. The ``store_meta`` row
``compatible_from`` says which code revision (the head revision a release was built with)
is the oldest that may still run: a process whose code is older refuses to start
(:class:`SchemaTooNew`). A database behind the code is upgraded on open, or, with
``auto_migrate=False``, refused (:class:`SchemaOutdated`: run ``sessions db upgrade``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, select, text

from persistence._errors import SchemaOutdated, SchemaTooNew
from persistence._tables import store_meta

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every process sharing the database.
_PG_MIGRATION_LOCK = 0x5E5510


def alembic_config() -> Config:
    """The alembic configuration of the store (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@functools.cache
def head_revision() -> str | None:
    """The newest revision the migrations define (read once: they ship with the code)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (``None`` for a fresh database)."""
    return MigrationContext.configure(connection).get_current_revision()


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision this code's migrations define (all at or before its head)."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return frozenset(script.revision for script in scripts.walk_revisions())


def check_schema(connection: Connection, *, upgrade_allowed: bool) -> bool:
    """Whether this code may run against the database's schema; ``True`` if it must upgrade.

    Raises:
        SchemaTooNew: the schema is newer than the code, beyond its ``compatible_from``.
        SchemaOutdated: the schema is older than the code and ``upgrade_allowed`` is off.
    """
    current = current_revision(connection)
    head = head_revision()
    if current == head:
        return False
    known = known_revisions()
    if current is None or current in known:
        if not upgrade_allowed:
            raise SchemaOutdated(current, head)
        return True
    # A revision this code does not know: a newer release migrated the database.
    row = connection.execute(
        select(store_meta.c.value).where(store_meta.c.key == "compatible_from")
    ).first()
    compatible_from = None if row is None else row[0]
    if compatible_from is None or compatible_from not in known:
        raise SchemaTooNew(current, head, compatible_from)
    return False


def _upgrade(connection: Connection, revision: str) -> None:
    if revision == "head" and not check_schema(connection, upgrade_allowed=True):
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
