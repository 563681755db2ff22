"""A caller whose values the database refuses never fails its neighbours' saves.

Eight well-behaved sessions save from eight threads while a ninth thread keeps saving a
message that passes validation but that the driver cannot encode (a ``str`` subclass
carrying a lone surrogate). Their saves share group commits; only the poisoned ones fail.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from actors import StoreUnavailable
from tests.conftest import ManagerFactory, history

THREADS = 8
STEPS = 40


class Poisoned(str):
    """A str whose ``encode`` hides a lone surrogate from our validation, not the driver's."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        """What our JSON validation sees: clean bytes."""
        return b"clean"


class TestPoisonedNeighbour:
    """Failures are isolated within a group commit."""

    def test_eight_sessions_save_without_error_next_to_a_poisoned_caller(
        self, make_manager: ManagerFactory, any_db_url: str
    ) -> None:
        """0 errors among 8 x 40 well-behaved saves; every poisoned save is refused."""
        manager = make_manager(database_url=any_db_url)
        good = [manager.create_session("copilot", {}) for _ in range(THREADS)]
        bad = manager.create_session("copilot", {})
        stop = threading.Event()
        refused: list[int] = []

        def poison() -> None:
            step = 0
            while not stop.is_set():
                step += 1
                message = {"role": "user", "content": Poisoned("x \udc80 y")}
                try:
                    manager.checkpoint(bad, [message], {}, "p", step)
                except StoreUnavailable:
                    refused.append(step)

        def work(sid: str) -> int:
            errors = 0
            for step in range(1, STEPS + 1):
                if not manager.save_session_state(sid, history(step * 2), {"s": step}, "p", step):
                    errors += 1
            return errors

        poisoner = threading.Thread(target=poison)
        poisoner.start()
        try:
            with ThreadPoolExecutor(THREADS) as pool:
                errors = sum(pool.map(work, good))
        finally:
            stop.set()
            poisoner.join(10)
        assert errors == 0
        assert refused  # the poisoned caller did share the writer meanwhile
        for sid in good:
            state = manager.load(sid)
            assert state["conversation_history"] == history(STEPS * 2)
        assert manager.load(bad)["conversation_history"] == []
