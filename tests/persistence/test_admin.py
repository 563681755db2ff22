"""The operators' store operations: history, purge, overview, export/import, revisions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from persistence import (
    EXPORT_FORMAT,
    Checkpoint,
    Database,
    InvalidArgument,
    NewSession,
    NotSerializable,
    SessionExists,
    SessionOwnedElsewhere,
    encode_message,
    head_revision,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """An open store on a fresh SQLite file."""
    database = Database.open(db_url)
    yield database
    database.close()


def make_session(
    db: Database,
    session_id: str,
    *,
    messages: int = 0,
    status: str = "active",
    at: datetime = T0,
    owner: str | None = None,
    mode: str = "task",
) -> None:
    """Create a session with ``messages`` messages, then move it to ``status`` at ``at``."""
    lease = at + timedelta(seconds=30) if owner else None
    db.store.create_session(
        NewSession(session_id, "u", session_id, mode, "{}", at, at + timedelta(days=1),
                   owner, lease)
    )  # fmt: skip
    if messages:
        rows = [
            encode_message({"role": "user", "content": f"m{i}"}, "$", None) for i in range(messages)
        ]
        db.store.checkpoint(
            Checkpoint(session_id, 1, 1, "{}", None, False, "work", 1, at,
                       at + timedelta(days=1), 0, rows)
        )  # fmt: skip
    if status != "active":
        state = db.store.state(session_id)
        assert state is not None
        db.store.transition(session_id, state.epoch, state.version, ("active",), status,
                            status, at, None, True)  # fmt: skip


class TestHistory:
    """``Store.history``."""

    def test_tail_and_whole(self, db: Database) -> None:
        """The last N messages with their seq, oldest first; None for an unknown session."""
        make_session(db, "s1", messages=5)
        tail = db.store.history("s1", 2)
        assert tail is not None
        assert [seq for seq, _ in tail] == [3, 4]
        whole = db.store.history("s1")
        assert whole is not None
        assert [m["content"] for _, m in whole] == [f"m{i}" for i in range(5)]
        assert db.store.history("nope") is None
        make_session(db, "empty")
        assert db.store.history("empty", 3) == []


class TestPurge:
    """``Store.purge`` and ``Store.count_purgeable``."""

    def test_selects_by_status_age_and_lease(self, db: Database) -> None:
        """Only finished-status, old, unowned sessions go; at most ``limit`` per call."""
        for index in range(3):
            make_session(db, f"old{index}", messages=2, status="completed", at=T0)
        make_session(db, "young", status="completed", at=T0 + timedelta(days=20))
        make_session(db, "active-old", at=T0)
        make_session(db, "held", at=T0, owner="w1")
        now = T0 + timedelta(days=40)
        cutoff = now - timedelta(days=30)
        assert db.store.count_purgeable(["completed"], cutoff, now) == 3
        first = db.store.purge(["completed"], cutoff, now, 2)
        assert len(first) == 2
        rest = db.store.purge(["completed"], cutoff, now, 2)
        assert len(rest) == 1
        assert db.store.purge(["completed"], cutoff, now, 2) == []
        assert db.store.history("young") == []
        assert db.store.session_info("old0") is None
        # an active session whose lease lapsed may go; one held by a live owner stays
        held_now = T0 + timedelta(seconds=10)
        early_cutoff = held_now
        assert db.store.purge(["active"], early_cutoff, held_now, 10) == ["active-old"]
        assert db.store.session_info("held") is not None


class TestOverview:
    """``Store.overview``."""

    def test_counts(self, db: Database) -> None:
        """Counts by status and mode, messages, leases, the oldest active, size, revision."""
        make_session(db, "a", messages=3, at=T0 + timedelta(hours=1), mode="copilot")
        make_session(db, "b", messages=1, at=T0, owner="w1")
        make_session(db, "c", status="completed")
        overview = db.store.overview(T0 + timedelta(seconds=5))
        assert overview.sessions == 3
        assert overview.by_status == {"active": 2, "suspended": 0, "completed": 1, "expired": 0}
        assert overview.by_mode == {"copilot": {"active": 1}, "task": {"active": 1, "completed": 1}}
        assert overview.messages == 4
        assert overview.leased == 1
        assert overview.oldest_active is not None
        assert overview.oldest_active.session_id == "b"
        assert overview.database_bytes is not None
        assert overview.database_bytes > 0
        assert overview.schema_revision == head_revision()


class TestExportImport:
    """``Store.export_session`` / ``Store.import_session``."""

    def test_round_trip(self, db: Database) -> None:
        """A document imported under a new id exports to the same document."""
        make_session(db, "s1", messages=3)
        document = db.store.export_session("s1")
        assert document is not None
        assert document["format"] == EXPORT_FORMAT
        assert "owner" not in document["state"]
        with pytest.raises(SessionExists):
            db.store.import_session(document, T0)
        document["session"]["id"] = "s2"
        assert db.store.import_session(document, T0) == "s2"
        again = db.store.export_session("s2")
        assert again == document
        assert db.store.export_session("nope") is None

    def test_replace_refuses_a_live_owner(self, db: Database) -> None:
        """--replace of a session a live owner holds raises SessionOwnedElsewhere."""
        make_session(db, "held", owner="w1")
        document = db.store.export_session("held")
        with pytest.raises(SessionOwnedElsewhere):
            db.store.import_session(document, T0, replace=True)
        later = T0 + timedelta(minutes=5)
        assert db.store.import_session(document, later, replace=True) == "held"

    @pytest.mark.parametrize(
        ("change", "path"),
        [
            (lambda d: d.update(format_version=99), "format_version"),
            (lambda d: d["session"].pop("name"), "$.session.name is missing"),
            (lambda d: d["session"].update(status="sleeping"), "$.session.status"),
            (lambda d: d["state"].update(version="2"), "$.state.version"),
            (lambda d: d["state"].update(message_count=9), "message_count"),
            (lambda d: d["state"].update(created_at="2030-01-01T00:00:00"), "no time zone"),
            (lambda d: d["messages"].append(["x"]), "$.messages[3]"),
            (lambda d: d.update(approvals=[{"id": "a"}]), "$.approvals[0]"),
        ],
    )
    def test_invalid_documents_write_nothing(self, db: Database, change: Any, path: str) -> None:
        """Every kind of bad document is refused with its JSON path before any write."""
        make_session(db, "s1", messages=3)
        document = db.store.export_session("s1")
        assert document is not None
        document["session"]["id"] = "s2"
        change(document)
        with pytest.raises(
            (InvalidArgument, NotSerializable), match=path.replace("[", r"\[").replace("$", r"\$")
        ):
            db.store.import_session(document, T0)
        assert db.store.session_info("s2") is None


class TestRevisions:
    """``Store.schema_revision`` and ``Store.migrate``."""

    def test_revision_is_head_after_open(self, db: Database) -> None:
        """Database.open migrates to head; migrate() again is a no-op."""
        assert db.store.schema_revision() == head_revision()
        db.store.migrate()
        assert db.store.schema_revision() == head_revision()

    def test_empty_database_has_no_revision(self, db_url: str) -> None:
        """Opened without migrating, a new file has no revision until migrate()."""
        database = Database.open(db_url, migrate=False)
        try:
            assert database.store.schema_revision() is None
            database.store.migrate()
            assert database.store.schema_revision() == head_revision()
        finally:
            database.close()
