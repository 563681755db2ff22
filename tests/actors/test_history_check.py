"""Change detection compares what is stored, and ``history_check="full"`` compares it all.

Python says ``1 == True == 1.0`` and ``0.0 == -0.0``; the database stores ``1``, ``true``,
``1.0`` and ``-0.0``. A message changed from one to the other is a change, stored when
acknowledged. By default only sampled positions are compared (the first, every power of
two, the last): an in-place edit elsewhere goes unseen, the documented gap that
``history_check="full"`` closes. Each test runs on a real SQLite file and on the real
PostgreSQL.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from actors import InvalidArgument, SessionManager, create_session_manager
from persistence import sample_positions
from tests.actors._audit import Audit, Writes, deleted, inserted
from tests.conftest import ManagerFactory, history


class Audited:
    """A session whose message row writes are recorded."""

    def __init__(self, manager: SessionManager, url: str) -> None:
        self.manager = manager
        self.session_id = manager.create_session("copilot", {})
        self.audit = Audit(url)

    def save(self, messages: list[dict[str, Any]]) -> Writes:
        """Checkpoint ``messages``; return the row writes it made."""
        self.audit.drain()
        self.manager.checkpoint(self.session_id, messages)
        return self.audit.drain()

    def stored(self) -> list[dict[str, Any]]:
        """The history as loaded back."""
        found: list[dict[str, Any]] = self.manager.load(self.session_id)["conversation_history"]
        return found


@pytest.fixture(params=["sampled", "full"])
def audited(
    request: pytest.FixtureRequest, any_db_url: str, make_manager: ManagerFactory
) -> Audited:
    """A session on SQLite or PostgreSQL, with either history check."""
    options = {"history_check": "full"} if request.param == "full" else {}
    return Audited(make_manager(database_url=any_db_url, **options), any_db_url)


@pytest.fixture
def full(any_db_url: str, make_manager: ManagerFactory) -> Audited:
    """A session of a manager with ``history_check="full"``."""
    return Audited(make_manager(database_url=any_db_url, history_check="full"), any_db_url)


@pytest.fixture
def sampled(any_db_url: str, make_manager: ManagerFactory) -> Audited:
    """A session of a manager with the default, sampled history check."""
    return Audited(make_manager(database_url=any_db_url), any_db_url)


#: (stored value, new value): equal in Python, different as stored.
SWAPS = [(1, True), (True, 1), (1, 1.0), (1.0, 1), (0.0, -0.0), (-0.0, 0.0), (0, False)]


def _with(value: Any, count: int = 9) -> list[dict[str, Any]]:
    """``count`` messages; the last one carries ``value``."""
    messages = history(count)
    messages[-1] = {**messages[-1], "score": value}
    return messages


def _same(stored: Any, sent: Any) -> bool:
    """Same type and value, zero's sign included."""
    if type(stored) is not type(sent):
        return False
    if isinstance(sent, float):
        return stored == sent and math.copysign(1, stored) == math.copysign(1, sent)
    return bool(stored == sent)


class TestStoredEncodingIsCompared:
    """A value swapped for one Python calls equal is stored, at a sampled position."""

    @pytest.mark.parametrize(("before", "after"), SWAPS, ids=repr)
    def test_a_swapped_value_is_stored(self, audited: Audited, before: Any, after: Any) -> None:
        """Acknowledged means stored: the loaded value has the new type (and sign)."""
        audited.save(_with(before))
        assert audited.save(_with(after)) != []
        assert _same(audited.stored()[-1]["score"], after)

    @pytest.mark.parametrize(("before", "after"), SWAPS[:3], ids=repr)
    def test_a_swap_in_a_grown_list_is_not_taken_for_an_append(
        self, audited: Audited, before: Any, after: Any
    ) -> None:
        """The changed message was stored at position 8 (sampled); more messages follow."""
        audited.save(_with(before))
        audited.save(_with(after) + history(3, start=9))
        assert _same(audited.stored()[8]["score"], after)
        assert audited.stored()[9:] == history(3, start=9)

    def test_a_string_that_looks_like_a_number(self, audited: Audited) -> None:
        """``"1"`` (a column) and ``1`` (JSON) are different rows too."""
        audited.save([{"role": "user", "content": "1"}])
        audited.save([{"role": "user", "content": 1}])
        assert audited.stored() == [{"role": "user", "content": 1}]
        assert type(audited.stored()[0]["content"]) is int


class TestSampledGap:
    """The default compares sampled positions only: its documented gap."""

    def test_an_edit_at_a_position_not_sampled_goes_unseen(self, sampled: Audited) -> None:
        """Position 5 of 12 is not sampled: the save is taken for an append."""
        assert 5 not in sample_positions(12)
        sampled.save(history(12))
        edited = history(13)
        edited[5] = {**edited[5], "score": True}
        assert sampled.save(edited) == inserted(12, 13)
        assert "score" not in sampled.stored()[5]


class TestFullCheck:
    """``history_check="full"`` compares every message; it rewrites from the first change."""

    def test_an_edit_anywhere_is_stored_from_there(self, full: Audited) -> None:
        """An edit at position 5 rewrites rows 5.. only, plus the new ones."""
        full.save(history(12))
        edited = history(13)
        edited[5] = {**edited[5], "score": True}
        assert full.save(edited) == sorted(deleted(5, 12) + inserted(5, 13))
        assert full.stored() == edited

    def test_a_type_swap_in_the_middle(self, full: Audited) -> None:
        """``1`` to ``1.0`` at a position no sample covers is stored."""
        messages = _with(1, count=12)
        messages[6] = {**messages[6], "n": 1}
        full.save(messages)
        changed = [dict(m) for m in messages]
        changed[6]["n"] = 1.0
        assert full.save(changed) == sorted(deleted(6, 12) + inserted(6, 12))
        assert type(full.stored()[6]["n"]) is float

    def test_appends_stay_appends(self, full: Audited) -> None:
        """An unchanged prefix writes only the new rows."""
        full.save(history(10))
        assert full.save(history(14)) == inserted(10, 14)
        assert full.save(history(14)) == []

    def test_a_rehydrated_actor_reads_the_stored_rows_once(
        self, any_db_url: str, make_manager: ManagerFactory
    ) -> None:
        """After a restart the hashes come from the stored rows; an edit is still seen."""
        first = Audited(make_manager(database_url=any_db_url, history_check="full"), any_db_url)
        first.save(history(12))
        first.manager.close()
        again = make_manager(database_url=any_db_url, history_check="full")
        first.manager = again
        edited = history(12)
        edited[3] = {**edited[3], "content": "edited"}
        assert first.save(edited) == sorted(deleted(3, 12) + inserted(3, 12))
        assert first.save([*edited, *history(1, start=12)]) == inserted(12, 13)
        assert first.stored() == [*edited, *history(1, start=12)]

    def test_a_truncated_history(self, full: Audited) -> None:
        """A shorter list that is a prefix deletes the rest and inserts nothing."""
        full.save(history(8))
        assert full.save(history(5)) == deleted(5, 8)
        assert full.stored() == history(5)


class TestSetting:
    """``history_check`` is checked when the manager is made."""

    @pytest.mark.parametrize("bad", ["FULL", "all", "", None, 1, True])
    def test_anything_else_is_refused(self, db_url: str, bad: Any, tmp_path: Any) -> None:
        """InvalidArgument naming the setting; no file is created."""
        path = tmp_path / "refused.db"
        with pytest.raises(InvalidArgument, match="history_check"):
            create_session_manager(f"sqlite:///{path}", history_check=bad)
        assert not path.exists()
