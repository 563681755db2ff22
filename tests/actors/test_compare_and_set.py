"""No lost updates between callers: compare-and-set saves, and appends by the actor.

Two handlers that load a session and each save an appended copy used to lose one of the
two messages (the last save won). ``checkpoint(..., expected_version=v)`` refuses the
second with ``StaleSession`` (``save_session_state`` returns False), the database
deciding in the same write; ``append_messages`` sends only the new messages to the
session's actor, which appends them after whatever is stored. Each test runs on a real
SQLite file and on the real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from actors import InvalidArgument, InvalidTransition, ManualClock, SessionManager, StaleSession
from persistence import Checkpoint, NotSerializable, Store
from tests.conftest import ManagerFactory, history


@pytest.fixture
def manager(any_db_url: str, make_manager: ManagerFactory) -> SessionManager:
    """A manager on SQLite or PostgreSQL."""
    return make_manager(database_url=any_db_url)


def _run_threads(count: int, target: Any) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            target(index)
        except BaseException as error:  # noqa: BLE001 - reported by the caller
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return errors


class TestCompareAndSet:
    """``expected_version``: the save applies only if the stored version is that one."""

    def test_two_handlers_that_loaded_the_same_version(self, manager: SessionManager) -> None:
        """The second save of an appended copy is refused, and the first one's message kept."""
        sid = manager.create_session("copilot", {})
        manager.save_session_state(sid, history(2), {}, "chat")
        first = manager.load(sid)
        second = manager.load(sid)
        mine = [*first["conversation_history"], {"role": "user", "content": "from A"}]
        theirs = [*second["conversation_history"], {"role": "user", "content": "from B"}]
        version = manager.checkpoint(sid, mine, expected_version=first["version"])
        assert version == first["version"] + 1
        with pytest.raises(StaleSession):
            manager.checkpoint(sid, theirs, expected_version=second["version"])
        assert manager.load(sid)["conversation_history"] == mine
        assert manager.load(sid)["version"] == version
        # The loser reloads and retries: both messages are kept.
        again = manager.load(sid)
        retried = [*again["conversation_history"], {"role": "user", "content": "from B"}]
        manager.checkpoint(sid, retried, expected_version=again["version"])
        assert manager.load(sid)["conversation_history"][-2:] == [mine[-1], retried[-1]]

    def test_the_seed_method_returns_false(self, manager: SessionManager) -> None:
        """``save_session_state(..., expected_version=v)``: True, then False once stale."""
        sid = manager.create_session("copilot", {})
        version = manager.load(sid)["version"]
        assert manager.save_session_state(sid, history(1), {}, "p", expected_version=version)
        stale = manager.save_session_state(sid, history(2), {"x": 1}, "q", expected_version=version)
        assert stale is False
        state = manager.load_session_state(sid)
        assert state is not None
        assert (state["conversation_history"], state["context_variables"]) == (history(1), {})
        assert (state["current_phase"], state["version"]) == ("p", version + 1)

    def test_the_async_twins_take_it_too(self, manager: SessionManager) -> None:
        """``acheckpoint`` raises StaleSession, ``asave_session_state`` returns False."""
        sid = manager.create_session("copilot", {})
        version = manager.load(sid)["version"]

        async def main() -> tuple[int, bool]:
            new = await manager.acheckpoint(sid, history(1), expected_version=version)
            with pytest.raises(StaleSession):
                await manager.acheckpoint(sid, history(2), expected_version=version)
            ok = await manager.asave_session_state(sid, history(3), expected_version=version)
            return new, ok

        assert asyncio.run(main()) == (version + 1, False)
        assert manager.load(sid)["conversation_history"] == history(1)

    def test_of_many_concurrent_savers_of_one_version_exactly_one_wins(
        self, manager: SessionManager
    ) -> None:
        """16 threads save their own copy with the same expected version: one is stored."""
        sid = manager.create_session("copilot", {})
        version = manager.load(sid)["version"]
        won: list[int] = []

        def save(index: int) -> None:
            mine = [{"role": "user", "content": f"thread {index}"}]
            try:
                manager.checkpoint(sid, mine, expected_version=version)
                won.append(index)
            except StaleSession:
                pass

        assert _run_threads(16, save) == []
        assert len(won) == 1
        stored = manager.load(sid)
        assert stored["conversation_history"] == [{"role": "user", "content": f"thread {won[0]}"}]
        assert stored["version"] == version + 1

    def test_the_callers_version_goes_into_the_fenced_write(
        self, manager: SessionManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The database compares the caller's version (not a check in Python before it)."""
        sid = manager.create_session("copilot", {})
        manager.checkpoint(sid, history(1))
        sent: list[Checkpoint] = []
        original = Store.checkpoint

        def spy(store: Store, cp: Checkpoint, timeout: float | None = None) -> int:
            sent.append(cp)
            return original(store, cp, timeout)

        monkeypatch.setattr(Store, "checkpoint", spy)
        with pytest.raises(StaleSession):
            manager.checkpoint(sid, history(2), expected_version=1)
        assert [cp.expected_version for cp in sent] == [1]

    @pytest.mark.parametrize("bad", [0, -1, "2", 2.0, True, 2**31])
    def test_a_bad_expected_version_is_refused(self, manager: SessionManager, bad: Any) -> None:
        """Not a positive 32-bit int: InvalidArgument, nothing stored."""
        sid = manager.create_session("copilot", {})
        with pytest.raises(InvalidArgument, match="expected_version"):
            manager.checkpoint(sid, history(1), expected_version=bad)
        assert manager.load(sid)["version"] == 1

    def test_lease_renewals_and_rehydration_never_move_the_version(
        self, any_db_url: str, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """A version read before renewals, a passivation and a new manager still matches."""
        manager = make_manager(database_url=any_db_url, lease_ttl=30.0)
        sid = manager.create_session("copilot", {})
        version = manager.checkpoint(sid, history(2))
        epoch = manager.database.store.state(sid).epoch  # type: ignore[union-attr]
        for _ in range(5):
            clock.advance(seconds=11)
            manager._core.supervisor.renew_leases().get(timeout=10)
        state = manager.database.store.state(sid)
        assert state is not None
        assert state.lease_expires_at == clock() + manager._core.settings.lease_ttl
        assert (state.version, state.epoch) == (version, epoch)
        manager.close()
        other = make_manager(database_url=any_db_url)
        assert other.checkpoint(sid, history(3), expected_version=version) == version + 1


class TestAppendMessages:
    """``append_messages``: appended by the session's actor; no concurrent append is lost."""

    def test_sixteen_threads_of_fifty_appends(self, manager: SessionManager) -> None:
        """All 800 messages are stored, each once, each thread's in its order."""
        sid = manager.create_session("copilot", {})

        def append(index: int) -> None:
            for n in range(50):
                manager.append_messages(sid, [{"role": "user", "content": f"t{index} m{n}"}])

        assert _run_threads(16, append) == []
        stored = [m["content"] for m in manager.load(sid)["conversation_history"]]
        assert len(stored) == 800
        assert len(set(stored)) == 800
        for index in range(16):
            mine = [c for c in stored if c.startswith(f"t{index} ")]
            assert mine == [f"t{index} m{n}" for n in range(50)]
        assert manager.info(sid)["message_count"] == 800

    def test_returns_the_new_version_and_keeps_what_is_left_out(
        self, manager: SessionManager
    ) -> None:
        """Context, phase and step left out keep their stored values; given, they are set."""
        sid = manager.create_session("copilot", {})
        v1 = manager.checkpoint(sid, history(2), {"k": 1}, "plan", 3)
        v2 = manager.append_messages(sid, history(1, start=2))
        assert v2 == v1 + 1
        state = manager.load(sid)
        assert state["conversation_history"] == history(3)
        assert (state["context_variables"], state["current_phase"]) == ({"k": 1}, "plan")
        assert state["current_step"] == 3
        v3 = manager.append_messages(sid, history(2, start=3), {"k": 2}, "act", 4)
        state = manager.load(sid)
        assert v3 == v2 + 1
        assert state["conversation_history"] == history(5)
        assert (state["context_variables"], state["current_phase"]) == ({"k": 2}, "act")
        assert (state["current_step"], state["version"]) == (4, v3)

    def test_a_whole_list_save_then_appends_then_a_whole_list_again(
        self, manager: SessionManager
    ) -> None:
        """The actor's view of the history stays right: the next full save is an append."""
        sid = manager.create_session("copilot", {})
        manager.checkpoint(sid, history(3))
        manager.append_messages(sid, history(2, start=3))
        manager.checkpoint(sid, history(7))
        assert manager.load(sid)["conversation_history"] == history(7)

    def test_after_a_restart_the_append_goes_after_the_stored_history(
        self, any_db_url: str, make_manager: ManagerFactory
    ) -> None:
        """A rehydrated actor appends after the stored messages."""
        manager = make_manager(database_url=any_db_url)
        sid = manager.create_session("copilot", {})
        manager.checkpoint(sid, history(4))
        manager.close()
        other = make_manager(database_url=any_db_url)
        other.append_messages(sid, history(2, start=4))
        assert other.load(sid)["conversation_history"] == history(6)

    def test_the_async_twin(self, manager: SessionManager) -> None:
        """``aappend_messages`` appends and returns the version."""
        sid = manager.create_session("copilot", {})

        async def main() -> list[int]:
            return list(
                await asyncio.gather(
                    *(manager.aappend_messages(sid, history(1, start=i)) for i in range(8))
                )
            )

        versions = asyncio.run(main())
        assert sorted(versions) == list(range(2, 10))
        assert len(manager.load(sid)["conversation_history"]) == 8

    def test_a_bad_message_stores_nothing(self, manager: SessionManager) -> None:
        """One message that is not JSON refuses the whole append."""
        sid = manager.create_session("copilot", {})
        manager.checkpoint(sid, history(1))
        with pytest.raises(NotSerializable, match=r"messages\[1\]"):
            manager.append_messages(sid, [*history(1), {"content": (1, 2)}])
        with pytest.raises(InvalidArgument):
            manager.append_messages(sid, {"role": "user"})  # type: ignore[arg-type]
        assert manager.load(sid)["conversation_history"] == history(1)
        manager.append_messages(sid, history(1, start=1))
        assert manager.load(sid)["conversation_history"] == history(2)

    def test_a_completed_session_is_refused(self, manager: SessionManager) -> None:
        """Only an active session takes messages."""
        sid = manager.create_session("copilot", {})
        manager.complete_session(sid)
        with pytest.raises(InvalidTransition):
            manager.append_messages(sid, history(1))
