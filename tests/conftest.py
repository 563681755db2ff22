"""Shared fixtures: managers on a temporary SQLite file with an injected clock.

Every manager a test makes is closed after it, and every pykka actor is stopped (with a
timeout), so a failing test never leaves threads behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors import ManualClock, SessionManager, configure_logging, create_session_manager

# Every event, debug included, to stderr (pytest shows it for failing tests only).
configure_logging(level="DEBUG")

ManagerFactory = Callable[..., SessionManager]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh SQLite database file for this test."""
    return f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"


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
