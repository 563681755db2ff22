"""Supervision: a crashed session actor comes back from its checkpoint, with backoff, within limits.

Every delay is on the injected ManualClock: the tests advance it and run a sweep, never sleep.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

import actors._delta
import actors._session
from actors import ManagerClosed, ManualClock, SessionFailed, SessionManager
from tests.conftest import ManagerFactory, history
from tests.robustness._support import TIMEOUT, crash, live_refs, snapshot, wait_until

BACKOFF = timedelta(seconds=1)
BACKOFF_MAX = timedelta(seconds=4)


@pytest.fixture
def supervised(make_manager: ManagerFactory) -> SessionManager:
    """A manager that restarts up to 6 crashes a minute, backing off 1 s, 2 s, 4 s, 4 s ..."""
    return make_manager(
        max_restarts=6,
        restart_window=timedelta(minutes=1),
        restart_backoff=BACKOFF,
        restart_backoff_max=BACKOFF_MAX,
    )


def _failures(manager: SessionManager, session_id: str) -> dict[str, Any]:
    result: dict[str, Any] = manager._core.supervisor.failures(session_id).get(timeout=TIMEOUT)
    return result


def _saved_session(manager: SessionManager) -> str:
    session_id = manager.create_session("copilot", {"model": "m"})
    assert manager.save_session_state(session_id, history(4), {"step": 2}, "execution", 2)
    return session_id


class TestRestart:
    """An exception inside a session actor restarts it from its last checkpoint."""

    def test_first_crash_is_restarted_at_once_from_the_checkpoint(
        self, supervised: SessionManager
    ) -> None:
        """Without anyone asking, a new actor holds the last checkpoint after one crash."""
        session_id = _saved_session(supervised)
        before = snapshot(supervised, session_id)
        victim = crash(session_id)
        wait_until(lambda: [r for r in live_refs(session_id) if r is not victim] != [])
        live = supervised.live(session_id)
        assert (live.version, live.message_count) == (before["state"]["version"], 4)
        assert (live.current_phase, live.current_step) == ("execution", 2)
        assert snapshot(supervised, session_id)["state"] == before["state"]
        assert supervised.stats()["restarts"] == 1

    def test_crash_after_the_commit_leaves_actor_and_database_agreeing(
        self, supervised: SessionManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A save whose actor fails after its commit: the restarted actor reloads that commit.

        The typed API raises the actor's error; the seed façade returns False (and logs it).
        """
        session_id = _saved_session(supervised)
        real = actors._delta.sample_positions  # type: ignore[attr-defined]  # the name patched below
        calls = {"n": 0}

        def fail_once(count: int) -> list[int]:
            calls["n"] += 1
            if calls["n"] == 1:
                msg = "injected failure after the commit"
                raise RuntimeError(msg)
            return real(count)

        monkeypatch.setattr(actors._delta, "sample_positions", fail_once)
        with pytest.raises(RuntimeError, match="injected"):
            supervised.checkpoint(session_id, history(6), {"step": 3}, "review", 3)
        calls["n"] = 0
        with capture_logs() as logs:  # the seed façade returns False on any error, as the seed
            assert not supervised.save_session_state(session_id, history(7), {"s": 3}, "r", 3)
        assert any(e["event"] == "session.save_failed" for e in logs)
        stored = supervised.load(session_id)
        live = supervised.live(session_id)
        assert (live.version, live.message_count) == (
            stored["version"],
            len(stored["conversation_history"]),
        )
        assert (live.current_phase, live.current_step) == (
            stored["current_phase"],
            stored["current_step"],
        )
        assert supervised.save_session_state(session_id, history(8), {"step": 4}, "done", 4)
        final = supervised.load(session_id)
        assert final["conversation_history"] == history(8)
        assert final["version"] == live.version + 1


class TestBackoff:
    """Repeated crashes are restarted later and later, on the injected clock."""

    def test_delay_doubles_up_to_the_cap(
        self, supervised: SessionManager, clock: ManualClock
    ) -> None:
        """Crash 2 waits 1 s, crash 3 2 s, crash 4 and 5 4 s (the cap); sweeps restart them."""
        session_id = _saved_session(supervised)
        crash(session_id)
        wait_until(lambda: len(live_refs(session_id)) == 1)
        for expected in (1, 2, 4, 4):
            supervised.live(session_id)
            crash(session_id)
            pending = _failures(supervised, session_id)
            assert pending["restart_at"] == clock() + timedelta(seconds=expected)
            assert session_id not in supervised.live_sessions()
            clock.advance(seconds=expected - 0.5)
            supervised.sweep()
            assert session_id not in supervised.live_sessions(), "restarted before its backoff"
            clock.advance(seconds=0.5)
            supervised.sweep()
            assert session_id in supervised.live_sessions()
        assert supervised.stats()["restarts"] == 5
        assert supervised.load(session_id)["context_variables"] == {"step": 2}

    def test_use_during_the_backoff_restarts_at_once(
        self, supervised: SessionManager, clock: ManualClock
    ) -> None:
        """A caller does not wait for the backoff: its request restarts the session now."""
        session_id = _saved_session(supervised)
        crash(session_id)
        supervised.live(session_id)
        crash(session_id)
        assert _failures(supervised, session_id)["restart_at"] is not None
        with capture_logs() as logs:
            assert supervised.save_session_state(session_id, history(6), {"step": 3}, "review", 3)
        assert {"event": "session.restarted", "session_id": session_id} | {
            "on_demand": True,
            "log_level": "warning",
        } in logs
        assert _failures(supervised, session_id)["restart_at"] is None
        clock.advance(seconds=10)
        supervised.sweep()
        assert len(live_refs(session_id)) == 1, "the due restart must not start a second actor"

    def test_a_session_failing_to_load_does_not_spin(
        self, supervised: SessionManager, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An actor that crashes on every rehydration is retried on the backoff, not in a loop."""
        session_id = _saved_session(supervised)

        def broken_load(self: Any, action: str = "open") -> Any:
            msg = "injected: the checkpoint cannot be loaded"
            raise RuntimeError(msg)

        monkeypatch.setattr(actors._session.SessionActor, "_loaded", broken_load)
        crash(session_id)  # crash 1: restarted at once, and its Warm load crashes (crash 2)
        wait_until(lambda: _failures(supervised, session_id)["restart_at"] is not None)
        assert _failures(supervised, session_id)["recent_crashes"] == 2
        for crashes, delay in ((3, 1), (4, 2), (5, 4), (6, 4)):
            clock.advance(seconds=delay)
            supervised.sweep()
            wait_until(lambda n=crashes: _failures(supervised, session_id)["recent_crashes"] == n)  # type: ignore[misc]
        assert _failures(supervised, session_id)["stopped"]
        assert supervised.stats()["crashes"] == 6


class TestCrashLoop:
    """N crashes within the window stop the restarts, are logged, and are reported on use."""

    def test_stopped_after_n_crashes_with_a_clear_error(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """The third crash in a minute stops it; use gets SessionFailed naming the way out."""
        manager = make_manager(max_restarts=3, restart_backoff=BACKOFF)
        session_id = _saved_session(manager)
        before = snapshot(manager, session_id)
        with capture_logs() as logs:
            for _ in range(3):
                manager.live(session_id)
                crash(session_id)
            manager.stats()  # the supervisor handled the last crash report
        assert any(
            e["event"] == "session.crash_loop" and e["session_id"] == session_id for e in logs
        )
        with pytest.raises(SessionFailed, match=r"reset_failures\(session_id\)") as failed:
            manager.checkpoint(session_id, history(6), {}, "x")
        assert (failed.value.session_id, failed.value.failures) == (session_id, 3)
        assert manager.save_session_state(session_id, history(6), {}, "x") is False
        assert manager.suspend_session(session_id) is False
        clock.advance(minutes=5)
        manager.sweep()
        assert session_id not in manager.live_sessions(), "a stopped session is not auto-restarted"
        assert snapshot(manager, session_id) == before

    def test_window_passing_lets_it_run_again(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """Once the crashes are older than the window, the session may be used again."""
        manager = make_manager(max_restarts=2, restart_window=timedelta(seconds=30))
        session_id = _saved_session(manager)
        for _ in range(2):
            manager.live(session_id)
            crash(session_id)
        with pytest.raises(SessionFailed):
            manager.live(session_id)
        clock.advance(seconds=30)
        assert manager.save_session_state(session_id, history(6), {"step": 3}, "review", 3)

    def test_reset_failures_lets_it_run_again(self, make_manager: ManagerFactory) -> None:
        """manager.reset_failures(session_id) is the documented way out."""
        manager = make_manager(max_restarts=1)
        session_id = _saved_session(manager)
        crash(session_id)
        with pytest.raises(SessionFailed):
            manager.live(session_id)
        manager.reset_failures(session_id)
        assert manager.live(session_id).message_count == 4

    def test_reset_failures_after_close_is_typed(self, make_manager: ManagerFactory) -> None:
        """On a closed manager reset_failures raises ManagerClosed, not a pykka error."""
        manager = make_manager()
        session_id = _saved_session(manager)
        manager.close()
        with pytest.raises(ManagerClosed):
            manager.reset_failures(session_id)

    def test_crashes_spread_wider_than_the_window_never_stop_it(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """Ten crashes, each more than a window apart, are all restarted."""
        manager = make_manager(max_restarts=2, restart_window=timedelta(seconds=10))
        session_id = _saved_session(manager)
        for _ in range(10):
            manager.live(session_id)
            crash(session_id)
            clock.advance(seconds=11)
        assert manager.live(session_id).message_count == 4
        assert manager.stats()["crashes"] == 10
