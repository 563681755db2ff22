"""Thread exhaustion: a process that cannot start another actor thread refuses, typed, cleanly.

Each live session is an actor on its own thread. When the system refuses a new thread
(``RuntimeError: can't start new thread``, a container's pids limit), the call that needed
one raises ``TooManyActors`` (a ``StoreUnavailable``) and nothing is written: no orphan
session leased to this process, no half-started actor left registered.
"""

from __future__ import annotations

import threading
from typing import Any

import pykka
import pytest

from actors import SessionActor, SessionManager, StoreUnavailable, TooManyActors
from tests.conftest import ManagerFactory, history
from tests.robustness._support import crash, live_refs, snapshot, wait_until


class _ThreadLimit:
    """Refuses to start session actor threads while ``on``, as an exhausted system does."""

    def __init__(self) -> None:
        self.on = False
        self.refused = 0

    def __enter__(self) -> None:
        self.on = True

    def __exit__(self, *exc: object) -> None:
        self.on = False


@pytest.fixture
def limit(monkeypatch: pytest.MonkeyPatch) -> _ThreadLimit:
    """A switch that makes ``Thread.start`` fail for session actors' threads."""
    switch = _ThreadLimit()
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        if switch.on and thread.name.startswith(SessionActor.__name__):
            switch.refused += 1
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    return switch


def _session_actors() -> list[Any]:
    return pykka.ActorRegistry.get_by_class(SessionActor)


class TestThreadExhaustion:
    """No thread for an actor: a typed refusal, and nothing changed."""

    def test_create_is_refused_and_writes_nothing(
        self, manager: SessionManager, limit: _ThreadLimit
    ) -> None:
        """A create is refused with TooManyActors; no session row and no actor are left."""
        with limit, pytest.raises(TooManyActors) as refused:
            manager.create("copilot", {"model": "m"}, user_id="u1")
        assert isinstance(refused.value, StoreUnavailable)
        assert limit.refused == 1
        assert manager.sessions() == []
        assert _session_actors() == []
        assert manager.live_sessions() == []
        # The seed's method gives the same error (it has no "refused" value to return).
        with limit, pytest.raises(TooManyActors):
            manager.create_session("copilot", {})
        assert manager.list_sessions() == []
        session_id = manager.create("copilot", {"model": "m"})  # threads again: works
        assert manager.checkpoint(session_id, history(2), {"k": 1}, "plan", 1) == 2

    def test_a_retried_create_with_the_same_id_creates_it_once(
        self, manager: SessionManager, limit: _ThreadLimit
    ) -> None:
        """The refused create left no row: its retry with the same id is a fresh create."""
        with limit, pytest.raises(TooManyActors):
            manager.create("copilot", {"n": 1}, session_id="chosen-1")
        assert manager.get_session_info("chosen-1") is None
        assert manager.create("copilot", {"n": 1}, session_id="chosen-1") == "chosen-1"
        info = manager.info("chosen-1")
        assert (info["version"], info["owner"]) == (1, manager.instance_id)

    def test_rehydration_is_refused_and_changes_nothing(
        self, make_manager: ManagerFactory, limit: _ThreadLimit
    ) -> None:
        """A save to a passivated session without a thread: refused, the stored state as it was."""
        manager = make_manager(max_live=1)
        first = manager.create("copilot", {})
        manager.checkpoint(first, history(2), {"k": 1}, "plan", 1)
        manager.create("copilot", {})  # evicts the first actor (max_live=1)
        wait_until(lambda: first not in manager.live_sessions())
        before = snapshot(manager, first)
        with limit:
            with pytest.raises(TooManyActors):
                manager.checkpoint(first, history(4), {"k": 2}, "exec", 2)
            assert manager.save_session_state(first, history(4), {"k": 2}, "exec", 2) is False
        assert snapshot(manager, first) == before
        assert manager.checkpoint(first, history(4), {"k": 2}, "exec", 2) == 3

    def test_a_refused_restart_leaves_the_supervisor_running(
        self, manager: SessionManager, limit: _ThreadLimit
    ) -> None:
        """A crash whose restart finds no thread: the next use restarts the session."""
        session_id = manager.create("copilot", {})
        manager.checkpoint(session_id, history(2), {"k": 1}, "plan", 1)
        with limit:
            crash(session_id)
            wait_until(lambda: limit.refused == 1)
            assert live_refs(session_id) == []
            assert manager.stats()["live_actors"] == 0  # the supervisor still answers
        assert manager.load(session_id)["context_variables"] == {"k": 1}
        assert manager.checkpoint(session_id, history(3), {"k": 2}, "plan", 2) == 3
        assert len(live_refs(session_id)) == 1
        assert manager.live(session_id).version == 3
