"""The seed's API on PostgreSQL: what works on the SQLite default works on a real server."""

from __future__ import annotations

from tests.conftest import ManagerFactory, history


class TestBothBackends:
    """Round trips that must behave the same on SQLite and PostgreSQL."""

    def test_save_and_load_round_trip(self, make_manager: ManagerFactory, any_db_url: str) -> None:
        """A saved history, context, phase and step load back exactly, NUL included."""
        manager = make_manager(database_url=any_db_url)
        session_id = manager.create_session("copilot", {"model": "m"}, "u1", "demo")
        messages = [*history(3), {"role": "user", "content": "nul \x00 inside"}]
        assert manager.save_session_state(session_id, messages, {"k": [1, 2.5]}, "plan", 2)
        state = manager.load_session_state(session_id)
        assert state is not None
        assert state["conversation_history"] == messages
        assert state["context_variables"] == {"k": [1, 2.5]}
        assert (state["current_phase"], state["current_step"]) == ("plan", 2)

    def test_a_new_manager_reads_what_an_earlier_one_acknowledged(
        self, make_manager: ManagerFactory, any_db_url: str
    ) -> None:
        """Closing one manager and opening another on the same database loses nothing."""
        first = make_manager(database_url=any_db_url)
        session_id = first.create_session("copilot", {}, "u1")
        assert first.save_session_state(session_id, history(5), {"n": 5}, "exec", 5)
        first.close()
        second = make_manager(database_url=any_db_url)
        state = second.load_session_state(session_id)
        assert state is not None
        assert state["conversation_history"] == history(5)
        assert [s["session_id"] for s in second.list_sessions(user_id="u1")] == [session_id]
