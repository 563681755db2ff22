"""Delta detection: a save writes only what the database lacks, and rewrites are stored.

The session actor keeps the history's length and sampled messages (the first, every power
of two, the last), never the whole history. SQLite triggers record every row the store
inserts into or deletes from ``session_messages``, so the tests see exactly what a save
wrote, whichever code path wrote it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from actors import SessionManager
from persistence import sample_positions
from tests.conftest import ManagerFactory, history

_AUDIT = """
CREATE TABLE IF NOT EXISTS audit (op TEXT, seq INTEGER);
CREATE TRIGGER IF NOT EXISTS audit_insert AFTER INSERT ON session_messages
    BEGIN INSERT INTO audit VALUES ('insert', NEW.seq); END;
CREATE TRIGGER IF NOT EXISTS audit_delete AFTER DELETE ON session_messages
    BEGIN INSERT INTO audit VALUES ('delete', OLD.seq); END;
"""


class Audited:
    """A manager on a database whose message writes are recorded."""

    def __init__(self, manager: SessionManager, path: Path) -> None:
        self.manager = manager
        self.path = path
        with sqlite3.connect(path) as connection:
            connection.executescript(_AUDIT)
        self.session_id = manager.create_session("copilot", {})

    def save(self, messages: list[dict[str, Any]], **options: Any) -> list[tuple[str, int]]:
        """Checkpoint ``messages``; return the row writes it made, in order."""
        self._drain_audit()
        self.manager.checkpoint(self.session_id, messages, {}, "phase", None, **options)
        return self._drain_audit()

    def stored(self) -> list[dict[str, Any]]:
        """The history as loaded back."""
        history_: list[dict[str, Any]] = self.manager.load(self.session_id)["conversation_history"]
        return history_

    def _drain_audit(self) -> list[tuple[str, int]]:
        with sqlite3.connect(self.path) as connection:
            rows = connection.execute("SELECT op, seq FROM audit ORDER BY rowid").fetchall()
            connection.execute("DELETE FROM audit")
        return [(op, seq) for op, seq in rows]


@pytest.fixture
def audited(make_manager: ManagerFactory, tmp_path: Path) -> Audited:
    """A session on an audited SQLite database."""
    return Audited(make_manager(), tmp_path / "sessions.db")


def _inserted(first: int, end: int) -> list[tuple[str, int]]:
    return [("insert", seq) for seq in range(first, end)]


def _rewritten(old: int, new: int) -> list[tuple[str, int]]:
    return [("delete", seq) for seq in range(old)] + _inserted(0, new)


def _edited(messages: list[dict[str, Any]], position: int) -> list[dict[str, Any]]:
    changed = [dict(m) for m in messages]
    changed[position]["content"] = f"edited {position}"
    return changed


class TestAppend:
    """Appends write only the new messages."""

    def test_only_new_messages_are_inserted(self, audited: Audited) -> None:
        """Growing the same list writes its new tail, nothing else."""
        messages = history(4)
        assert audited.save(messages) == _inserted(0, 4)
        messages += history(3, start=4)
        assert audited.save(messages) == _inserted(4, 7)
        assert audited.stored() == history(7)

    def test_the_same_list_saved_twice_writes_no_message(self, audited: Audited) -> None:
        """A save with no new message only updates the state row."""
        messages = history(6)
        audited.save(messages)
        version = audited.manager.info(audited.session_id)["version"]
        assert audited.save(messages) == []
        assert audited.manager.info(audited.session_id)["version"] == version + 1
        assert audited.stored() == messages

    def test_a_rehydrated_actor_still_appends(
        self, audited: Audited, make_manager: ManagerFactory
    ) -> None:
        """After a restart the samples come from the database; an append stays an append."""
        audited.save(history(9))
        audited.manager.close()
        audited.manager = make_manager()
        assert audited.save(history(11)) == _inserted(9, 11)
        assert audited.stored() == history(11)


class TestRewrittenHistory:
    """Truncated and summarised histories are detected and stored again, whole."""

    def test_a_truncated_history_is_stored_again(self, audited: Audited) -> None:
        """A shorter history replaces the stored one."""
        audited.save(history(6))
        assert audited.save(history(3)) == _rewritten(6, 3)
        assert audited.stored() == history(3)

    def test_a_summary_of_the_same_length_is_detected(self, audited: Audited) -> None:
        """An early message replaced by a summary (same length) is seen at position 1."""
        audited.save(history(8))
        summarised = [history(1)[0], {"role": "system", "content": "summary"}, *history(6, 2)]
        assert audited.save(summarised) == _rewritten(8, 8)
        assert audited.stored() == summarised

    def test_a_summarised_and_grown_history_is_detected(self, audited: Audited) -> None:
        """A summary plus new messages (longer than before) is not taken for an append."""
        audited.save(history(4))
        summarised = [{"role": "system", "content": "summary of 0..3"}, *history(4, 4)]
        assert audited.save(summarised + history(2, 8)) == _rewritten(4, 7)
        assert audited.stored() == summarised + history(2, 8)

    def test_an_edited_last_message_is_detected(self, audited: Audited) -> None:
        """The last stored message is sampled: a streamed-in-place answer is stored again."""
        audited.save(history(7))
        assert audited.save(_edited(history(7), 6)) == _rewritten(7, 7)
        assert audited.stored() == _edited(history(7), 6)

    def test_a_message_mutated_in_place_by_the_caller_is_detected(self, audited: Audited) -> None:
        """The actor keeps its own copies: editing the caller's dict is still a change."""
        messages = history(5)
        audited.save(messages)
        messages[4]["content"] = "changed in place"
        assert audited.save(messages) == _rewritten(5, 5)
        assert audited.stored()[4]["content"] == "changed in place"


class TestSamplingContract:
    """The documented limit: an in-place edit at a non-sampled position needs a flag."""

    @pytest.mark.parametrize("position", [0, 1, 2, 4, 8])
    def test_an_edit_at_a_sampled_position_is_detected(
        self, audited: Audited, position: int
    ) -> None:
        """Positions 0, powers of two and the last are compared on every save."""
        assert position in sample_positions(12)
        audited.save(history(12))
        edited = _edited(history(12), position)
        assert audited.save(edited + history(1, 12)) == _rewritten(12, 13)
        assert audited.stored() == edited + history(1, 12)

    def test_an_edit_at_a_non_sampled_position_is_not_seen(self, audited: Audited) -> None:
        """Position 5 of 12 is not sampled: the save is taken for an append (documented)."""
        assert 5 not in sample_positions(12)
        audited.save(history(12))
        edited = _edited(history(12), 5)
        assert audited.save(edited + history(1, 12)) == _inserted(12, 13)
        assert audited.stored()[5] == history(12)[5]

    def test_history_rewritten_stores_such_an_edit(self, audited: Audited) -> None:
        """``history_rewritten=True`` stores the whole list, whatever the samples say."""
        audited.save(history(12))
        edited = _edited(history(12), 5)
        assert audited.save(edited, history_rewritten=True) == _rewritten(12, 12)
        assert audited.stored() == edited

    def test_history_rewritten_false_never_loses_a_shorter_history(self, audited: Audited) -> None:
        """Claiming an append with a shorter list still stores the shorter list."""
        audited.save(history(6))
        assert audited.save(history(2), history_rewritten=False) == _rewritten(6, 2)
        assert audited.stored() == history(2)
        assert audited.manager.info(audited.session_id)["message_count"] == 2
