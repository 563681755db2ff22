"""Expiry driven by the injected clock: sessions past their TTL, approvals, connections."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from actors import ManualClock, SessionManager
from tests.conftest import ManagerFactory, history


class TestSessionTTL:
    """An active session idle for longer than ``session_ttl`` is reaped by the sweep."""

    def test_idle_session_expires_and_its_actor_stops(
        self, manager: SessionManager, clock: ManualClock
    ) -> None:
        """The status flips to expired AND the live actor is stopped."""
        session_id = manager.create_session("copilot", {})
        manager.save_session_state(session_id, history(2), {}, "planning")
        assert session_id in manager.live_sessions()
        clock.advance(hours=23, minutes=59)
        assert manager.sweep()["sessions_expired"] == 0
        clock.advance(minutes=2)
        with capture_logs() as logs:
            counts = manager.sweep()
        assert counts["sessions_expired"] == 1
        assert manager.info(session_id)["status"] == "expired"
        assert session_id not in manager.live_sessions()
        assert any(e["event"] == "session.expired" and e["session_id"] == session_id for e in logs)
        assert manager.save_session_state(session_id, history(4), {}, "execution") is False

    def test_each_save_extends_the_ttl(self, manager: SessionManager, clock: ManualClock) -> None:
        """Activity counts from the last save, not from creation."""
        session_id = manager.create_session("copilot", {})
        for _ in range(3):
            clock.advance(hours=20)
            assert manager.save_session_state(session_id, history(2), {}, "planning")
            assert manager.sweep()["sessions_expired"] == 0
        assert manager.info(session_id)["status"] == "active"

    def test_suspended_and_completed_sessions_do_not_expire(
        self, manager: SessionManager, clock: ManualClock
    ) -> None:
        """Only active sessions are reaped, as in the seed."""
        suspended = manager.create_session("copilot", {})
        manager.suspend(suspended)
        completed = manager.create_session("copilot", {})
        manager.complete(completed)
        clock.advance(days=30)
        assert manager.sweep()["sessions_expired"] == 0
        assert manager.info(suspended)["status"] == "suspended"
        assert manager.info(completed)["status"] == "completed"

    def test_ttl_is_configurable(self, make_manager: ManagerFactory, clock: ManualClock) -> None:
        """session_ttl sets the idle limit."""
        manager = make_manager(session_ttl=timedelta(minutes=5))
        session_id = manager.create_session("copilot", {})
        clock.advance(minutes=6)
        assert manager.sweep()["sessions_expired"] == 1
        assert manager.info(session_id)["status"] == "expired"

    def test_expiry_is_seen_by_a_sweep_of_a_non_owner(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """Reaping is set-based in the database: any manager's sweep expires any session."""
        owner, other = make_manager(), make_manager()
        session_id = owner.create_session("copilot", {})
        clock.advance(hours=25)
        assert other.sweep()["sessions_expired"] == 1
        assert owner.save_session_state(session_id, history(2), {}, "late") is False
        assert owner.info(session_id)["status"] == "expired"


class TestApprovalExpiry:
    """Pending approvals past their deadline expire; late answers change nothing."""

    def test_pending_approval_expires(self, manager: SessionManager, clock: ManualClock) -> None:
        """A request with a timeout expires at the sweep after its deadline."""
        session_id = manager.create_session("copilot", {})
        approval_id = manager.request_approval(session_id, "plan", {"plan": [1, 2]}, timeout=60)
        clock.advance(seconds=59)
        assert manager.sweep()["approvals_expired"] == 0
        clock.advance(seconds=2)
        assert manager.sweep()["approvals_expired"] == 1
        approval = manager.get_approval(approval_id)
        assert approval is not None
        assert approval["status"] == "expired"
        assert manager.resolve_approval(approval_id, "approved") is False
        assert manager.list_pending_approvals(session_id) == []

    def test_answer_after_deadline_is_refused_even_before_the_sweep(
        self, manager: SessionManager, clock: ManualClock
    ) -> None:
        """The deadline holds by itself, and reads as expired; the sweep only records it."""
        session_id = manager.create_session("copilot", {})
        approval_id = manager.request_approval(session_id, "tool", {}, timeout=timedelta(minutes=1))
        clock.advance(minutes=2)
        assert manager.resolve_approval(approval_id, "approved") is False
        approval = manager.get_approval(approval_id)
        assert approval is not None
        assert approval["status"] == "expired"

    def test_answer_in_time_is_kept(self, manager: SessionManager, clock: ManualClock) -> None:
        """A resolved approval keeps its resolution and result; the sweep leaves it alone."""
        session_id = manager.create_session("copilot", {})
        approval_id = manager.request_approval(session_id, "plan", {"steps": 3}, timeout=60)
        assert manager.list_pending_approvals(session_id)[0]["approval_id"] == approval_id
        assert manager.resolve_approval(approval_id, "modified", {"steps": 2}) is True
        assert manager.resolve_approval(approval_id, "approved") is False
        clock.advance(hours=1)
        assert manager.sweep()["approvals_expired"] == 0
        approval = manager.get_approval(approval_id)
        assert approval is not None
        assert (approval["status"], approval["resolution"], approval["result"]) == (
            "resolved",
            "modified",
            {"steps": 2},
        )

    def test_approvals_of_a_completed_session_are_cancelled(self, manager: SessionManager) -> None:
        """Completing a session closes what it was waiting for."""
        session_id = manager.create_session("copilot", {})
        approval_id = manager.request_approval(session_id, "plan", {})
        manager.complete(session_id)
        approval = manager.get_approval(approval_id)
        assert approval is not None
        assert approval["status"] == "cancelled"


class TestConnectionExpiry:
    """Connections without a heartbeat for 5 minutes are removed."""

    def test_stale_connection_is_removed(self, manager: SessionManager, clock: ManualClock) -> None:
        """Heartbeats keep a connection; silence for 5 minutes removes it."""
        session_id = manager.create_session("copilot", {})
        manager.register_connection("task-1", session_id)
        manager.register_connection("task-2", session_id)
        clock.advance(minutes=4)
        assert manager.heartbeat("task-1") is True
        clock.advance(minutes=2)
        assert manager.sweep()["connections_removed"] == 1
        assert [c["task_id"] for c in manager.list_connections(session_id)] == ["task-1"]
        assert manager.heartbeat("task-2") is False
        assert manager.unregister_connection("task-1") is True
        assert manager.unregister_connection("task-1") is False


class TestPassivation:
    """Idle actors are passivated; at most ``max_live`` stay in memory."""

    def test_idle_actor_is_passivated_and_rehydrates_on_use(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """Passivation drops the actor, not the session; the next call brings it back."""
        manager = make_manager(idle_timeout=timedelta(minutes=10))
        session_id = manager.create_session("copilot", {})
        manager.save_session_state(session_id, history(3), {"a": 1}, "planning", 1)
        clock.advance(minutes=11)
        assert manager.sweep()["passivated"] == 1
        assert manager.live_sessions() == []
        assert manager.info(session_id)["owner"] is None
        assert manager.save_session_state(session_id, history(5), {"a": 2}, "execution", 2)
        assert manager.live_sessions() == [session_id]
        state = manager.load(session_id)
        assert state["conversation_history"] == history(5)
        assert manager.stats()["rehydrations"] == 1

    @pytest.mark.parametrize("max_live", [1, 3])
    def test_at_most_max_live_actors(self, make_manager: ManagerFactory, max_live: int) -> None:
        """The least recently used actor is passivated beyond max_live."""
        manager = make_manager(max_live=max_live)
        ids = [manager.create_session("copilot", {}) for _ in range(max_live + 2)]
        assert manager.live_sessions() == ids[-max_live:]
        for session_id in ids:
            assert manager.save_session_state(session_id, history(2), {}, "p")
        assert len(manager.live_sessions()) == max_live
        for session_id in ids:
            assert manager.load(session_id)["conversation_history"] == history(2)


class TestPeriodicCleanup:
    """start() runs the sweep every cleanup_interval; stop() ends it."""

    def test_started_manager_sweeps_by_itself(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """Without calling sweep(), an expired session is reaped by the periodic tick."""
        manager = make_manager(cleanup_interval=0.05)
        session_id = manager.create_session("copilot", {})
        asyncio.run(manager.start())
        clock.advance(hours=25)
        deadline = time.monotonic() + 5
        while manager.info(session_id)["status"] != "expired" and time.monotonic() < deadline:
            time.sleep(0.02)  # waiting for the ticker thread, not for expiry
        assert manager.info(session_id)["status"] == "expired"
        asyncio.run(manager.stop())
        sweeps = manager.stats()["sweeps"]
        time.sleep(0.2)
        assert manager.stats()["sweeps"] == sweeps
