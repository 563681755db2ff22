"""The façade: factory, global accessor, async twins, phase hook, logging, closing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from actors import (
    InvalidArgument,
    ManagerClosed,
    NotSerializable,
    SessionManager,
    create_session_manager,
    get_session_manager,
)
from actors._factory import _Global
from tests.conftest import ManagerFactory, history


class TestFactory:
    """create_session_manager / get_session_manager."""

    def test_global_manager_is_shared_and_replaced_after_close(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """One process-wide manager; a closed one is replaced on the next call."""
        monkeypatch.setenv("SESSIONS_DATABASE_URL", f"sqlite:///{tmp_path / 'g.db'}")
        monkeypatch.setattr(_Global, "manager", None)
        first = get_session_manager()
        try:
            assert get_session_manager() is first
            first.close()
            second = get_session_manager()
            assert second is not first
            assert not second.closed
            second.close()
        finally:
            first.close()

    @pytest.mark.parametrize("url", ["mysql://x/y", "://no-scheme", "oracle://u@h/db"])
    def test_unusable_database_url_is_refused(self, url: str) -> None:
        """A clear InvalidArgument, before anything starts."""
        with pytest.raises(InvalidArgument):
            create_session_manager(url)

    def test_a_plain_path_is_a_sqlite_file(self, tmp_path: Path) -> None:
        """A path without a scheme opens (and creates) that SQLite file, as the CLI promises."""
        path = tmp_path / "plain.db"
        manager = create_session_manager(str(path))
        try:
            session_id = manager.create_session("task", {})
            assert manager.database.store.dialect == "sqlite"
        finally:
            manager.close()
        reopened = create_session_manager(str(path))
        try:
            assert reopened.get_session_info(session_id) is not None
        finally:
            reopened.close()

    def test_bad_settings_are_refused(self, db_url: str) -> None:
        """Settings are checked; nothing is left running after the refusal."""
        with pytest.raises(InvalidArgument, match="max_live"):
            create_session_manager(db_url, max_live=0)

    @pytest.mark.parametrize("busy", [0, -1.0, float("nan"), float("inf"), "5", True, 86_401])
    def test_bad_sqlite_busy_timeout_is_refused_before_the_file_exists(
        self, tmp_path: Path, busy: Any
    ) -> None:
        """sqlite_busy_timeout must be 0 < seconds <= 1 day; a refusal creates nothing."""
        path = tmp_path / "never.db"
        with pytest.raises(InvalidArgument, match="sqlite_busy_timeout"):
            create_session_manager(f"sqlite:///{path}", sqlite_busy_timeout=busy)
        assert not path.exists()


class TestClosing:
    """close() is final, idempotent, and says so on later calls."""

    def test_calls_after_close_raise_manager_closed(self, manager: SessionManager) -> None:
        """The typed API and the seed API both raise ManagerClosed (see test_callers.py)."""
        session_id = manager.create_session("copilot", {})
        manager.close()
        manager.close()
        with pytest.raises(ManagerClosed):
            manager.checkpoint(session_id, [], {}, "p")
        with pytest.raises(ManagerClosed):
            manager.create_session("copilot", {})
        with pytest.raises(ManagerClosed):
            manager.save_session_state(session_id, [], {}, "p")
        with pytest.raises(ManagerClosed):
            manager.load_session_state(session_id)

    def test_context_managers_close(self, db_url: str) -> None:
        """``with`` and ``async with`` close the manager."""
        with create_session_manager(db_url) as manager:
            manager.create_session("copilot", {})
        assert manager.closed

        async def use() -> SessionManager:
            async with create_session_manager(db_url) as inner:
                await inner.acreate_session("copilot", {})
            return inner

        assert asyncio.run(use()).closed


class TestAsyncTwins:
    """The a-prefixed twins never block the host's event loop."""

    def test_sync_methods_work_inside_a_running_loop(self, manager: SessionManager) -> None:
        """The seed's own test calls the sync methods inside asyncio.run."""

        async def seed_style() -> dict[str, object] | None:
            session_id = manager.create_session("copilot", {})
            assert manager.save_session_state(session_id, history(2), {}, "p")
            return manager.load_session_state(session_id)

        state = asyncio.run(seed_style())
        assert state is not None
        assert state["conversation_history"] == history(2)

    def test_twins_run_concurrently_without_blocking_the_loop(
        self, manager: SessionManager
    ) -> None:
        """Many sessions saved concurrently; a ticker coroutine keeps running meanwhile."""

        async def scenario() -> tuple[list[bool], int]:
            ids = [await manager.acreate_session("copilot", {"n": n}) for n in range(20)]
            ticks = 0
            stop = asyncio.Event()

            async def ticker() -> None:
                nonlocal ticks
                while not stop.is_set():
                    ticks += 1
                    await asyncio.sleep(0)

            task = asyncio.create_task(ticker())
            results = await asyncio.gather(
                *(manager.asave_session_state(sid, history(4), {}, "p", 1) for sid in ids)
            )
            stop.set()
            await task
            assert [s["session_id"] for s in await manager.alist_sessions(limit=50)]
            return list(results), ticks

        results, ticks = asyncio.run(scenario())
        assert results == [True] * 20
        assert ticks > 20


class TestPhaseHook:
    """The seed's Task 4: on_phase_change checkpoints the session."""

    def test_every_phase_change_is_durable(self, manager: SessionManager) -> None:
        """Each call of the hook stores the history and context of that moment."""
        session_id = manager.create_session("planning-control", {})
        conversation: list[dict[str, str]] = []
        context: dict[str, int] = {}
        on_phase_change = manager.phase_hook(session_id, lambda: conversation, lambda: context)
        for step, phase in enumerate(["planning", "control", "control", "summary"], start=1):
            conversation.extend(history(2, start=len(conversation)))
            context["step"] = step
            assert on_phase_change(phase, step) is True
            state = manager.load(session_id)
            assert (state["current_phase"], state["current_step"]) == (phase, step)
            assert state["conversation_history"] == conversation
            assert state["context_variables"] == {"step": step}


class TestBadInput:
    """Bad input gets a clear, typed error and changes nothing."""

    def test_refused_save_changes_nothing(self, manager: SessionManager) -> None:
        """A non-JSON value anywhere refuses the whole save; the stored state is intact."""
        session_id = manager.create_session("copilot", {})
        manager.checkpoint(session_id, history(2), {"a": 1}, "p", 1)
        before = manager.load(session_id)
        cases: list[tuple[Any, dict[str, Any], str]] = [
            (history(4), {"when": time}, "p"),
            ([*history(2), {"role": "user", "content": b"bytes"}], {}, "p"),
            ([*history(2), "not a dict"], {}, "p"),
        ]
        for messages, context, phase in cases:
            with pytest.raises(NotSerializable):
                manager.checkpoint(session_id, messages, context, phase)
            assert manager.save_session_state(session_id, messages, context, phase) is False
        with pytest.raises(InvalidArgument):
            manager.checkpoint(session_id, history(2), {}, "p", current_step="3")  # type: ignore[arg-type]
        assert manager.load(session_id) == before

    def test_refusals_are_logged_with_their_reason(self, manager: SessionManager) -> None:
        """The seed API's False comes with a warning naming the error and the session."""
        session_id = manager.create_session("copilot", {})
        with capture_logs() as logs:
            assert manager.save_session_state(session_id, [], {"x": {1, 2}}, "p") is False
        refused = [e for e in logs if e["event"] == "session.save_refused"]
        assert refused
        assert refused[0]["session_id"] == session_id
        assert refused[0]["error_type"] == "NotSerializable"
        assert "context_variables.x" in refused[0]["error"]


class TestLogging:
    """Every event of a session carries its session_id."""

    def test_session_events_are_bound(self, make_manager: ManagerFactory) -> None:
        """From creation to deletion, each session.* event names the session."""
        manager = make_manager()
        with capture_logs() as logs:
            session_id = manager.create_session("copilot", {})
            manager.save_session_state(session_id, history(2), {}, "planning")
            manager.suspend_session(session_id)
            manager.resume_session(session_id)
            manager.complete_session(session_id)
            manager.delete_session(session_id)
        events = [e for e in logs if str(e["event"]).startswith("session.")]
        names = {e["event"] for e in events}
        assert {"session.created", "session.checkpointed", "session.suspended"} <= names
        assert {"session.resumed", "session.completed", "session.deleted"} <= names
        assert all(e.get("session_id") == session_id for e in events)
