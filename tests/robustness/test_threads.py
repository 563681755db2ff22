"""Threads: an idle actor holds none, and a process that cannot start one refuses cleanly.

Each live session is an actor; it has a thread only while it has queued work (a save to an
idle actor runs in its caller's thread) and gives it back after ``PARK_AFTER`` idle
seconds. When the system refuses a thread (``RuntimeError: can't start new thread``, a
container's pids limit), the call that needed one raises ``TooManyActors`` (a
``StoreUnavailable``) and nothing is written, now or later; the calls that need none go on.
"""

from __future__ import annotations

import threading
import time

import pykka
import pytest

from actors import SessionActor, SessionManager, StoreUnavailable, TooManyActors, _mailbox
from tests.conftest import ManagerFactory, history
from tests.robustness._support import crash, live_refs, snapshot, wait_until

WAIT = 60.0


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


def _actor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(SessionActor.__name__)]


def _quiet_ref(session_id: str) -> pykka.ActorRef[SessionActor]:
    """The session's actor, found without a message (``live_ref`` asks it: a thread)."""
    for ref in pykka.ActorRegistry.get_by_class(SessionActor):
        actor = ref._actor_weakref()
        if actor is not None and actor.session_id == session_id:
            return ref
    msg = f"no actor for {session_id}"
    raise AssertionError(msg)


class TestParkedThreads:
    """An idle actor gives its thread back; the next queued message starts one."""

    def test_create_and_saves_start_no_thread(self, manager: SessionManager) -> None:
        """Creates and saves of idle sessions run in the caller's thread: no actor thread."""
        ids = [manager.create("copilot", {}) for _ in range(5)]
        for session_id in ids:
            manager.checkpoint(session_id, history(2), {"k": 1}, "plan", 1)
        assert sorted(manager.live_sessions()) == sorted(ids)
        assert _actor_threads() == []

    def test_an_idle_thread_parks_and_the_next_message_starts_one(
        self, manager: SessionManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A queued message gets a thread; idle, it exits; the actor stays live and works."""
        monkeypatch.setattr(_mailbox, "PARK_AFTER", 0.05)
        session_id = manager.create("copilot", {})
        assert manager.suspend(session_id) == 2  # a transition is queued: it needs a thread
        wait_until(lambda: _actor_threads() == [])
        assert manager.live_sessions() == [session_id]
        assert manager.resume(session_id) == 3
        assert manager.checkpoint(session_id, history(2), {"k": 1}, "plan", 1) == 4
        assert manager.live(session_id).version == 4

    def test_concurrent_queued_calls_while_threads_park_constantly(
        self, manager: SessionManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """8 threads appending to 4 sessions, threads parking every millisecond: none lost."""
        monkeypatch.setattr(_mailbox, "PARK_AFTER", 0.001)
        ids = [manager.create("copilot", {}) for _ in range(4)]
        threads_before = next(_mailbox._thread_numbers)
        appended = [0] * len(ids)
        count_lock = threading.Lock()

        def work(worker: int) -> None:
            for step in range(60):
                index = (worker + step) % len(ids)
                message = {"role": "user", "content": f"{worker}-{step}"}
                manager.append_messages(ids[index], [message])
                with count_lock:
                    appended[index] += 1
                if step % 7 == 0:
                    assert manager.live(ids[index]).status == "active"
                if step % 11 == 0:
                    time.sleep(0.002)  # long enough for a thread to park

        workers = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(WAIT)
            assert not worker.is_alive()
        assert sum(appended) == 8 * 60
        # The actors' threads parked and started again many times along the way.
        assert next(_mailbox._thread_numbers) - threads_before > 2 * len(ids)
        for index, session_id in enumerate(ids):
            stored = manager.load(session_id)
            assert len(stored["conversation_history"]) == appended[index]
            assert manager.info(session_id)["version"] == 1 + appended[index]

    def test_a_parked_actor_stops_without_a_thread(
        self, manager: SessionManager, limit: _ThreadLimit
    ) -> None:
        """close() stops idle actors in its own thread: none is started to stop them."""
        ids = [manager.create("copilot", {}) for _ in range(3)]
        refs = [_quiet_ref(session_id) for session_id in ids]
        assert _actor_threads() == []
        with limit:
            manager.close()
        assert limit.refused == 0
        assert all(not ref.is_alive() for ref in refs)
        assert pykka.ActorRegistry.get_by_class(SessionActor) == []

    def test_a_parked_actor_is_passivated_without_a_thread(
        self, make_manager: ManagerFactory, limit: _ThreadLimit
    ) -> None:
        """Evicted past max_live, an actor without a thread releases its lease all the same."""
        manager = make_manager(max_live=1)
        first = manager.create("copilot", {})
        assert manager.info(first)["owner"] == manager.instance_id
        with limit:
            manager.create("copilot", {})  # evicts the first actor
        assert limit.refused == 0
        assert first not in manager.live_sessions()
        assert manager.info(first)["owner"] is None
        assert manager.checkpoint(first, history(2), {"k": 1}, "plan", 1) == 2  # rehydrated

    def test_a_message_sent_after_an_inline_stop_is_refused(self, manager: SessionManager) -> None:
        """An ask that lost the race with a stop gets ActorDeadError, as pykka answers."""
        session_id = manager.create("copilot", {})
        ref = _quiet_ref(session_id)
        assert ref.stop() is True
        assert _actor_threads() == []  # stopped in this thread
        future = ref.actor_class._create_future()
        ref.actor_inbox.put(pykka._envelope.Envelope(object(), reply_to=future))
        with pytest.raises(pykka.ActorDeadError):
            future.get(timeout=1)


class TestThreadExhaustion:
    """No thread for an actor that needs one: a typed refusal, and nothing changed."""

    def test_create_and_save_need_no_thread(
        self, manager: SessionManager, limit: _ThreadLimit
    ) -> None:
        """Out of threads, a session is still created, saved and read: none is asked for."""
        with limit:
            session_id = manager.create("copilot", {"model": "m"}, session_id="chosen-1")
            assert manager.checkpoint(session_id, history(2), {"k": 1}, "plan", 1) == 2
            assert manager.load(session_id)["context_variables"] == {"k": 1}
        assert limit.refused == 0

    def test_with_runtimes_a_create_out_of_threads_is_refused_and_writes_nothing(
        self, make_manager: ManagerFactory, limit: _ThreadLimit
    ) -> None:
        """A runtime manager's actor starts with its thread: no thread, no session row."""
        manager = make_manager(runtime_factory=lambda state: object())
        with limit, pytest.raises(TooManyActors):
            manager.create("copilot", {}, session_id="chosen-1")
        assert limit.refused == 1
        assert manager.get_session_info("chosen-1") is None
        assert pykka.ActorRegistry.get_by_class(SessionActor) == []
        assert manager.create("copilot", {}, session_id="chosen-1") == "chosen-1"
        assert len(_actor_threads()) == 1

    def test_a_queued_call_is_refused_and_changes_nothing_now_or_later(
        self, manager: SessionManager, limit: _ThreadLimit
    ) -> None:
        """A suspend needs the actor's thread: TooManyActors, and it never happens later."""
        session_id = manager.create("copilot", {})
        manager.checkpoint(session_id, history(2), {"k": 1}, "plan", 1)
        before = snapshot(manager, session_id)
        with limit:
            with pytest.raises(TooManyActors) as refused:
                manager.suspend(session_id)
            assert isinstance(refused.value, StoreUnavailable)
            assert manager.suspend_session(session_id) is False
        assert limit.refused == 2
        assert snapshot(manager, session_id) == before
        # Threads again: the refused suspends were never queued, so a save still works.
        assert manager.checkpoint(session_id, history(3), {"k": 2}, "plan", 2) == 3
        assert manager.suspend(session_id) == 4

    def test_rehydration_needs_no_thread(
        self, make_manager: ManagerFactory, limit: _ThreadLimit
    ) -> None:
        """A save to a passivated session rehydrates it in the caller's thread."""
        manager = make_manager(max_live=1)
        first = manager.create("copilot", {})
        manager.checkpoint(first, history(2), {"k": 1}, "plan", 1)
        manager.create("copilot", {})  # evicts the first actor (max_live=1)
        wait_until(lambda: first not in manager.live_sessions())
        with limit:
            assert manager.checkpoint(first, history(4), {"k": 2}, "exec", 2) == 3
        assert manager.load(first)["context_variables"] == {"k": 2}

    def test_a_refused_restart_leaves_the_supervisor_running(
        self, manager: SessionManager, limit: _ThreadLimit
    ) -> None:
        """A crash whose restart finds no thread: the next use loads the session."""
        session_id = manager.create("copilot", {})
        manager.checkpoint(session_id, history(2), {"k": 1}, "plan", 1)
        manager.live(session_id)  # queued: the actor has a thread to crash in
        with limit:
            crash(session_id)
            wait_until(lambda: limit.refused == 1)
            assert manager.stats()["crashes"] == 1  # the supervisor still answers
        assert manager.load(session_id)["context_variables"] == {"k": 1}
        assert manager.checkpoint(session_id, history(3), {"k": 2}, "plan", 2) == 3
        assert len(live_refs(session_id)) == 1
        assert manager.live(session_id).version == 3
