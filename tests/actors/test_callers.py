"""The seed code base's real callers (a REST router, a task executor) work unchanged.

Its later revision of the API: ``load_session_state(session_id, include_completed=...)``
for detail and history views, and ``save_session_state`` called by keyword with parts of
the state left out. And no silent empties: a bad filter, a closed manager, a runtime
without ``snapshot()`` and a mode without a runtime builder are refused, not ignored.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from actors import (
    AccessDenied,
    InvalidArgument,
    ManagerClosed,
    ManualClock,
    NoSnapshot,
    SessionManager,
    UserScope,
)
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


class TestUnknownStatus:
    """``status="bogus"`` is refused, not answered with a silent empty list."""

    def test_typed_api_raises_and_seed_api_returns_empty_with_a_warning(
        self, manager: SessionManager
    ) -> None:
        """sessions() raises InvalidArgument; list_sessions() returns [] and logs why."""
        session_id = manager.create_session("copilot", {}, user_id="alice")
        assert [row["session_id"] for row in manager.sessions(status="active")] == [session_id]
        with pytest.raises(InvalidArgument, match="status must be one of"):
            manager.sessions(status="bogus")
        with capture_logs() as logs:
            assert manager.list_sessions(status="bogus") == []
        refused = [e for e in logs if e["event"] == "session.list_refused"]
        assert len(refused) == 1
        assert refused[0]["error_type"] == "InvalidArgument"
        assert "bogus" in refused[0]["error"]
        # Every known status is accepted, by both.
        for status in ("active", "suspended", "completed", "expired"):
            assert manager.sessions(status=status) == manager.list_sessions(status=status)

    def test_scoped_view_and_async_twins_refuse_too(self, manager: SessionManager) -> None:
        """for_user(...).sessions and asessions raise; their list_sessions return []."""
        manager.create_session("copilot", {}, user_id="alice")
        alice = manager.for_user("alice")
        with pytest.raises(InvalidArgument, match="status"):
            alice.sessions(status="Active")
        assert alice.list_sessions(status="Active") == []
        assert len(alice.sessions(status="active")) == 1

        async def awaited() -> list[dict[str, Any]]:
            with pytest.raises(InvalidArgument):
                await manager.asessions(status="bogus")
            with pytest.raises(InvalidArgument):
                await alice.asessions(status="bogus")
            return await manager.alist_sessions(status="bogus")

        assert asyncio.run(awaited()) == []


def _enter(manager_call: AbstractContextManager[Any]) -> None:
    with manager_call:
        pytest.fail("entered a unit of work of a closed manager")  # pragma: no cover


async def _aenter(manager_call: AbstractAsyncContextManager[Any]) -> None:
    async with manager_call:
        pytest.fail("entered a unit of work of a closed manager")  # pragma: no cover


def _manager_calls(sid: str, aid: str) -> dict[str, Callable[[SessionManager], Any]]:
    """One call of every public method of the manager (but close, aclose, stop)."""
    return {
        "aappend_messages": lambda m: m.aappend_messages(sid, history(1)),
        "acheckpoint": lambda m: m.acheckpoint(sid, history(2), {}, "p"),
        "acomplete_session": lambda m: m.acomplete_session(sid),
        "acreate_session": lambda m: m.acreate_session("copilot", {}),
        "adelete_session": lambda m: m.adelete_session(sid),
        "adiscard_runtime": lambda m: m.adiscard_runtime(sid),
        "aget_approval": lambda m: m.aget_approval(aid),
        "aget_session_info": lambda m: m.aget_session_info(sid),
        "alist_sessions": lambda m: m.alist_sessions(),
        "aload": lambda m: m.aload(sid),
        "aload_session_state": lambda m: m.aload_session_state(sid, include_completed=True),
        "arequest_approval": lambda m: m.arequest_approval(sid, "plan", {}),
        "aresolve_approval": lambda m: m.aresolve_approval(aid, "approved"),
        "aresume_session": lambda m: m.aresume_session(sid),
        "arun_in_actor": lambda m: m.arun_in_actor(sid, len),
        "aruntime": lambda m: m.aruntime(sid),
        "acomplete": lambda m: m.acomplete(sid),
        "acreate": lambda m: m.acreate("copilot", {}),
        "adelete": lambda m: m.adelete(sid),
        "aexpire": lambda m: m.aexpire(sid),
        "aheartbeat": lambda m: m.aheartbeat("task-1"),
        "ainfo": lambda m: m.ainfo(sid),
        "alist_connections": lambda m: m.alist_connections(),
        "alist_pending_approvals": lambda m: m.alist_pending_approvals(sid),
        "alive": lambda m: m.alive(sid),
        "alive_sessions": lambda m: m.alive_sessions(),
        "aregister_connection": lambda m: m.aregister_connection("task-2", sid),
        "areset_failures": lambda m: m.areset_failures(sid),
        "aresume": lambda m: m.aresume(sid),
        "astats": lambda m: m.astats(),
        "asuspend": lambda m: m.asuspend(sid),
        "aunregister_connection": lambda m: m.aunregister_connection("task-1"),
        "asave_session_state": lambda m: m.asave_session_state(sid, history(2), {}, "p"),
        "asessions": lambda m: m.asessions(),
        "asuspend_session": lambda m: m.asuspend_session(sid),
        "asweep": lambda m: m.asweep(),
        "aunit_of_work": lambda m: _aenter(m.aunit_of_work(sid)),
        "await_for_approval": lambda m: m.await_for_approval(aid, 1),
        "append_messages": lambda m: m.append_messages(sid, history(1)),
        "checkpoint": lambda m: m.checkpoint(sid, history(2), {}, "p"),
        "complete": lambda m: m.complete(sid),
        "complete_session": lambda m: m.complete_session(sid),
        "create": lambda m: m.create("copilot", {}),
        "create_session": lambda m: m.create_session("copilot", {}),
        "delete": lambda m: m.delete(sid),
        "delete_session": lambda m: m.delete_session(sid),
        "discard_runtime": lambda m: m.discard_runtime(sid),
        "expire": lambda m: m.expire(sid),
        "for_user": lambda m: m.for_user("alice"),
        "get_approval": lambda m: m.get_approval(aid),
        "get_session_info": lambda m: m.get_session_info(sid),
        "heartbeat": lambda m: m.heartbeat("task-1"),
        "info": lambda m: m.info(sid),
        "list_connections": lambda m: m.list_connections(),
        "list_pending_approvals": lambda m: m.list_pending_approvals(sid),
        "list_sessions": lambda m: m.list_sessions(),
        "live": lambda m: m.live(sid),
        "live_sessions": lambda m: m.live_sessions(),
        "load": lambda m: m.load(sid),
        "load_session_state": lambda m: m.load_session_state(sid),
        "phase_hook": lambda m: m.phase_hook(sid, list, dict),
        "register_connection": lambda m: m.register_connection("task-2", sid),
        "request_approval": lambda m: m.request_approval(sid, "plan", {}),
        "reset_failures": lambda m: m.reset_failures(sid),
        "resolve_approval": lambda m: m.resolve_approval(aid, "approved"),
        "resume": lambda m: m.resume(sid),
        "resume_session": lambda m: m.resume_session(sid),
        "run_in_actor": lambda m: m.run_in_actor(sid, len),
        "runtime": lambda m: m.runtime(sid),
        "save_session_state": lambda m: m.save_session_state(sid, history(2), {}, "p"),
        "sessions": lambda m: m.sessions(),
        "start": lambda m: m.start(),
        "stats": lambda m: m.stats(),
        "suspend": lambda m: m.suspend(sid),
        "suspend_session": lambda m: m.suspend_session(sid),
        "sweep": lambda m: m.sweep(),
        "unit_of_work": lambda m: _enter(m.unit_of_work(sid)),
        "unregister_connection": lambda m: m.unregister_connection("task-1"),
        "wait_for_approval": lambda m: m.wait_for_approval(aid, 1),
    }


def _scope_calls(sid: str, aid: str) -> dict[str, Callable[[UserScope], Any]]:
    """One call of every public method of a ``for_user`` view."""
    return {
        "aappend_messages": lambda s: s.aappend_messages(sid, history(1)),
        "acheckpoint": lambda s: s.acheckpoint(sid, history(2), {}, "p"),
        "acomplete_session": lambda s: s.acomplete_session(sid),
        "acreate_session": lambda s: s.acreate_session("copilot", {}),
        "adelete_session": lambda s: s.adelete_session(sid),
        "adiscard_runtime": lambda s: s.adiscard_runtime(sid),
        "aget_approval": lambda s: s.aget_approval(aid),
        "aget_session_info": lambda s: s.aget_session_info(sid),
        "alist_sessions": lambda s: s.alist_sessions(),
        "aload": lambda s: s.aload(sid),
        "aload_session_state": lambda s: s.aload_session_state(sid),
        "arequest_approval": lambda s: s.arequest_approval(sid, "plan", {}),
        "aresolve_approval": lambda s: s.aresolve_approval(aid, "approved"),
        "aresume_session": lambda s: s.aresume_session(sid),
        "arun_in_actor": lambda s: s.arun_in_actor(sid, len),
        "aruntime": lambda s: s.aruntime(sid),
        "acomplete": lambda s: s.acomplete(sid),
        "acreate": lambda s: s.acreate("copilot", {}),
        "adelete": lambda s: s.adelete(sid),
        "aexpire": lambda s: s.aexpire(sid),
        "ainfo": lambda s: s.ainfo(sid),
        "alist_pending_approvals": lambda s: s.alist_pending_approvals(sid),
        "aresume": lambda s: s.aresume(sid),
        "asuspend": lambda s: s.asuspend(sid),
        "asave_session_state": lambda s: s.asave_session_state(sid, history(2), {}, "p"),
        "asessions": lambda s: s.asessions(),
        "asuspend_session": lambda s: s.asuspend_session(sid),
        "aunit_of_work": lambda s: _aenter(s.aunit_of_work(sid)),
        "await_for_approval": lambda s: s.await_for_approval(aid, 1),
        "append_messages": lambda s: s.append_messages(sid, history(1)),
        "checkpoint": lambda s: s.checkpoint(sid, history(2), {}, "p"),
        "complete": lambda s: s.complete(sid),
        "complete_session": lambda s: s.complete_session(sid),
        "create": lambda s: s.create("copilot", {}),
        "create_session": lambda s: s.create_session("copilot", {}),
        "delete": lambda s: s.delete(sid),
        "delete_session": lambda s: s.delete_session(sid),
        "discard_runtime": lambda s: s.discard_runtime(sid),
        "expire": lambda s: s.expire(sid),
        "get_approval": lambda s: s.get_approval(aid),
        "get_session_info": lambda s: s.get_session_info(sid),
        "info": lambda s: s.info(sid),
        "list_pending_approvals": lambda s: s.list_pending_approvals(sid),
        "list_sessions": lambda s: s.list_sessions(),
        "load": lambda s: s.load(sid),
        "load_session_state": lambda s: s.load_session_state(sid, include_completed=True),
        "phase_hook": lambda s: s.phase_hook(sid, list, dict),
        "request_approval": lambda s: s.request_approval(sid, "plan", {}),
        "resolve_approval": lambda s: s.resolve_approval(aid, "approved"),
        "resume": lambda s: s.resume(sid),
        "resume_session": lambda s: s.resume_session(sid),
        "run_in_actor": lambda s: s.run_in_actor(sid, len),
        "runtime": lambda s: s.runtime(sid),
        "save_session_state": lambda s: s.save_session_state(sid, history(2), {}, "p"),
        "sessions": lambda s: s.sessions(),
        "suspend": lambda s: s.suspend(sid),
        "suspend_session": lambda s: s.suspend_session(sid),
        "unit_of_work": lambda s: _enter(s.unit_of_work(sid)),
        "wait_for_approval": lambda s: s.wait_for_approval(aid, 1),
    }


def _public_methods(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))}


def _outcome(result: Any) -> Any:
    """Run what a call returned if it is a coroutine (an async twin)."""
    if inspect.isawaitable(result):

        async def awaited() -> Any:
            return await result

        return asyncio.run(awaited())
    return result


def _raised(call: Callable[[Any], Any], target: Any) -> str:
    """The name of the error ``call(target)`` raised (awaited if async), or what it returned."""
    try:
        returned = _outcome(call(target))
    except Exception as error:  # noqa: BLE001 - reported by name
        return type(error).__name__
    return f"returned {returned!r}"


def _async_threads() -> int:
    return sum(t.name.startswith("session-manager-async") for t in threading.enumerate())


class TestClosedManager:
    """Any call on a closed manager raises ManagerClosed: seed, typed, async, for_user."""

    @pytest.fixture
    def closed(self, make_manager: ManagerFactory) -> tuple[SessionManager, UserScope, str, str]:
        """A manager with a session, an approval, a connection and a view; then closed."""
        manager = make_manager(runtime_factory=lambda state: object())
        sid = manager.create_session("copilot", {}, user_id="alice")
        aid = manager.request_approval(sid, "plan", {})
        manager.register_connection("task-1", sid)
        scope = manager.for_user("alice")
        manager.close()
        return manager, scope, sid, aid

    def test_every_call_of_the_manager_raises(
        self, closed: tuple[SessionManager, UserScope, str, str]
    ) -> None:
        """Not [] / None / False: the seed's methods and the async twins raise too.

        The table covers every public method but close, aclose and stop (the ways to
        shut down, safe to call again); an async twin starts no new thread pool.
        """
        manager, _, sid, aid = closed
        calls = _manager_calls(sid, aid)
        assert set(calls) == _public_methods(SessionManager) - {"close", "aclose", "stop"}
        threads = _async_threads()
        outcomes = {name: _raised(call, manager) for name, call in calls.items()}
        assert {n: o for n, o in outcomes.items() if o != "ManagerClosed"} == {}
        assert _async_threads() <= threads
        # Bad arguments too: the closed manager is what the caller has to learn about.
        with pytest.raises(ManagerClosed):
            manager.list_sessions(status="bogus")
        with pytest.raises(ManagerClosed):
            manager.save_session_state(sid, "not a list", {}, "p")  # type: ignore[arg-type]
        with pytest.raises(ManagerClosed):
            manager.load_session_state(42)  # type: ignore[arg-type]
        # The ways to shut down may be called again.
        manager.close()
        asyncio.run(manager.stop())
        asyncio.run(manager.aclose())

    def test_every_call_of_a_for_user_view_raises(
        self, closed: tuple[SessionManager, UserScope, str, str]
    ) -> None:
        """A view made before the close raises ManagerClosed from each of its methods."""
        _, scope, sid, aid = closed
        calls = _scope_calls(sid, aid)
        assert set(calls) == _public_methods(UserScope)
        outcomes = {name: _raised(call, scope) for name, call in calls.items()}
        assert {n: o for n, o in outcomes.items() if o != "ManagerClosed"} == {}
        with pytest.raises(ManagerClosed):
            scope.create_session("copilot", {}, user_id="bob")


class TestUnitOfWorkNeedsSnapshot:
    """unit_of_work does not silently skip its checkpoint."""

    def test_a_runtime_without_snapshot_is_refused_before_the_block_runs(
        self, make_manager: ManagerFactory
    ) -> None:
        """NoSnapshot (an InvalidArgument) is raised on entry; the lock is free afterwards."""
        manager = make_manager(runtime_factory=lambda state: {"no": "snapshot"})
        sid = manager.create_session("copilot", {}, user_id="alice")
        ran = []
        with (
            pytest.raises(NoSnapshot, match="snapshot") as refused,
            manager.unit_of_work(sid),
        ):
            ran.append("sync")  # pragma: no cover
        assert isinstance(refused.value, InvalidArgument)
        assert refused.value.session_id == sid

        async def awaited() -> None:
            with pytest.raises(NoSnapshot):
                async with manager.aunit_of_work(sid):
                    ran.append("async")  # pragma: no cover
            with pytest.raises(NoSnapshot):
                async with manager.for_user("alice").aunit_of_work(sid):
                    ran.append("scoped")  # pragma: no cover

        asyncio.run(awaited())
        assert ran == []
        # Nothing is held: checkpoint=False enters at once, and saves what it is given.
        with manager.unit_of_work(sid, wait=0, checkpoint=False) as work:
            work.checkpoint(
                conversation_history=history(2), context_variables={"a": 1}, current_phase="p"
            )
        assert manager.load(sid)["conversation_history"] == history(2)
        assert manager.load(sid)["version"] == 2

    def test_a_runtime_with_snapshot_is_checkpointed(self, make_manager: ManagerFactory) -> None:
        """The normal case is unchanged: the snapshot is saved when the block ends."""

        class WithSnapshot:
            def __init__(self, state: dict[str, Any]) -> None:
                self.history = list(state["conversation_history"])

            def snapshot(self) -> dict[str, Any]:
                return {
                    "conversation_history": self.history,
                    "context_variables": {"n": len(self.history)},
                    "current_phase": "turn",
                }

        manager = make_manager(runtime_factory=WithSnapshot)
        sid = manager.create_session("copilot", {})
        with manager.unit_of_work(sid) as work:
            work.runtime.history.extend(history(2))
        assert manager.load(sid)["context_variables"] == {"n": 2}


class TestRuntimeFactoryModes:
    """A ``runtime_factory`` mapping without the session's mode is refused at create."""

    def test_create_is_refused_and_nothing_is_stored(
        self, any_db_url: str, make_manager: ManagerFactory
    ) -> None:
        """InvalidArgument from create_session, create and for_user; no row written."""
        manager = make_manager(
            database_url=any_db_url, runtime_factory={"copilot": lambda state: object()}
        )
        with pytest.raises(InvalidArgument, match="no entry for mode 'swarm'"):
            manager.create_session("swarm", {})
        with pytest.raises(InvalidArgument, match="no entry for mode 'swarm'"):
            manager.create("swarm", {}, user_id="alice")
        with pytest.raises(InvalidArgument, match="no entry for mode 'swarm'"):
            manager.for_user("alice").create_session("swarm", {})
        assert manager.sessions() == []
        assert manager.stats()["live_actors"] == 0
        assert manager.runtime(manager.create_session("copilot", {})) is not None

    def test_one_callable_serves_every_mode(self, make_manager: ManagerFactory) -> None:
        """A single factory callable has no modes to check: any mode is created."""
        manager = make_manager(runtime_factory=lambda state: state["mode"])
        sid = manager.create_session("swarm", {})
        assert manager.runtime(sid) == "swarm"
