"""Every allowed and refused lifecycle transition, through the typed and the seed API."""

from __future__ import annotations

import pytest

from actors import InvalidTransition, SessionManager, SessionNotFound
from tests.conftest import history

ACTIONS = ("suspend", "resume", "complete", "expire")
# (status before, action) -> status after; every pair not listed must be refused.
ALLOWED = {
    ("active", "suspend"): "suspended",
    ("suspended", "resume"): "active",
    ("active", "complete"): "completed",
    ("suspended", "complete"): "completed",
    ("active", "expire"): "expired",
}
STATUSES = ("active", "suspended", "completed", "expired")


def _session_in(manager: SessionManager, status: str) -> str:
    session_id = manager.create_session("copilot", {"model": "m"})
    manager.save_session_state(session_id, history(2), {"k": 1}, "planning", 1)
    if status == "suspended":
        manager.suspend(session_id)
    elif status == "completed":
        manager.complete(session_id)
    elif status == "expired":
        manager.expire(session_id)
    assert manager.info(session_id)["status"] == status
    return session_id


class TestTransitions:
    """The lifecycle graph: active <-> suspended, -> completed, active -> expired."""

    @pytest.mark.parametrize("status", STATUSES)
    @pytest.mark.parametrize("action", ACTIONS)
    def test_typed_api(self, manager: SessionManager, status: str, action: str) -> None:
        """Allowed pairs change the status and bump the version; others raise and change nothing."""
        session_id = _session_in(manager, status)
        before = manager.load(session_id)
        expected = ALLOWED.get((status, action))
        if expected is None:
            with pytest.raises(InvalidTransition) as caught:
                getattr(manager, action)(session_id)
            assert caught.value.status == status
            assert manager.load(session_id) == before
        else:
            version = getattr(manager, action)(session_id)
            after = manager.load(session_id)
            assert after["status"] == expected
            assert after["version"] == version == before["version"] + 1
            assert after["conversation_history"] == before["conversation_history"]

    @pytest.mark.parametrize("status", STATUSES)
    def test_seed_api_returns_booleans(self, manager: SessionManager, status: str) -> None:
        """The seed methods return True exactly where the typed API succeeds, else False."""
        for action, seed_method in (
            ("suspend", manager.suspend_session),
            ("resume", manager.resume_session),
            ("complete", manager.complete_session),
        ):
            session_id = _session_in(manager, status)
            assert seed_method(session_id) is ((status, action) in ALLOWED)

    @pytest.mark.parametrize("status", STATUSES)
    def test_save_only_while_active(self, manager: SessionManager, status: str) -> None:
        """A save is accepted only for an active session, as in the seed."""
        session_id = _session_in(manager, status)
        saved = manager.save_session_state(session_id, history(4), {}, "execution", 2)
        assert saved is (status == "active")
        if status != "active":
            assert len(manager.load(session_id)["conversation_history"]) == 2

    @pytest.mark.parametrize("status", STATUSES)
    def test_load_session_state_only_resumable(self, manager: SessionManager, status: str) -> None:
        """load_session_state returns active and suspended sessions, None otherwise."""
        session_id = _session_in(manager, status)
        state = manager.load_session_state(session_id)
        assert (state is not None) is (status in ("active", "suspended"))

    @pytest.mark.parametrize("status", STATUSES)
    def test_delete_from_any_status(self, manager: SessionManager, status: str) -> None:
        """Any session can be deleted; afterwards it is gone everywhere."""
        session_id = _session_in(manager, status)
        assert manager.delete_session(session_id) is True
        assert manager.get_session_info(session_id) is None
        assert manager.load_session_state(session_id) is None
        assert manager.delete_session(session_id) is False
        with pytest.raises(SessionNotFound):
            manager.delete(session_id)

    def test_resumed_session_takes_saves_again(self, manager: SessionManager) -> None:
        """After suspend and resume the session goes on from where it was."""
        session_id = _session_in(manager, "suspended")
        assert manager.resume_session(session_id)
        assert manager.save_session_state(session_id, history(4), {"k": 2}, "execution", 3)
        state = manager.load_session_state(session_id)
        assert state is not None
        assert state["conversation_history"] == history(4)
        assert state["context_variables"] == {"k": 2}


class TestUnknownSessions:
    """Operations on ids that do not exist fail clearly and create nothing."""

    def test_typed_api_raises_session_not_found(self, manager: SessionManager) -> None:
        """Every typed operation on an unknown id raises SessionNotFound."""
        missing = "00000000-0000-0000-0000-000000000000"
        for action in ACTIONS:
            with pytest.raises(SessionNotFound):
                getattr(manager, action)(missing)
        with pytest.raises(SessionNotFound):
            manager.checkpoint(missing, [], {}, "p")
        with pytest.raises(SessionNotFound):
            manager.load(missing)
        with pytest.raises(SessionNotFound):
            manager.info(missing)
        assert manager.list_sessions() == []

    def test_seed_api_returns_false_and_none(self, manager: SessionManager) -> None:
        """The seed methods keep the seed's return values for unknown ids."""
        missing = "no-such-session"
        assert manager.save_session_state(missing, [], {}, "p") is False
        assert manager.load_session_state(missing) is None
        assert manager.suspend_session(missing) is False
        assert manager.resume_session(missing) is False
        assert manager.complete_session(missing) is False
        assert manager.delete_session(missing) is False
        assert manager.get_session_info(missing) is None
        assert manager.live_sessions() == []


class TestErrorMessages:
    """A refusal names the action the caller asked for."""

    @pytest.mark.parametrize("action", ["resume", "suspend", "complete"])
    def test_action_on_a_finished_session_that_is_not_live(
        self, manager: SessionManager, action: str
    ) -> None:
        """Even when the refusal comes from rehydration, the message says what was refused."""
        session_id = _session_in(manager, "completed")
        assert session_id not in manager.live_sessions()
        with pytest.raises(InvalidTransition, match=f"cannot {action} session") as caught:
            getattr(manager, action)(session_id)
        assert (caught.value.action, caught.value.status) == (action, "completed")
