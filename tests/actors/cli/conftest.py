"""The real ``sessions`` process on a fresh database, and what it leaves in the tables."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from actors import ManualClock
from persistence import Database
from tests.conftest import ManagerFactory, history

#: The console script pip installed next to this interpreter.
SCRIPT = Path(sys.executable).parent / "sessions"
TABLES = ("sessions", "session_states", "session_messages", "approval_requests")

Sessions = Callable[..., subprocess.CompletedProcess[str]]


def sessions(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``sessions --database-url URL ARGS`` as a real process (60 s at most)."""
    return subprocess.run(
        [str(SCRIPT), "--database-url", url, *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )  # fmt: skip


def ok_json(url: str, *args: str) -> Any:
    """Run a subcommand with ``--json``; it must exit 0; its parsed output."""
    done = sessions(url, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The process's stderr: exactly one ``Error:`` line, without SQL text or links."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: "), done.stderr
    for noise in ("Traceback", "[SQL", "sqlalche.me", "Background on this error"):
        assert noise not in done.stderr
    return lines[0]


def engine_url(url: str) -> str:
    """A SQLAlchemy URL with a driver this environment has (psycopg 3 for PostgreSQL)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return "sqlite:///" + url.split(":///", 1)[1]


def execute(url: str, *statements: str) -> None:
    """Run SQL on the database directly, in one transaction (to damage it on purpose)."""
    engine = create_engine(engine_url(url))
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def row_counts(url: str) -> dict[str, int]:
    """Rows per table, read directly."""
    engine = create_engine(engine_url(url))
    try:
        with engine.connect() as connection:
            return {
                table: int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
                for table in TABLES
            }
    finally:
        engine.dispose()


def bulk_finished(path: Path, count: int, message_bytes: int = 1000) -> None:
    """Insert ``count`` completed sessions of 2024 with three messages each (SQLite file)."""
    connection = sqlite3.connect(path)
    with connection:
        for index in range(count):
            sid = f"s-{index:05d}"
            connection.execute(
                "INSERT INTO sessions VALUES (?, 'u', ?, '2024-01-01 00:00:00', NULL,"
                " 'completed', '{}', NULL)", (sid, sid),
            )  # fmt: skip
            connection.execute(
                "INSERT INTO session_states VALUES (?, 'task', '{}', NULL, 'done', NULL,"
                " 'completed', '2024-01-01 00:00:00', '2024-01-01 00:00:00', NULL, 2, 3, NULL,"
                " 1, NULL)", (sid,),
            )  # fmt: skip
            for seq in range(3):
                connection.execute(
                    "INSERT INTO session_messages VALUES (?, ?, 'user', NULL, ?, NULL, NULL)",
                    (sid, seq, "x" * message_bytes),
                )
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def upgraded(url: str) -> str:
    """``url`` once its database is at this version's schema (in this process: faster)."""
    Database.open(url).close()
    return url


def exported(url: str, session_id: str) -> dict[str, Any]:
    """What ``sessions export`` writes for a session (read in this process)."""
    db = Database.open(url, migrate=False)
    try:
        document = db.store.export_session(session_id)
    finally:
        db.close()
    assert document is not None
    return document


@pytest.fixture
def url(any_db_url: str) -> str:
    """A fresh database (SQLite, then PostgreSQL) at this version's schema."""
    return upgraded(any_db_url)


@pytest.fixture
def sqlite_url(db_url: str) -> str:
    """A fresh SQLite database at this version's schema."""
    return upgraded(db_url)


@pytest.fixture
def postgres_url(pg_url: str) -> str:
    """A fresh PostgreSQL database at this version's schema."""
    return upgraded(pg_url)


@pytest.fixture
def make_on(make_manager: ManagerFactory) -> Callable[[str], list[str]]:
    """``make_on(url)``: three sessions by a manager that is closed again (no live lease).

    The second has a pending approval request, the third is completed.
    """

    def make(url: str) -> list[str]:
        manager = make_manager(database_url=url, clock=ManualClock(datetime.now(UTC)))
        ids = []
        for index in range(3):
            session_id = manager.create_session("copilot", {"n": index}, user_id="alice")
            manager.save_session_state(session_id, history(index + 2), {"n": index}, "work", 1)
            ids.append(session_id)
        manager.request_approval(ids[1], "plan", {"steps": 2})
        manager.complete(ids[2])
        manager.close()
        return ids

    return make
