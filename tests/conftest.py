"""Shared fixtures: managers on a temporary SQLite file with an injected clock.

Every manager a test makes is closed after it, and every pykka actor is stopped (with a
timeout), so a failing test never leaves threads behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pykka
import pytest

from actors import ManualClock, SessionManager, configure_logging, create_session_manager

# Every event, debug included, to stderr (pytest shows it for failing tests only).
configure_logging(level="DEBUG")

ManagerFactory = Callable[..., SessionManager]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh SQLite database file for this test."""
    return f"sqlite:///{tmp_path / 'sessions.db'}"


#: The PostgreSQL server the tests use (trust auth); its ``postgres`` database is only
#: used to create and drop one throwaway database per test.
PG_ADMIN_DSN = os.environ.get(
    "SESSIONS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _pg_admin(statement: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as connection:
        connection.execute(statement)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL admin DSN, once the server is known to answer.

    Outside CI a missing server skips the PostgreSQL tests; with ``CI=true`` it fails them,
    because CI must prove the PostgreSQL half, never skip it.
    """
    try:
        _pg_admin("SELECT 1")
    except (OSError, psycopg.Error) as error:
        message = f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {error}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI must run the PostgreSQL tests)")
        pytest.skip(message)
    return PG_ADMIN_DSN


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    name = f"ss_test_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    host = pg_server.split("@", 1)[1].rsplit("/", 1)[0]
    yield f"postgresql://postgres@{host}/{name}"
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a fresh SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def clock() -> ManualClock:
    """The injected clock: time only moves when the test advances it."""
    return ManualClock()


@pytest.fixture
def make_manager(db_url: str, clock: ManualClock) -> Iterator[ManagerFactory]:
    """Build managers on this test's database and clock; all are closed afterwards."""
    made: list[SessionManager] = []

    def make(**overrides: Any) -> SessionManager:
        options: dict[str, Any] = {
            "clock": clock,
            "session_ttl": timedelta(hours=24),
            "call_timeout": 10.0,
        }
        options.update(overrides)
        url = options.pop("database_url", db_url)
        manager = create_session_manager(url, **options)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()


@pytest.fixture
def manager(make_manager: ManagerFactory) -> SessionManager:
    """One manager on a fresh database."""
    return make_manager()


@pytest.fixture(autouse=True)
def _stop_every_actor() -> Iterator[None]:
    """No test leaves an actor (a non-daemon thread) running."""
    yield
    pykka.ActorRegistry.stop_all(block=True, timeout=5)


def history(count: int, start: int = 0) -> list[dict[str, Any]]:
    """``count`` alternating user/assistant messages."""
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"}
        for i in range(start, start + count)
    ]
