"""Several managers on one database: one sweeper at a time, in batches; retention."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import select

from actors import InvalidArgument, ManualClock, SessionManager, SessionNotFound
from persistence import Database, NewSession, Store, _handoff
from persistence._tables import handoffs
from tests.conftest import ManagerFactory, history

TIMEOUT = 10.0


def _add_sessions(store: Store, count: int, now: datetime, ttl: timedelta) -> list[str]:
    """``count`` unowned active sessions created at ``now``, straight in the store."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for session_id in ids:
        store.create_session(
            NewSession(session_id, None, "s", "copilot", "{}", now, now + ttl, None, None)
        )
    return ids


def _periodic_sweeps(managers: list[SessionManager]) -> list[dict[str, int]]:
    """The ticker's sweep of every manager at once, from one thread each."""
    start = threading.Barrier(len(managers))

    def sweep(manager: SessionManager) -> dict[str, int]:
        start.wait(TIMEOUT)
        result: dict[str, int] = manager._core.supervisor.sweep(periodic=True).get(timeout=TIMEOUT)
        return result

    with ThreadPoolExecutor(len(managers)) as pool:
        return list(pool.map(sweep, managers))


def _requested(db: Database) -> list[str]:
    """The sessions that have a hand-off request waiting."""
    query = select(handoffs.c.session_id).order_by(handoffs.c.session_id)
    rows: list[str] = db.store.write(lambda connection: list(connection.scalars(query)))
    return rows


class TestOneSweeper:
    """N managers on one database cost one expiry sweep per interval, not N."""

    def test_four_managers_ticking_together_sweep_once(
        self, any_db_url: str, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """One periodic sweep runs; the three others skip, and nothing is expired twice."""
        managers = [make_manager(database_url=any_db_url, cleanup_interval=60.0) for _ in range(4)]
        store = managers[0].database.store
        ids = _add_sessions(store, 40, clock(), timedelta(hours=24))
        clock.advance(hours=25)
        results = _periodic_sweeps(managers)
        assert sorted(r["sessions_expired"] for r in results) == [0, 0, 0, 40]
        skipped = [m.stats()["sweeps_skipped"] for m in managers]
        assert sorted(skipped) == [0, 1, 1, 1]
        assert {store.state(sid).status for sid in ids} == {"expired"}  # type: ignore[union-attr]
        # Within the interval every tick leaves the database alone, the sweeper's too.
        clock.advance(seconds=30)
        _add_sessions(store, 5, clock() - timedelta(hours=25), timedelta(hours=24))
        assert [r["sessions_expired"] for r in _periodic_sweeps(managers)] == [0, 0, 0, 0]
        assert sum(m.stats()["sweeps_skipped"] for m in managers) == 7
        # Once the interval is over, one of them sweeps again.
        clock.advance(seconds=31)
        assert sorted(r["sessions_expired"] for r in _periodic_sweeps(managers)) == [0, 0, 0, 5]

    def test_a_sweep_asked_for_always_runs_and_counts_as_the_fleets(
        self, any_db_url: str, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """``sweep()`` is never skipped, and the ticks within the interval after it skip."""
        first = make_manager(database_url=any_db_url, cleanup_interval=60.0)
        second = make_manager(database_url=any_db_url, cleanup_interval=60.0)
        _add_sessions(first.database.store, 3, clock(), timedelta(hours=1))
        clock.advance(hours=2)
        assert first.sweep()["sessions_expired"] == 3
        _add_sessions(first.database.store, 2, clock() - timedelta(hours=2), timedelta(hours=1))
        assert second.sweep()["sessions_expired"] == 2  # asked for: runs right after
        assert [r["sessions_expired"] for r in _periodic_sweeps([first, second])] == [0, 0]
        assert first.stats()["sweeps_skipped"] == second.stats()["sweeps_skipped"] == 1

    def test_a_lone_manager_sweeps_on_every_interval(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """Its own previous sweep, one interval ago, never makes a manager skip its turn."""
        manager = make_manager(cleanup_interval=60.0)
        for _ in range(3):
            _add_sessions(
                manager.database.store, 1, clock() - timedelta(hours=2), timedelta(hours=1)
            )
            assert _periodic_sweeps([manager])[0]["sessions_expired"] == 1
            clock.advance(seconds=60)
        assert manager.stats()["sweeps_skipped"] == 0


class TestBatches:
    """The sweep works in short transactions of at most ``batch`` rows of each kind."""

    def test_a_backlog_is_swept_in_batches(self, any_db_url: str, clock: ManualClock) -> None:
        """25 sessions, 25 approvals' worth of rows and batch=10: three transactions."""
        db = Database.open(any_db_url)
        try:
            store = db.store
            ids = _add_sessions(store, 25, clock(), timedelta(hours=1))
            before = store.writer.stats.batches
            counts = store.sweep(clock() + timedelta(hours=2), clock(), batch=10)
            assert sorted(counts.expired_sessions) == sorted(ids)
            assert store.writer.stats.batches - before == 3  # 10 + 10 + 5
            assert not counts.skipped
        finally:
            db.close()

    def test_postgresql_a_row_held_by_another_transaction_does_not_stall_the_sweep(
        self, pg_url: str, clock: ManualClock
    ) -> None:
        """The locked session is skipped (the rest expire at once) and swept next time."""
        db = Database.open(pg_url)
        try:
            store = db.store
            held, *others = _add_sessions(store, 4, clock(), timedelta(hours=1))
            later = clock() + timedelta(hours=2)
            with psycopg.connect(pg_url) as peer:
                peer.execute(
                    "SELECT 1 FROM session_states WHERE session_id = %s FOR UPDATE", [held]
                )
                done: dict[str, Any] = {}
                sweeper = threading.Thread(
                    target=lambda: done.update(counts=store.sweep(later, clock())), daemon=True
                )
                sweeper.start()
                sweeper.join(TIMEOUT)
                assert not sweeper.is_alive(), "the sweep waited for a row another transaction held"
                assert sorted(done["counts"].expired_sessions) == sorted(others)
                peer.rollback()
            assert store.sweep(later, clock()).expired_sessions == [held]
        finally:
            db.close()


class TestStaleHandoffRequests:
    """Hand-off requests nobody will answer (a dead owner) do not pile up."""

    def test_the_sweep_drops_requests_older_than_ten_minutes(
        self, any_db_url: str, clock: ManualClock
    ) -> None:
        """A request to a dead owner goes once 10 minutes old; a fresh one stays for its owner."""
        db = Database.open(any_db_url)
        try:
            store = db.store
            old, fresh = _add_sessions(store, 2, clock(), timedelta(hours=24))
            store.write(_handoff.request_op(old, "dead-owner", "requester", clock()))
            clock.advance(minutes=9)
            store.write(_handoff.request_op(fresh, "live-owner", "requester", clock()))
            store.sweep(clock(), clock() - timedelta(minutes=5))
            assert _requested(db) == sorted([old, fresh])  # 9 minutes: still kept
            clock.advance(minutes=2)
            store.sweep(clock(), clock() - timedelta(minutes=5))
            assert _requested(db) == [fresh]
            assert store.write(_handoff.take_op("live-owner")) == [(fresh, "requester")]
        finally:
            db.close()


class TestRetention:
    """``retention=``: completed and expired sessions older than it are purged by the sweep."""

    def test_old_completed_and_expired_sessions_are_purged(
        self, any_db_url: str, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """Counted in ``sweep()`` and ``stats()``; live and younger sessions stay."""
        manager = make_manager(database_url=any_db_url, retention=timedelta(days=7))
        completed = manager.create_session("copilot", {})
        manager.save_session_state(completed, history(3), {"k": 1}, "done")
        manager.complete(completed)
        expired = manager.create_session("copilot", {})
        manager.expire(expired)
        suspended = manager.create_session("copilot", {})
        manager.suspend(suspended)
        clock.advance(days=6)
        young = manager.create_session("copilot", {})
        manager.complete(young)
        assert manager.sweep()["sessions_purged"] == 0
        clock.advance(days=2)  # completed/expired: 8 days old; young: 2 days
        counts = manager.sweep()
        assert counts["sessions_purged"] == 2
        for gone in (completed, expired):
            with pytest.raises(SessionNotFound):
                manager.load(gone)
            assert manager.database.store.history(gone) is None
        assert manager.info(suspended)["status"] == "suspended"
        assert manager.info(young)["status"] == "completed"
        assert manager.stats()["sessions_purged"] == 2
        clock.advance(days=6)
        assert manager.sweep()["sessions_purged"] == 1  # young is 8 days old now
        assert manager.stats()["sessions_purged"] == 3

    def test_retention_is_off_by_default(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """Without it completed sessions stay, however old (as before)."""
        manager = make_manager()
        session_id = manager.create_session("copilot", {})
        manager.complete(session_id)
        clock.advance(days=3650)
        assert manager.sweep()["sessions_purged"] == 0
        assert manager.info(session_id)["status"] == "completed"

    def test_a_backlog_is_purged_in_batches(self, any_db_url: str, clock: ManualClock) -> None:
        """23 old completed sessions, batch=10: three transactions, all purged."""
        db = Database.open(any_db_url)
        try:
            store = db.store
            _add_sessions(store, 23, clock(), timedelta(hours=1))
            store.sweep(clock() + timedelta(hours=2), clock())  # all expired now
            before = store.writer.stats.batches
            later = clock() + timedelta(days=30)
            counts = store.sweep(later, later, purge_before=later - timedelta(days=7), batch=10)
            assert counts.sessions_purged == 23
            assert store.writer.stats.batches - before == 3
            assert store.list_sessions(None, None, None, 100) == []
        finally:
            db.close()

    @pytest.mark.parametrize("value", [-1, 0, float("nan"), "7d", True, timedelta(0)])
    def test_a_bad_retention_is_refused(self, make_manager: ManagerFactory, value: Any) -> None:
        """Like every duration: seconds or a timedelta, positive and finite."""
        with pytest.raises(InvalidArgument, match="retention"):
            make_manager(retention=value)
