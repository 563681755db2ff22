"""``manager.for_user(user_id)``: one user's view sees and touches only that user's sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from actors import (
    AccessDenied,
    InvalidArgument,
    SessionManager,
    SessionNotFound,
    UserScope,
)
from tests.conftest import ManagerFactory, history


@pytest.fixture
def scoped(make_manager: ManagerFactory) -> SessionManager:
    """A manager with a runtime factory (so the runtime calls can be scoped too)."""
    return make_manager(runtime_factory=lambda state: {"built_for": state["user_id"]})


def _foreign_calls(session_id: str) -> dict[str, Callable[[UserScope], Any]]:
    """Every scoped call that names a session, aimed at ``session_id``."""
    return {
        "save_session_state": lambda s: s.save_session_state(session_id, history(2), {}, "x"),
        "load_session_state": lambda s: s.load_session_state(session_id),
        "suspend_session": lambda s: s.suspend_session(session_id),
        "resume_session": lambda s: s.resume_session(session_id),
        "complete_session": lambda s: s.complete_session(session_id),
        "delete_session": lambda s: s.delete_session(session_id),
        "get_session_info": lambda s: s.get_session_info(session_id),
        "phase_hook": lambda s: s.phase_hook(session_id, list, dict),
        "checkpoint": lambda s: s.checkpoint(session_id, history(2), {}, "x"),
        "load": lambda s: s.load(session_id),
        "info": lambda s: s.info(session_id),
        "suspend": lambda s: s.suspend(session_id),
        "resume": lambda s: s.resume(session_id),
        "complete": lambda s: s.complete(session_id),
        "expire": lambda s: s.expire(session_id),
        "delete": lambda s: s.delete(session_id),
        "runtime": lambda s: s.runtime(session_id),
        "run_in_actor": lambda s: s.run_in_actor(session_id, len),
        "discard_runtime": lambda s: s.discard_runtime(session_id),
        "unit_of_work": lambda s: s.unit_of_work(session_id),
        "request_approval": lambda s: s.request_approval(session_id, "plan", {}),
        "list_pending_approvals": lambda s: s.list_pending_approvals(session_id),
    }


_CALLS = sorted(_foreign_calls("x"))


class TestOwnSessions:
    """A user's view works on that user's sessions like the manager does."""

    def test_create_list_and_use(self, scoped: SessionManager) -> None:
        """Sessions are created for the user; lists hold only theirs; calls go through."""
        alice = scoped.for_user("alice")
        mine = alice.create_session("copilot", {"model": "m"}, name="mine")
        theirs = scoped.create_session("copilot", {}, user_id="bob")
        unowned = scoped.create_session("copilot", {})
        assert alice.user_id == "alice"
        assert [row["session_id"] for row in alice.list_sessions()] == [mine]
        assert alice.save_session_state(mine, history(2), {"k": 1}, "plan", 1)
        assert alice.load(mine)["user_id"] == "alice"
        assert alice.runtime(mine) == {"built_for": "alice"}
        with alice.unit_of_work(mine, checkpoint=False) as work:  # a dict has no snapshot()
            assert work.runtime == {"built_for": "alice"}
        approval = alice.request_approval(mine, "plan", {"plan": [1]})
        assert alice.list_pending_approvals(mine)[0]["approval_id"] == approval
        assert alice.resolve_approval(approval, "approved")
        assert alice.complete_session(mine)
        assert {theirs, unowned} <= {row["session_id"] for row in scoped.list_sessions()}

    def test_missing_sessions_are_reported_as_by_the_manager(self, scoped: SessionManager) -> None:
        """Not AccessDenied: SessionNotFound from the typed API, False/None from the seed's."""
        alice = scoped.for_user("alice")
        assert alice.save_session_state("nope", [], {}, "p") is False
        assert alice.get_session_info("nope") is None
        with pytest.raises(SessionNotFound):
            alice.load("nope")
        assert alice.get_approval("nope") is None


class TestOtherUsersSessions:
    """Every call naming someone else's session is AccessDenied and changes nothing."""

    @pytest.mark.parametrize("call", _CALLS)
    def test_access_denied_and_nothing_changed(self, scoped: SessionManager, call: str) -> None:
        """Bob's session, touched through Alice's view: refused, logged, unchanged."""
        bob = scoped.create_session("copilot", {}, user_id="bob")
        scoped.save_session_state(bob, history(4), {"k": "v"}, "execution", 2)
        before = scoped.load(bob)
        with capture_logs() as logs, pytest.raises(AccessDenied) as denied:
            _foreign_calls(bob)[call](scoped.for_user("alice"))
        assert denied.value.session_id == bob
        assert denied.value.user_id == "alice"
        assert scoped.load(bob) == before
        assert scoped.list_pending_approvals(bob) == []
        assert any(entry["event"] == "access.denied" for entry in logs)

    def test_sessions_without_a_user_are_nobodys(self, scoped: SessionManager) -> None:
        """A session created without user_id is not any user's."""
        unowned = scoped.create_session("copilot", {})
        with pytest.raises(AccessDenied):
            scoped.for_user("alice").info(unowned)

    def test_approvals_of_other_users(self, scoped: SessionManager) -> None:
        """Alice can neither read nor answer Bob's approval requests."""
        bob = scoped.create_session("copilot", {}, user_id="bob")
        approval = scoped.request_approval(bob, "tool", {"tool": "rm"})
        alice = scoped.for_user("alice")
        with pytest.raises(AccessDenied):
            alice.get_approval(approval)
        with pytest.raises(AccessDenied):
            alice.resolve_approval(approval, "approved")
        assert scoped.get_approval(approval)["status"] == "pending"  # type: ignore[index]
        assert scoped.for_user("bob").resolve_approval(approval, "rejected")

    def test_cannot_act_as_another_user(self, scoped: SessionManager) -> None:
        """create/list with another user_id are refused as bad arguments."""
        alice = scoped.for_user("alice")
        with pytest.raises(InvalidArgument, match="scoped to user 'alice'"):
            alice.create_session("copilot", {}, user_id="bob")
        with pytest.raises(InvalidArgument, match="scoped to user 'alice'"):
            alice.list_sessions(user_id="bob")
        assert scoped.list_sessions() == []


class TestScopeArguments:
    """for_user needs a real user id."""

    @pytest.mark.parametrize("user_id", ["", None, 7, "a\x00b"])
    def test_bad_user_id(self, scoped: SessionManager, user_id: Any) -> None:
        """InvalidArgument, before anything is read."""
        with pytest.raises(InvalidArgument):
            scoped.for_user(user_id)


class TestAsyncScope:
    """The scope's async twins run off the loop and check the owner too."""

    def test_async_twins(self, scoped: SessionManager) -> None:
        """Create, save, suspend, resume, discard, unit of work: fine; foreign ids: denied."""
        bob = scoped.create_session("copilot", {}, user_id="bob")

        async def use() -> tuple[str, list[dict[str, Any]]]:
            alice = scoped.for_user("alice")
            mine = await alice.acreate_session("copilot", {})
            assert await alice.asave_session_state(mine, history(2), {}, "p")
            async with alice.aunit_of_work(mine, checkpoint=False) as work:
                assert work.runtime == {"built_for": "alice"}
            assert await alice.asuspend_session(mine)
            assert await alice.aresume_session(mine)
            assert await alice.adiscard_runtime(mine)
            with pytest.raises(AccessDenied):
                await alice.aload(bob)
            for twin in (alice.asuspend_session, alice.aresume_session, alice.adiscard_runtime):
                with pytest.raises(AccessDenied):
                    await twin(bob)
            with pytest.raises(AccessDenied):
                async with alice.aunit_of_work(bob):
                    pytest.fail("entered")  # pragma: no cover
            return mine, await alice.alist_sessions()

        mine, rows = asyncio.run(use())
        assert [row["session_id"] for row in rows] == [mine]
