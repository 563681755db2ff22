"""The seed code base's real callers (a REST router, a task executor) work unchanged.

Its later revision of the API: ``load_session_state(session_id, include_completed=...)``
for detail and history views, and ``save_session_state`` called by keyword with parts of
the state left out.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

from actors import AccessDenied, ManualClock, SessionManager
from tests.conftest import ManagerFactory, history

#: The keys of the seed's ``load_session_state`` dict.
SEED_KEYS = {
    "session_id", "mode", "conversation_history", "context_variables", "current_phase",
    "current_step", "plan_data", "status", "config", "created_at", "updated_at", "version",
}  # fmt: skip


def _finished_sessions(manager: SessionManager, clock: ManualClock) -> dict[str, str]:
    """One session per status: active, suspended, completed, and expired by the sweep."""
    ids = {
        status: manager.create_session("copilot", {"model": status}, user_id="alice")
        for status in ("active", "suspended", "completed", "expired")
    }
    for status, session_id in ids.items():
        assert manager.save_session_state(session_id, history(2), {"s": status}, "execution", 1)
    # Only the session to expire stays idle past the TTL; the others are touched again.
    clock.advance(hours=23)
    for status in ("active", "suspended", "completed"):
        assert manager.save_session_state(ids[status], history(3), {"s": status}, "review", 2)
    assert manager.suspend_session(ids["suspended"])
    assert manager.complete_session(ids["completed"])
    clock.advance(hours=2)
    assert manager.sweep()["sessions_expired"] == 1
    return ids


class TestLoadIncludeCompleted:
    """``load_session_state(session_id, include_completed=False)``."""

    def test_finished_sessions_are_returned_with_the_seed_keys_and_types(
        self, any_db_url: str, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """With include_completed=True completed and expired sessions come back, same keys.

        Without it (the default, the seed's behaviour) they are ``None``; the live ones
        are returned either way. Times are datetimes, as the seed's callers expect.
        """
        manager = make_manager(database_url=any_db_url)
        ids = _finished_sessions(manager, clock)
        for status, session_id in ids.items():
            default = manager.load_session_state(session_id)
            wide = manager.load_session_state(session_id, include_completed=True)
            assert wide is not None
            assert wide["status"] == status
            assert set(wide) >= SEED_KEYS
            assert isinstance(wide["created_at"], datetime)
            assert isinstance(wide["updated_at"], datetime)
            assert wide["context_variables"] == {"s": status}
            assert wide["config"] == {"model": status}
            if status in ("active", "suspended"):
                assert default == wide
            else:
                assert default is None
        expired = manager.load_session_state(ids["expired"], include_completed=True)
        assert expired is not None
        assert expired["conversation_history"] == history(2)
        assert (expired["current_phase"], expired["current_step"]) == ("execution", 1)
        completed = manager.load_session_state(ids["completed"], True)  # positional too
        assert completed is not None
        assert completed["conversation_history"] == history(3)
        assert set(completed) == set(expired)

    def test_unknown_session_is_still_none(self, manager: SessionManager) -> None:
        """include_completed widens the statuses, not the ids: a missing session is None."""
        assert manager.load_session_state("no-such-session", include_completed=True) is None

    def test_scoped_view_and_async_twins_take_it_too(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """for_user(...).load_session_state and both aload_session_state accept the flag.

        Another user's view is still refused (AccessDenied), whatever the flag.
        """
        manager = make_manager()
        ids = _finished_sessions(manager, clock)
        alice = manager.for_user("alice")
        completed = ids["completed"]
        assert alice.load_session_state(completed) is None
        scoped = alice.load_session_state(completed, include_completed=True)
        assert scoped is not None
        assert scoped["status"] == "completed"

        async def awaited() -> list[dict[str, Any] | None]:
            return [
                await manager.aload_session_state(completed, include_completed=True),
                await alice.aload_session_state(completed, include_completed=True),
                await alice.aload_session_state(completed),
            ]

        from_manager, from_scope, default = asyncio.run(awaited())
        assert from_manager == scoped
        assert from_scope == scoped
        assert default is None
        with pytest.raises(AccessDenied):
            manager.for_user("bob").load_session_state(completed, include_completed=True)


class TestKeywordSave:
    """``save_session_state`` called by keyword with parts of the state left out."""

    def test_the_task_executors_call_keeps_the_context_and_plan(
        self, any_db_url: str, make_manager: ManagerFactory
    ) -> None:
        """The executor's sliding-window save: True, context and plan unchanged.

        ``save_session_state(session_id=sid, conversation_history=buffer[-100:],
        current_phase="execution", current_step=3)``.
        """
        manager = make_manager(database_url=any_db_url)
        sid = manager.create_session("planning-control", {})
        assert manager.save_session_state(
            sid, history(4), {"task": "t1", "n": 1}, "planning", 1, {"steps": ["a", "b"]}
        )
        buffer = history(130)
        assert manager.save_session_state(
            session_id=sid,
            conversation_history=buffer[-100:],
            current_phase="execution",
            current_step=3,
        )
        state = manager.load_session_state(sid)
        assert state is not None
        assert state["conversation_history"] == buffer[-100:]
        assert state["context_variables"] == {"task": "t1", "n": 1}
        assert state["plan_data"] == {"steps": ["a", "b"]}
        assert (state["current_phase"], state["current_step"]) == ("execution", 3)

    def test_left_out_or_none_keeps_each_value_and_the_step_is_stored_as_given(
        self, any_db_url: str, make_manager: ManagerFactory
    ) -> None:
        """context_variables / current_phase / plan_data None keep; current_step None stores."""
        manager = make_manager(database_url=any_db_url)
        sid = manager.create_session("copilot", {})
        assert manager.save_session_state(sid, history(2), {"a": 1}, "planning", 1, {"p": 1})
        # Only a new context: the phase is kept, the step left out is stored as None.
        assert manager.save_session_state(sid, history(3), context_variables={"a": 2})
        state = manager.load(sid)
        assert (state["context_variables"], state["current_phase"]) == ({"a": 2}, "planning")
        assert state["current_step"] is None
        assert state["plan_data"] == {"p": 1}
        # Explicit None for all three keeps them all.
        assert manager.save_session_state(sid, history(4), None, None, 7, None)
        state = manager.load(sid)
        assert state["context_variables"] == {"a": 2}
        assert (state["current_phase"], state["current_step"]) == ("planning", 7)
        assert state["plan_data"] == {"p": 1}
        assert state["conversation_history"] == history(4)
        # An empty context and an empty phase are values, not "left out".
        assert manager.save_session_state(sid, history(4), {}, "", 8)
        state = manager.load(sid)
        assert (state["context_variables"], state["current_phase"]) == ({}, "")

    def test_kept_values_come_from_the_database_after_a_restart(
        self, make_manager: ManagerFactory, db_url: str
    ) -> None:
        """A new manager (a restarted process) keeps what the old one stored on the file."""
        first = make_manager()
        sid = first.create_session("copilot", {})
        assert first.save_session_state(sid, history(2), {"kept": True}, "review", 4)
        first.close()
        second = make_manager(database_url=db_url)
        assert second.save_session_state(
            session_id=sid, conversation_history=history(6), current_step=5
        )
        state = second.load(sid)
        assert state["context_variables"] == {"kept": True}
        assert (state["current_phase"], state["current_step"]) == ("review", 5)
        assert state["conversation_history"] == history(6)

    def test_typed_checkpoint_and_async_twin_keep_too(self, manager: SessionManager) -> None:
        """checkpoint() and asave_session_state() take the same keyword call."""
        sid = manager.create_session("copilot", {})
        version = manager.checkpoint(sid, history(2), {"x": 1}, "planning", 1)
        assert manager.checkpoint(sid, history(3), current_step=2) == version + 1
        saved = asyncio.run(
            manager.asave_session_state(
                session_id=sid, conversation_history=history(4), current_phase="execution"
            )
        )
        assert saved is True
        state = manager.load(sid)
        assert state["context_variables"] == {"x": 1}
        assert (state["current_phase"], state["current_step"]) == ("execution", None)
        assert state["conversation_history"] == history(4)

    def test_seed_positional_calls_still_replace_everything(
        self, manager: SessionManager, clock: ManualClock
    ) -> None:
        """The seed's own call (all positional) stores each value it is given."""
        sid = manager.create_session("copilot", {})
        assert manager.save_session_state(sid, history(2), {"a": 1}, "planning", 1, {"p": 1})
        clock.advance(timedelta(seconds=1))
        assert manager.save_session_state(sid, history(2), {"b": 2}, "execution", 2, {"p": 2})
        state = manager.load(sid)
        assert state["context_variables"] == {"b": 2}
        assert (state["current_phase"], state["current_step"]) == ("execution", 2)
        assert state["plan_data"] == {"p": 2}
