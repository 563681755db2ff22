"""Housekeeping runs from the manager's creation, without ``await manager.start()``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from actors import InvalidArgument, ManualClock
from tests.conftest import ManagerFactory, history

TICKER = "session-supervisor-ticker"


def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Wait (bounded) for the ticker thread to have done something: never for expiry."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _tickers() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == TICKER)


class TestWithoutStart:
    """A host that never calls start() (no event loop at all) still gets the sweep."""

    def test_an_idle_session_expires_by_itself(
        self, any_db_url: str, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """Past session_ttl (on the injected clock) the ticker's sweep expires the session."""
        manager = make_manager(database_url=any_db_url, cleanup_interval=0.05)
        session_id = manager.create_session("copilot", {})
        clock.advance(hours=25)
        assert _eventually(lambda: manager.info(session_id)["status"] == "expired")
        assert manager.stats()["sweeps"] >= 1

    def test_an_idle_actor_is_passivated_and_its_lease_released(
        self, any_db_url: str, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """Past idle_timeout the actor stops and its lease is released for other processes."""
        manager = make_manager(database_url=any_db_url, cleanup_interval=0.05)
        session_id = manager.create_session("copilot", {})
        assert manager.save_session_state(session_id, history(2), {}, "p")
        clock.advance(minutes=11)
        assert _eventually(lambda: manager.live_sessions() == [])
        assert _eventually(lambda: manager.info(session_id)["owner"] is None)
        assert manager.load(session_id)["conversation_history"] == history(2)

    def test_an_approval_deadline_is_applied_by_the_sweep(
        self, any_db_url: str, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """The stored request turns expired without anybody calling sweep()."""
        manager = make_manager(database_url=any_db_url, cleanup_interval=0.05)
        session_id = manager.create_session("copilot", {})
        approval_id = manager.request_approval(session_id, "plan", {}, timeout=60)
        clock.advance(seconds=61)
        store = manager.database.store

        def stored_status() -> str | None:
            record = store.get_approval(approval_id)
            return None if record is None else record.status

        assert _eventually(lambda: stored_status() == "expired")


class TestStartStop:
    """start()/stop() keep their meaning; autostart=False leaves the ticking to the test."""

    def test_autostart_false_runs_nothing_until_start(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """No thread before start(); sweep() by hand works; start() then sweeps by itself."""
        before = _tickers()
        manager = make_manager(autostart=False, cleanup_interval=0.05)
        assert _tickers() == before
        session_id = manager.create_session("copilot", {})
        clock.advance(hours=25)
        manager._core.housekeeping.tick()  # renews leases; no sweep before start()
        assert manager.info(session_id)["status"] == "active"
        assert manager.sweep()["sessions_expired"] == 1
        other = manager.create_session("copilot", {})
        clock.advance(hours=25)
        asyncio.run(manager.start())
        assert _tickers() == before + 1
        assert _eventually(lambda: manager.info(other)["status"] == "expired")

    def test_start_twice_keeps_one_ticker(self, make_manager: ManagerFactory) -> None:
        """start() on a running manager (the seed's callers do call it) adds no thread."""
        before = _tickers()
        manager = make_manager(cleanup_interval=0.05)
        assert _tickers() == before + 1

        async def restart() -> None:
            await manager.start()
            await manager.start()
            await manager.stop()
            await manager.start()

        asyncio.run(restart())
        assert _tickers() == before + 1
        assert manager._core.housekeeping.sweeping

    def test_stop_pauses_the_sweep(self, make_manager: ManagerFactory, clock: ManualClock) -> None:
        """After stop() an expired session stays active until sweep() or start()."""
        manager = make_manager(cleanup_interval=0.05)
        asyncio.run(manager.stop())
        session_id = manager.create_session("copilot", {})
        clock.advance(hours=25)
        sweeps = manager.stats()["sweeps"]
        for _ in range(3):
            manager._core.housekeeping.tick()
        assert manager.stats()["sweeps"] == sweeps
        assert manager.info(session_id)["status"] == "active"

    def test_close_stops_the_ticker_promptly(self, make_manager: ManagerFactory) -> None:
        """With an hour between ticks, close() does not wait for the next one."""
        manager = make_manager(cleanup_interval=3600, lease_ttl=timedelta(hours=3))
        thread = manager._core.housekeeping.ticker._thread
        assert thread.is_alive()
        started = time.monotonic()
        manager.close()
        assert time.monotonic() - started < 3.0
        assert not thread.is_alive()

    @pytest.mark.parametrize("value", ["yes", 1, None])
    def test_autostart_must_be_a_bool(self, make_manager: ManagerFactory, value: object) -> None:
        """Like every setting, checked at construction."""
        with pytest.raises(InvalidArgument, match="autostart"):
            make_manager(autostart=value)
