"""What a manager acknowledged survives it: closing, a new process, a crashed actor."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pykka
import pytest
from structlog.testing import capture_logs

from actors import (
    ManualClock,
    SessionActor,
    SessionFailed,
    SessionManager,
    create_session_manager,
)
from tests.conftest import ManagerFactory, history

ROOT = Path(__file__).parents[2]


def _run_python(code: str, env_url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SESSIONS_DATABASE_URL": env_url, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class TestReopen:
    """A new manager (a restarted process) sees every acknowledged write."""

    def test_close_and_reopen_in_process(self, db_url: str, clock: ManualClock) -> None:
        """State saved before close() is loaded whole by a new manager on the same file."""
        first = create_session_manager(db_url, clock=clock)
        session_id = first.create_session("copilot", {"model": "m"}, user_id="u1", name="n")
        assert first.save_session_state(
            session_id, history(6), {"plan": [1, 2]}, "execution", 3, {"steps": ["a"]}
        )
        first.close()
        second = create_session_manager(db_url, clock=clock)
        try:
            state = second.load_session_state(session_id)
            assert state is not None
            assert state["conversation_history"] == history(6)
            assert state["context_variables"] == {"plan": [1, 2]}
            assert (state["current_phase"], state["current_step"]) == ("execution", 3)
            assert state["plan_data"] == {"steps": ["a"]}
            assert state["config"] == {"model": "m"}
            assert second.save_session_state(session_id, history(8), {}, "review", 4)
            assert second.load(session_id)["conversation_history"] == history(8)
        finally:
            second.close()

    def test_new_process_reloads_what_an_earlier_one_acknowledged(self, db_url: str) -> None:
        """A writer process exits without close(); a reader process finds every save."""
        writer = _run_python(
            """
            from actors import create_session_manager
            m = create_session_manager()
            for n in range(3):
                sid = m.create_session("copilot", {"n": n})
                for step in range(1, 6):
                    msgs = [{"role": "user", "content": f"{sid}:{i}"} for i in range(2 * step)]
                    assert m.save_session_state(sid, msgs, {"step": step}, f"phase-{step}", step)
                print(sid)
            """,
            db_url,
        )
        assert writer.returncode == 0, writer.stderr
        ids = writer.stdout.split()
        reader = _run_python(
            f"""
            from actors import create_session_manager
            m = create_session_manager()
            for sid in {ids!r}:
                s = m.load_session_state(sid)
                assert s["version"] == 6, s["version"]
                assert s["conversation_history"][-1]["content"] == f"{{sid}}:9"
                assert len(s["conversation_history"]) == 10
                assert (s["current_phase"], s["current_step"]) == ("phase-5", 5)
                assert s["context_variables"] == {{"step": 5}}
            m.close()
            print("ok")
            """,
            db_url,
        )
        assert reader.returncode == 0, reader.stderr
        assert reader.stdout.strip() == "ok"


class TestCrashRecovery:
    """A crashed session actor is restarted from its last checkpoint."""

    def test_crashed_actor_comes_back_from_its_checkpoint(self, manager: SessionManager) -> None:
        """An exception inside the actor stops it; the supervisor restarts it from the DB."""
        session_id = manager.create_session("copilot", {})
        assert manager.save_session_state(session_id, history(4), {"k": "v"}, "execution", 2)
        before = manager.live(session_id)
        victim = _live_ref(session_id)
        with capture_logs() as logs:
            victim.tell("not a message a session actor understands")
            victim.actor_stopped.wait(5)
            after = manager.live(session_id)
        assert not victim.is_alive()
        assert after.version == before.version
        assert after.message_count == 4
        assert after.epoch == before.epoch + 1
        events = [entry["event"] for entry in logs]
        assert "session.crashed" in events
        assert "session.restarted" in events
        assert manager.save_session_state(session_id, history(6), {"k": "w"}, "review", 3)
        assert manager.load(session_id)["conversation_history"] == history(6)
        assert manager.stats()["restarts"] == 1

    def test_crash_loop_is_stopped(self, make_manager: ManagerFactory) -> None:
        """After max_restarts crashes in the window the session is not restarted again."""
        manager = make_manager(max_restarts=2)
        session_id = manager.create_session("copilot", {})
        for crash in range(2):
            if crash:
                manager.live(session_id)  # the first crash was restarted
            ref = _live_ref(session_id)
            ref.tell(object())
            ref.actor_stopped.wait(5)
        with pytest.raises(SessionFailed):
            manager.live(session_id)
        assert manager.save_session_state(session_id, history(2), {}, "p") is False
        manager.reset_failures(session_id)
        assert manager.save_session_state(session_id, history(2), {}, "p") is True


def _live_ref(session_id: str) -> pykka.ActorRef[SessionActor]:
    for ref in pykka.ActorRegistry.get_by_class(SessionActor):
        if ref.is_alive() and ref.proxy().session_id.get(timeout=5) == session_id:
            return ref
    msg = f"no live actor for {session_id}"
    raise AssertionError(msg)


class TestShutdown:
    """After close() the process exits at once, with no thread of ours left."""

    def test_no_thread_left_after_close(self, db_url: str) -> None:
        """Actors, ticker, loop and writer threads are all gone after close()."""
        done = _run_python(
            """
            import threading
            from actors import create_session_manager
            m = create_session_manager()
            ids = [m.create_session("copilot", {}) for _ in range(20)]
            for sid in ids:
                m.save_session_state(sid, [{"role": "user", "content": "x"}], {}, "p")
                m.suspend(sid)  # queued: the actor has a thread until it parks, idle
            actors = [t for t in threading.enumerate() if t.name.startswith("SessionActor")]
            assert len(actors) == 20, len(actors)
            m.close()
            left = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
            print("left:", left)
            """,
            db_url,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "left: []"
