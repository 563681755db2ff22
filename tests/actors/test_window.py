"""Sliding windows: ``save_session_state(sid, buffer[-100:], ...)`` stores only the change.

A task executor saves the last 100 messages of its buffer. Once the window slides, the
new list's head is the stored list's tail: the save deletes the rows that fell out of
the window and appends the new ones, instead of rewriting all 100 rows, so storage stays
bounded and a save costs about what an append costs. Each test runs on a real SQLite
file and on the real PostgreSQL, with triggers recording every row written.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from actors import SessionManager, StaleSession
from tests.actors._audit import Audit, Writes, deleted, inserted
from tests.conftest import ManagerFactory, history

WINDOW = 100


class Window:
    """One session saved as ``buffer[-WINDOW:]`` after every step of two messages."""

    def __init__(self, manager: SessionManager, url: str) -> None:
        self.manager = manager
        self.session_id = manager.create_session("copilot", {})
        self.audit = Audit(url)
        self.buffer: list[dict[str, Any]] = []

    def step(self, new: int = 2, **options: Any) -> Writes:
        """Add ``new`` messages to the buffer, save the window; return the rows written."""
        self.buffer += history(new, start=len(self.buffer))
        self.audit.drain()
        ok = self.manager.save_session_state(
            session_id=self.session_id,
            conversation_history=self.buffer[-WINDOW:],
            current_phase="execution",
            current_step=len(self.buffer),
            **options,
        )
        assert ok
        return self.audit.drain()

    def loaded(self) -> list[dict[str, Any]]:
        """The stored history, as loaded back."""
        found: list[dict[str, Any]] = self.manager.load(self.session_id)["conversation_history"]
        return found


@pytest.fixture
def window(any_db_url: str, make_manager: ManagerFactory) -> Window:
    """A session of a manager on SQLite or PostgreSQL, audited."""
    return Window(make_manager(database_url=any_db_url), any_db_url)


def _slid(first_kept: int, stored_end: int, new: int) -> Writes:
    """A slide: the rows before ``first_kept`` deleted, ``new`` rows appended."""
    return sorted(deleted(first_kept - new, first_kept) + inserted(stored_end, stored_end + new))


class TestSlidingWindow:
    """Once the window slides, each save deletes what fell out and appends what is new."""

    def test_each_save_after_the_slide_writes_only_the_change(self, window: Window) -> None:
        """Two messages out, two in, per save; 100 rows stored; loaded = the last window."""
        for _ in range(WINDOW // 2):
            window.step()
        assert len(window.buffer) == WINDOW
        for _ in range(30):
            end = len(window.buffer)
            writes = window.step()
            assert writes == _slid(end + 2 - WINDOW, end, 2)
            assert window.loaded() == window.buffer[-WINDOW:]
        assert window.audit.stored_seqs(window.session_id) == list(range(60, 160))
        info = window.manager.info(window.session_id)
        assert info["message_count"] == WINDOW
        assert window.manager.load(window.session_id)["current_step"] == 160

    def test_a_rehydrated_session_keeps_sliding(
        self, window: Window, make_manager: ManagerFactory, any_db_url: str
    ) -> None:
        """After a restart the window's first seq comes from the database; still the change."""
        for _ in range(60):
            window.step()
        window.manager.close()
        window.manager = make_manager(database_url=any_db_url)
        end = len(window.buffer)
        assert window.step() == _slid(end + 2 - WINDOW, end, 2)
        assert window.loaded() == window.buffer[-WINDOW:]

    def test_a_window_that_drops_more_than_it_adds(self, window: Window) -> None:
        """A list cut from the front (three out, one in) is a slide too, and shrinks."""
        for _ in range(55):
            window.step()
        stored = window.buffer[-WINDOW:]
        window.audit.drain()
        shorter = [*stored[3:], {"role": "user", "content": "one more"}]
        window.manager.checkpoint(window.session_id, shorter)
        assert window.audit.drain() == sorted(deleted(10, 13) + inserted(110, 111))
        assert window.loaded() == shorter

    def test_an_append_after_a_slide_continues_after_the_last_row(self, window: Window) -> None:
        """append_messages after a slide appends at the next seq; nothing else moves."""
        for _ in range(52):
            window.step()
        window.audit.drain()
        window.manager.append_messages(window.session_id, history(1, start=104))
        assert window.audit.drain() == inserted(104, 105)
        assert window.loaded() == [*window.buffer[-WINDOW:], *history(1, start=104)]

    def test_an_unrelated_list_is_still_a_rewrite(self, window: Window) -> None:
        """A new list that does not start with the stored tail replaces the stored one."""
        for _ in range(51):
            window.step()
        window.audit.drain()
        fresh = [{"role": "system", "content": f"summary {i}"} for i in range(5)]
        window.manager.checkpoint(window.session_id, fresh)
        assert window.audit.drain() == sorted(deleted(2, 102) + inserted(2, 7))
        assert window.loaded() == fresh

    def test_a_refused_slide_writes_nothing(self, window: Window) -> None:
        """A slide with a stale expected_version deletes no row and appends none."""
        for _ in range(51):
            window.step()
        version = window.manager.info(window.session_id)["version"]
        window.step()
        window.buffer += history(2, start=len(window.buffer))
        window.audit.drain()
        with pytest.raises(StaleSession):
            window.manager.checkpoint(
                window.session_id, window.buffer[-WINDOW:], expected_version=version
            )
        assert window.audit.drain() == []
        assert window.loaded() == window.buffer[-WINDOW - 2 : -2]

    def test_full_history_check_slides_too(
        self, any_db_url: str, make_manager: ManagerFactory
    ) -> None:
        """With ``history_check="full"`` a slide is recognised from every row's hash."""
        window = Window(make_manager(database_url=any_db_url, history_check="full"), any_db_url)
        for _ in range(51):
            window.step()
        end = len(window.buffer)
        assert window.step() == _slid(end + 2 - WINDOW, end, 2)
        assert window.loaded() == window.buffer[-WINDOW:]

    def test_full_history_check_sees_an_edit_inside_the_overlap(
        self, any_db_url: str, make_manager: ManagerFactory
    ) -> None:
        """An edit at a position no sample covers is not taken for a slide with "full"."""
        window = Window(make_manager(database_url=any_db_url, history_check="full"), any_db_url)
        for _ in range(51):
            window.step()
        window.buffer += history(2, start=len(window.buffer))
        sent = [dict(m) for m in window.buffer[-WINDOW:]]
        sent[50]["content"] = "edited"  # stored at position 52 (seq 54): not sampled
        window.audit.drain()
        window.manager.checkpoint(window.session_id, sent)
        assert window.loaded() == sent
        # Its first message differs from the stored first: stored again from there.
        assert window.audit.drain() == sorted(deleted(2, 102) + inserted(2, 102))

    def test_windows_saved_concurrently_share_batches(
        self, any_db_url: str, make_manager: ManagerFactory
    ) -> None:
        """Eight sessions sliding from eight threads (group-committed together): all right."""
        manager = make_manager(database_url=any_db_url)
        windows = [Window(manager, any_db_url) for _ in range(8)]
        errors: list[BaseException] = []

        def run(window: Window) -> None:
            try:
                for _ in range(60):
                    window.buffer += history(2, start=len(window.buffer))
                    manager.checkpoint(window.session_id, window.buffer[-WINDOW:])
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=run, args=(w,)) for w in windows]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        for window in windows:
            assert window.loaded() == window.buffer[-WINDOW:]
            assert window.audit.stored_seqs(window.session_id) == list(range(20, 120))
