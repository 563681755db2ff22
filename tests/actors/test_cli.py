"""The ``sessions`` command on a real SQLite file: every subcommand, exit codes, errors."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import structlog
from click.testing import CliRunner, Result
from sqlalchemy import Table, create_engine, insert

from actors import ManualClock
from actors.cli import _purge as cli_purge
from actors.cli import cli
from actors.cli._format import parse_duration
from actors.cli._support import ExitCode
from persistence import Database, StoreUnavailable
from persistence._models import SessionMessageRow, SessionRow, SessionStateRow
from tests.conftest import ManagerFactory, history

# Long enough ago that `purge --older-than 30d` (real time) selects these sessions.
PAST = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures structlog for its process; give the next tests theirs back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def past() -> ManualClock:
    """A clock in the past, so that the sessions it stamps are old in real time."""
    return ManualClock(PAST)


@pytest.fixture
def db_path(db_url: str) -> Path:
    """The SQLite file behind ``db_url``."""
    return Path(db_url.split(":///", 1)[1])


def run(db_url: str, *args: str, input: str | None = None) -> Result:  # noqa: A002
    """Invoke ``sessions --database-url db_url ARGS`` in-process."""
    return CliRunner().invoke(cli, ["--database-url", db_url, *args], input=input)


def run_json(db_url: str, *args: str) -> Any:
    """Invoke a subcommand with ``--json``; it must succeed; return the parsed output."""
    result = run(db_url, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def listed(db_url: str, *args: str) -> list[dict[str, Any]]:
    """The sessions of ``sessions list ARGS --json`` (one page)."""
    sessions: list[dict[str, Any]] = run_json(db_url, "list", *args)["sessions"]
    return sessions


class Seeded:
    """Five sessions created an hour apart, in every status, by a closed manager."""

    def __init__(self, make_manager: ManagerFactory, clock: ManualClock) -> None:
        manager = make_manager(clock=clock)
        self.ids: dict[str, str] = {}
        specs = [
            ("done", "task", "alice"),
            ("gone", "copilot", "bob"),
            ("paused", "task", "alice"),
            ("busy", "copilot", "bob"),
            ("fresh", "task", "carol"),
        ]
        for index, (label, mode, user) in enumerate(specs):
            session_id = manager.create_session(mode, {"label": label}, user_id=user, name=label)
            manager.save_session_state(
                session_id, history(index + 1), {"label": label}, "planning", index
            )
            self.ids[label] = session_id
            clock.advance(hours=1)
        manager.complete(self.ids["done"])
        manager.expire(self.ids["gone"])
        manager.suspend(self.ids["paused"])
        self.approval = manager.request_approval(self.ids["busy"], "plan", {"steps": 3})
        manager.close()

    def __getitem__(self, label: str) -> str:
        return self.ids[label]


@pytest.fixture
def seeded(make_manager: ManagerFactory, past: ManualClock) -> Seeded:
    """The five sessions of :class:`Seeded`; no live worker holds any of them."""
    return Seeded(make_manager, past)


def counts(db_path: Path) -> dict[str, int]:
    """Rows per table, straight from the file."""
    with sqlite3.connect(db_path) as connection:
        return {
            table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("sessions", "session_states", "session_messages", "approval_requests")
        }


def assert_consistent(db_path: Path) -> None:
    """No orphan rows, no broken foreign key, SQLite's integrity check passes."""
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        for table in ("session_states", "session_messages", "approval_requests"):
            orphans = connection.execute(
                f"SELECT count(*) FROM {table} WHERE session_id NOT IN (SELECT id FROM sessions)"
            ).fetchone()[0]
            assert orphans == 0, table
        missing = connection.execute(
            "SELECT count(*) FROM sessions WHERE id NOT IN (SELECT session_id FROM session_states)"
        ).fetchone()[0]
        assert missing == 0
        wrong = connection.execute(
            "SELECT count(*) FROM session_states s WHERE message_count !="
            " (SELECT count(*) FROM session_messages m WHERE m.session_id = s.session_id)"
        ).fetchone()[0]
        assert wrong == 0


class TestList:
    """``sessions list``: filters, newest first, table or JSON."""

    def test_table_lists_every_session_newest_first(self, db_url: str, seeded: Seeded) -> None:
        """The table has a header and one line per session, the newest created first."""
        result = run(db_url, "list")
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0].split()[:4] == ["ID", "USER", "MODE", "STATUS"]
        order = [line.split()[0] for line in lines[1:]]
        assert order == [seeded[x] for x in ("fresh", "busy", "paused", "gone", "done")]

    def test_filters_by_user_status_and_mode(self, db_url: str, seeded: Seeded) -> None:
        """--user, --status and --mode narrow the list and combine."""
        alice = listed(db_url, "--user", "alice")
        assert [r["session_id"] for r in alice] == [seeded["paused"], seeded["done"]]
        active = listed(db_url, "--status", "active")
        assert {r["session_id"] for r in active} == {seeded["busy"], seeded["fresh"]}
        both = listed(db_url, "--mode", "task", "--status", "completed")
        assert [r["session_id"] for r in both] == [seeded["done"]]
        assert both[0]["message_count"] == 1
        assert listed(db_url, "--user", "nobody") == []

    def test_limit_and_sort_by_update(self, db_url: str, seeded: Seeded) -> None:
        """--limit caps the rows; --sort updated orders by the last change."""
        assert len(listed(db_url, "--limit", "2")) == 2
        by_update = listed(db_url, "--sort", "updated")
        assert by_update[0]["updated_at"] >= by_update[-1]["updated_at"]

    def test_bad_status_is_a_usage_error(self, db_url: str, seeded: Seeded) -> None:
        """An unknown status exits 2 and names the allowed ones."""
        result = run(db_url, "list", "--status", "sleeping")
        assert result.exit_code == ExitCode.USAGE
        assert "active" in result.stderr


class TestShow:
    """``sessions show ID``: state, phase, step, version, lease, last messages."""

    def test_shows_the_state_and_last_messages(self, db_url: str, seeded: Seeded) -> None:
        """The table names the status, phase, step, lease and the last messages."""
        result = run(db_url, "show", seeded["busy"], "--messages", "2")
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert "status        active" in out
        assert "phase         planning" in out
        assert "step          3" in out
        assert "none (no live worker holds it)" in out
        assert "1 pending" in out
        assert "[2] user: message 2" in out
        assert "[3] assistant: message 3" in out
        assert "[1]" not in out

    def test_json_has_everything(self, db_url: str, seeded: Seeded) -> None:
        """--json gives the context, config, approvals and messages with their seq."""
        document = run_json(db_url, "show", seeded["busy"])
        assert document["status"] == "active"
        assert document["context_variables"] == {"label": "busy"}
        assert document["config"] == {"label": "busy"}
        assert document["pending_approvals"][0]["approval_id"] == seeded.approval
        assert [m["seq"] for m in document["last_messages"]] == [0, 1, 2, 3]
        assert document["last_messages"][0]["message"] == history(1)[0]

    def test_shows_the_lease_of_a_live_worker(
        self, db_url: str, make_manager: ManagerFactory
    ) -> None:
        """A session held by a running manager shows who holds it and until when."""
        worker = make_manager(clock=ManualClock(datetime.now(UTC)), instance_id="worker-7")
        session_id = worker.create_session("copilot", {})
        result = run(db_url, "show", session_id)
        assert result.exit_code == 0, result.output
        assert "held by worker-7" in result.stdout

    def test_unknown_id_exits_3(self, db_url: str, seeded: Seeded) -> None:
        """An unknown id is a clear error with exit code 3."""
        result = run(db_url, "show", "no-such-session")
        assert result.exit_code == ExitCode.NOT_FOUND
        assert "session 'no-such-session' does not exist" in result.stderr


class TestHistory:
    """``sessions history ID --tail N``."""

    def test_whole_history_oldest_first(self, db_url: str, seeded: Seeded) -> None:
        """Without --tail every message is printed, oldest first, with its seq."""
        result = run(db_url, "history", seeded["fresh"])
        assert result.exit_code == 0, result.output
        heads = [line for line in result.stdout.splitlines() if line.startswith("[")]
        assert heads == ["[0] user", "[1] assistant", "[2] user", "[3] assistant", "[4] user"]
        assert "    message 4" in result.stdout

    def test_tail_as_json(self, db_url: str, seeded: Seeded) -> None:
        """--tail 2 --json gives exactly the two last messages, unchanged."""
        messages = run_json(db_url, "history", seeded["fresh"], "--tail", "2")
        assert messages == [
            {"seq": 3, "message": history(5)[3]},
            {"seq": 4, "message": history(5)[4]},
        ]

    def test_unknown_id_and_bad_tail(self, db_url: str, seeded: Seeded) -> None:
        """Unknown id: exit 3; --tail 0: exit 2."""
        assert run(db_url, "history", "nope").exit_code == ExitCode.NOT_FOUND
        assert run(db_url, "history", seeded["fresh"], "--tail", "0").exit_code == ExitCode.USAGE


class TestLifecycle:
    """suspend, resume, complete and expire go through the session's actor."""

    def test_suspend_resume_complete(self, db_url: str, seeded: Seeded) -> None:
        """Each command changes the status and reports the new version."""
        sid = seeded["busy"]
        result = run(db_url, "suspend", sid)
        assert result.exit_code == 0, result.output
        assert f"session {sid} is suspended" in result.stdout
        assert run_json(db_url, "show", sid)["status"] == "suspended"
        resumed = run_json(db_url, "resume", sid)
        assert resumed["status"] == "active"
        assert run_json(db_url, "complete", sid)["status"] == "completed"
        shown = run_json(db_url, "show", sid)
        assert shown["status"] == "completed"
        assert shown["owner"] is None  # the CLI released the lease it took

    def test_expire(self, db_url: str, seeded: Seeded) -> None:
        """The expire command flips an active session to expired."""
        assert run(db_url, "expire", seeded["fresh"]).exit_code == 0
        assert run_json(db_url, "show", seeded["fresh"])["status"] == "expired"

    def test_refused_transition_exits_4(self, db_url: str, seeded: Seeded) -> None:
        """Resuming a completed session is refused with exit code 4; nothing changes."""
        result = run(db_url, "resume", seeded["done"])
        assert result.exit_code == ExitCode.REFUSED
        assert "cannot resume" in result.stderr
        assert run_json(db_url, "show", seeded["done"])["status"] == "completed"

    def test_unknown_id_exits_3(self, db_url: str, seeded: Seeded) -> None:
        """Suspending an unknown session exits 3."""
        result = run(db_url, "suspend", "nope")
        assert result.exit_code == ExitCode.NOT_FOUND
        assert "does not exist" in result.stderr

    def test_a_live_worker_hands_the_session_over(
        self, db_url: str, make_manager: ManagerFactory
    ) -> None:
        """A running manager holding the lease hands it over on request: the change is made."""
        worker = make_manager(clock=ManualClock(datetime.now(UTC)), instance_id="worker-1")
        session_id = worker.create_session("copilot", {})
        result = run(db_url, "suspend", session_id)
        assert result.exit_code == 0, result.output
        assert worker.info(session_id)["status"] == "suspended"
        assert worker.live_sessions() == []
        assert worker.resume_session(session_id) is True  # and takes it back on its next use

    def test_session_held_by_a_unit_of_work_exits_5(
        self, db_url: str, make_manager: ManagerFactory
    ) -> None:
        """While a worker's unit of work holds the session the CLI refuses, and changes nothing."""
        worker = make_manager(
            clock=ManualClock(datetime.now(UTC)),
            instance_id="worker-1",
            runtime_factory=lambda state: object(),
        )
        session_id = worker.create_session("copilot", {})
        with worker.unit_of_work(session_id, checkpoint=False):
            result = run(db_url, "suspend", session_id)
        assert result.exit_code == ExitCode.BUSY
        assert "worker-1" in result.stderr
        assert worker.info(session_id)["status"] == "active"
        assert worker.save_session_state(session_id, history(2), {}, "still mine") is True


class TestDelete:
    """``sessions delete ID``."""

    def test_delete_with_yes(self, db_url: str, seeded: Seeded, db_path: Path) -> None:
        """--yes deletes the session with its history and approvals."""
        before = counts(db_path)
        result = run(db_url, "delete", seeded["busy"], "--yes")
        assert result.exit_code == 0, result.output
        assert run(db_url, "show", seeded["busy"]).exit_code == ExitCode.NOT_FOUND
        after = counts(db_path)
        assert after["sessions"] == before["sessions"] - 1
        assert after["session_messages"] == before["session_messages"] - 4
        assert after["approval_requests"] == before["approval_requests"] - 1
        assert_consistent(db_path)

    def test_declined_prompt_keeps_the_session(self, db_url: str, seeded: Seeded) -> None:
        """Answering no to the prompt exits 1 and deletes nothing."""
        result = run(db_url, "delete", seeded["busy"], input="n\n")
        assert result.exit_code == ExitCode.FAILED
        assert run(db_url, "show", seeded["busy"]).exit_code == 0

    def test_unknown_id_exits_3_without_prompting(self, db_url: str, seeded: Seeded) -> None:
        """An unknown id fails before any prompt."""
        result = run(db_url, "delete", "nope")
        assert result.exit_code == ExitCode.NOT_FOUND
        assert "Delete" not in result.output

    def test_held_by_a_unit_of_work_exits_5(
        self, db_url: str, make_manager: ManagerFactory
    ) -> None:
        """A session a running manager's unit of work holds is not deleted under it."""
        worker = make_manager(
            clock=ManualClock(datetime.now(UTC)), runtime_factory=lambda state: object()
        )
        session_id = worker.create_session("copilot", {})
        with worker.unit_of_work(session_id, checkpoint=False):
            assert run(db_url, "delete", session_id, "--yes").exit_code == ExitCode.BUSY
        assert worker.info(session_id)["status"] == "active"

    def test_a_live_worker_hands_the_session_over_to_be_deleted(
        self, db_url: str, make_manager: ManagerFactory
    ) -> None:
        """A session a running manager holds idle is handed over, then deleted."""
        worker = make_manager(clock=ManualClock(datetime.now(UTC)))
        session_id = worker.create_session("copilot", {})
        assert run(db_url, "delete", session_id, "--yes").exit_code == 0
        assert worker.get_session_info(session_id) is None


class TestPurge:
    """``sessions purge --older-than DURATION --status ...``: batches, interruptible."""

    def test_purges_only_old_finished_sessions(
        self, db_url: str, seeded: Seeded, db_path: Path
    ) -> None:
        """Completed and expired sessions go with their rows; the others stay."""
        result = run(db_url, "purge", "--older-than", "30d", "--yes")
        assert result.exit_code == 0, result.output
        assert "purged 2 " in result.stdout
        left = {r["session_id"] for r in listed(db_url)}
        assert left == {seeded["paused"], seeded["busy"], seeded["fresh"]}
        assert counts(db_path)["session_messages"] == 3 + 4 + 5
        assert_consistent(db_path)

    def test_dry_run_and_young_sessions(self, db_url: str, seeded: Seeded) -> None:
        """--dry-run only counts; sessions younger than --older-than are kept."""
        dry = run_json(db_url, "purge", "--older-than", "30d", "--dry-run")
        assert dry["matching"] == 2
        assert dry["purged"] == 0
        assert len(listed(db_url)) == 5
        young = run_json(db_url, "purge", "--older-than", "36500d", "--yes")
        assert young["purged"] == 0

    def test_status_selection_and_small_batches(
        self, db_url: str, seeded: Seeded, db_path: Path
    ) -> None:
        """--status picks the statuses; --batch-size 1 purges in many transactions."""
        result = run_json(
            db_url, "purge", "--older-than", "1d", "--status", "suspended,active,completed",
            "--batch-size", "1", "--yes",
        )  # fmt: skip
        assert result["purged"] == 4
        assert [r["session_id"] for r in listed(db_url)] == [seeded["gone"]]
        assert_consistent(db_path)

    def test_declined_prompt_purges_nothing(self, db_url: str, seeded: Seeded) -> None:
        """Without --yes the command asks; no deletes nothing."""
        result = run(db_url, "purge", "--older-than", "30d", input="n\n")
        assert result.exit_code == ExitCode.FAILED
        assert len(listed(db_url)) == 5

    def test_bad_arguments_exit_2(self, db_url: str, seeded: Seeded) -> None:
        """A bad duration, an unknown status or a missing --older-than are usage errors."""
        for args in (
            ["--older-than", "30"],
            ["--older-than", "soon"],
            ["--older-than", "30d", "--status", "completed,bogus"],
            [],
        ):
            result = run(db_url, "purge", *args, "--yes")
            assert result.exit_code == ExitCode.USAGE, args
        assert len(listed(db_url)) == 5

    def test_interrupted_midway_leaves_a_consistent_database(
        self,
        db_url: str,
        make_manager: ManagerFactory,
        past: ManualClock,
        db_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Ctrl-C during the third batch: whole sessions gone or kept, exit 130, rerun ends it."""
        manager = make_manager(clock=past)
        for _ in range(10):
            session_id = manager.create_session("task", {})
            manager.save_session_state(session_id, history(3), {}, "done")
            manager.request_approval(session_id, "plan", {})
            manager.complete(session_id)
        manager.close()
        real = cli_purge.purge_batch
        calls: list[int] = []
        interrupted_batches: list[threading.Thread] = []

        def interrupted(db: Database, *args: Any) -> list[str]:
            calls.append(1)
            if len(calls) == 3:
                # The batch is in flight (sent from another thread) when Ctrl-C arrives.
                def purge() -> None:
                    with contextlib.suppress(StoreUnavailable):  # closed before it ran
                        db.store.purge(*args)

                in_flight = threading.Thread(target=purge)
                in_flight.start()
                interrupted_batches.append(in_flight)
                raise KeyboardInterrupt
            return real(db, *args)

        monkeypatch.setattr(cli_purge, "purge_batch", interrupted)
        result = run(db_url, "purge", "--older-than", "30d", "--batch-size", "3", "--yes")
        assert result.exit_code == ExitCode.INTERRUPTED
        assert "interrupted after purging 6 sessions" in result.stderr
        for thread in interrupted_batches:
            thread.join(10)
        assert_consistent(db_path)
        left = counts(db_path)
        assert left["sessions"] in (1, 4)  # the batch in flight committed whole or not at all
        assert left["session_messages"] == 3 * left["sessions"]
        assert left["approval_requests"] == left["sessions"]
        monkeypatch.setattr(cli_purge, "purge_batch", real)
        assert run(db_url, "purge", "--older-than", "30d", "--yes").exit_code == 0
        assert counts(db_path)["sessions"] == 0
        assert_consistent(db_path)

    def test_never_purges_a_session_a_live_worker_holds(
        self, db_url: str, make_manager: ManagerFactory
    ) -> None:
        """An old active session whose lease is valid stays, whatever --status says."""
        now = datetime.now(UTC)
        clock = ManualClock(now - timedelta(days=60))
        worker = make_manager(clock=clock, lease_ttl=timedelta(days=90))
        held = worker.create_session("copilot", {})
        result = run_json(db_url, "purge", "--older-than", "30d", "--status", "active", "--yes")
        assert result["purged"] == 0
        assert worker.info(held)["status"] == "active"


class TestStats:
    """``sessions stats``."""

    def test_counts_and_sizes(self, db_url: str, seeded: Seeded) -> None:
        """Counts by status and mode, messages, approvals, oldest active, size."""
        stats = run_json(db_url, "stats")
        assert stats["sessions"] == 5
        assert stats["by_status"] == {"active": 2, "suspended": 1, "completed": 1, "expired": 1}
        assert stats["by_mode"] == {
            "copilot": {"active": 1, "expired": 1},
            "task": {"active": 1, "completed": 1, "suspended": 1},
        }
        assert stats["messages"] == 1 + 2 + 3 + 4 + 5
        assert stats["pending_approvals"] == 1
        assert stats["oldest_active"]["session_id"] == seeded["busy"]
        assert stats["database_bytes"] > 0
        assert stats["schema_revision"] is not None

    def test_table(self, db_url: str, seeded: Seeded) -> None:
        """The terminal form has the summary lines and a table by mode."""
        result = run(db_url, "stats")
        assert result.exit_code == 0, result.output
        assert "sessions       5 (active 2, suspended 1, completed 1, expired 1)" in result.stdout
        assert f"oldest active  {seeded['busy']}" in result.stdout
        assert "MODE     active  suspended  completed  expired  TOTAL" in result.stdout


class TestExportImport:
    """``sessions export ID > file.json`` and ``sessions import file.json``."""

    def test_round_trip_is_exact(
        self, db_url: str, seeded: Seeded, tmp_path: Path, make_manager: ManagerFactory
    ) -> None:
        """Export, delete, import, export again: the same bytes and the same loaded state."""
        sid = seeded["busy"]
        manager = make_manager(clock=ManualClock(datetime.now(UTC)))
        loaded_before = manager.load(sid)
        manager.close()
        first = run(db_url, "export", sid)
        assert first.exit_code == 0, first.output
        exported = tmp_path / "session.json"
        exported.write_text(first.stdout, encoding="utf-8")
        assert run(db_url, "delete", sid, "--yes").exit_code == 0
        result = run(db_url, "import", str(exported))
        assert result.exit_code == 0, result.output
        assert f"imported session {sid} (4 messages)" in result.stdout
        second = run(db_url, "export", sid)
        assert second.stdout == first.stdout
        again = make_manager(clock=ManualClock(datetime.now(UTC)))
        assert again.load(sid) == loaded_before
        approval = again.get_approval(seeded.approval)
        assert approval is not None
        assert approval["status"] == "pending"

    def test_into_another_database_with_awkward_messages(
        self, db_url: str, make_manager: ManagerFactory, tmp_path: Path
    ) -> None:
        """Unicode, NUL bytes, nested extras and non-string roles survive the trip."""
        manager = make_manager(clock=ManualClock(datetime.now(UTC)))
        session_id = manager.create_session("copilot", {"model": "m", "nested": {"a": [1, 2.5]}})
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": "héllo 🌍", "timestamp": "2030-01-01T00:00:00"},
            {"role": "assistant", "content": "a\x00b", "tool_calls": [{"id": 1}]},
            {"role": None, "content": {"structured": True}, "agent": "planner"},
            {"weird": "only extras"},
        ]
        manager.save_session_state(session_id, messages, {"x": None}, "", None, {"plan": [1]})
        manager.close()
        exported = tmp_path / "s.json"
        assert run(db_url, "export", session_id, "-o", str(exported)).exit_code == 0
        other_url = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
        assert run(other_url, "db", "upgrade").exit_code == 0
        assert run(other_url, "import", str(exported)).exit_code == 0
        assert run(other_url, "export", session_id).stdout == exported.read_text(encoding="utf-8")
        other = make_manager(database_url=other_url, clock=ManualClock(datetime.now(UTC)))
        state = other.load(session_id)
        assert state["conversation_history"] == messages
        assert state["plan_data"] == {"plan": [1]}
        assert state["config"] == {"model": "m", "nested": {"a": [1, 2.5]}}

    def test_import_existing_exits_4_unless_replace(
        self, db_url: str, seeded: Seeded, tmp_path: Path
    ) -> None:
        """Importing over an existing session is refused; --replace overwrites it."""
        exported = tmp_path / "s.json"
        assert run(db_url, "export", seeded["busy"], "-o", str(exported)).exit_code == 0
        assert run(db_url, "suspend", seeded["busy"]).exit_code == 0
        result = run(db_url, "import", str(exported))
        assert result.exit_code == ExitCode.REFUSED
        assert "--replace" in result.stderr
        assert run_json(db_url, "import", str(exported), "--replace")["replace"] is True
        assert run_json(db_url, "show", seeded["busy"])["status"] == "active"

    def test_bad_files_exit_2_and_write_nothing(
        self, db_url: str, seeded: Seeded, tmp_path: Path, db_path: Path
    ) -> None:
        """Not JSON, not an export, or a bad field: exit 2 with the path; nothing written."""
        good = json.loads(run(db_url, "export", seeded["busy"]).stdout)
        good["session"]["id"] = "new-id"
        broken = json.loads(json.dumps(good))
        broken["messages"][1] = ["not", "a", "dict"]
        bad_time = json.loads(json.dumps(good))
        bad_time["state"]["updated_at"] = "yesterday"
        cases = {
            "{not json": "is not a JSON file",
            json.dumps({"format": "other"}): "$.format",
            json.dumps(broken): "$.messages[1]",
            json.dumps(bad_time): "$.state.updated_at",
        }
        before = counts(db_path)
        for index, (text, expected) in enumerate(cases.items()):
            path = tmp_path / f"bad{index}.json"
            path.write_text(text, encoding="utf-8")
            result = run(db_url, "import", str(path))
            assert result.exit_code == ExitCode.USAGE, result.output
            assert expected in result.stderr
        assert counts(db_path) == before

    def test_import_reads_stdin_and_export_of_unknown_id(self, db_url: str, seeded: Seeded) -> None:
        """`import -` reads stdin; exporting an unknown id exits 3."""
        document = json.loads(run(db_url, "export", seeded["fresh"]).stdout)
        document["session"]["id"] = "copy-of-fresh"
        result = run(db_url, "import", "-", input=json.dumps(document))
        assert result.exit_code == 0, result.output
        assert run_json(db_url, "show", "copy-of-fresh")["message_count"] == 5
        assert run(db_url, "export", "nope").exit_code == ExitCode.NOT_FOUND


class TestDb:
    """``sessions db upgrade`` / ``db current`` and the schema check of other commands."""

    def test_upgrade_creates_and_current_reports(self, tmp_path: Path) -> None:
        """`db upgrade` makes a new database at head; a second upgrade changes nothing."""
        url = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
        first = run_json(url, "db", "upgrade")
        assert first["from"] is None
        assert first["changed"] is True
        assert run_json(url, "db", "upgrade")["changed"] is False
        current = run_json(url, "db", "current")
        assert current["up_to_date"] is True
        assert current["current"] == current["head"]
        assert run(url, "db", "current", "--check").exit_code == 0
        assert listed(url) == []

    def test_schema_behind_exits_7(self, tmp_path: Path) -> None:
        """After a downgrade, commands refuse with exit 7 until `db upgrade`."""
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        assert run(url, "db", "upgrade").exit_code == 0
        assert run(url, "db", "downgrade", "base", "--yes").exit_code == 0
        result = run(url, "list")
        assert result.exit_code == ExitCode.SCHEMA
        assert "sessions db upgrade" in result.stderr
        assert run(url, "db", "current", "--check").exit_code == ExitCode.SCHEMA
        assert run(url, "db", "upgrade").exit_code == 0
        assert run(url, "list").exit_code == 0

    def test_missing_file_and_bad_revision(self, tmp_path: Path) -> None:
        """A missing SQLite file exits 6 (and is not created); an unknown revision exits 2."""
        url = f"sqlite+aiosqlite:///{tmp_path / 'missing.db'}"
        result = run(url, "list")
        assert result.exit_code == ExitCode.UNAVAILABLE
        assert "no session database" in result.stderr
        assert not (tmp_path / "missing.db").exists()
        assert run(url, "db", "upgrade", "zzzz").exit_code == ExitCode.USAGE

    def test_bad_url_exits_2(self) -> None:
        """An unsupported URL is a usage error."""
        result = run("mysql://localhost/db", "list")
        assert result.exit_code == ExitCode.USAGE
        assert "unsupported database" in result.stderr

    def test_url_from_the_environment(
        self, db_url: str, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without --database-url, $SESSIONS_DATABASE_URL is used."""
        monkeypatch.setenv("SESSIONS_DATABASE_URL", db_url)
        result = CliRunner().invoke(cli, ["list", "--json"])
        assert result.exit_code == 0, result.output
        assert len(json.loads(result.stdout)["sessions"]) == 5


class TestDurations:
    """The --older-than syntax."""

    def test_units_and_combinations(self) -> None:
        """w, d, h, m and s combine; a bare number or zero is refused."""
        assert parse_duration("30d") == timedelta(days=30)
        assert parse_duration("1d12h") == timedelta(days=1, hours=12)
        assert parse_duration("2w") == timedelta(weeks=2)
        assert parse_duration("90m") == timedelta(minutes=90)
        assert parse_duration("1.5h") == timedelta(minutes=90)
        for bad in ("30", "", "d", "0s", "3 days", "-1d"):
            with pytest.raises(ValueError, match=r"duration|zero"):
                parse_duration(bad)


@pytest.mark.slow
class TestRealProcess:
    """The installed console script, run as a real subprocess."""

    def test_console_script(self, db_url: str, seeded: Seeded) -> None:
        """`.venv/bin/sessions` lists, shows and fails with the documented exit codes."""
        script = Path(sys.executable).parent / "sessions"
        assert script.exists(), "pip install -e . creates the console script"
        env = {"SESSIONS_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
        listed = subprocess.run(
            [str(script), "list", "--json"], capture_output=True, text=True, env=env, timeout=60,
            check=False,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert len(json.loads(listed.stdout)["sessions"]) == 5
        suspended = subprocess.run(
            [str(script), "suspend", seeded["busy"]], capture_output=True, text=True, env=env,
            timeout=60, check=False,
        )  # fmt: skip
        assert suspended.returncode == 0, suspended.stderr
        missing = subprocess.run(
            [str(script), "show", "nope"], capture_output=True, text=True, env=env, timeout=60,
            check=False,
        )  # fmt: skip
        assert missing.returncode == ExitCode.NOT_FOUND
        assert missing.stderr.strip() == "Error: session 'nope' does not exist"
        assert missing.stdout == ""

    def test_python_dash_m(self, db_url: str, seeded: Seeded) -> None:
        """`python -m actors.cli` is the same command as the console script."""
        done = subprocess.run(
            [sys.executable, "-m", "actors.cli", "--database-url", db_url, "show", "nope"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == ExitCode.NOT_FOUND
        assert done.stderr.strip() == "Error: session 'nope' does not exist"

    def test_sigint_during_purge(self, db_url: str, db_path: Path) -> None:
        """A real Ctrl-C (SIGINT) midway through a purge: exit 130, consistent, resumable."""
        assert run(db_url, "db", "upgrade").exit_code == 0
        _bulk_finished_sessions(db_path, 3000)
        script = Path(sys.executable).parent / "sessions"
        command = [str(script), "--database-url", db_url, "purge", "--older-than", "30d",
                   "--batch-size", "1", "--yes"]  # fmt: skip
        # A shell starting the suite in the background hands its children SIGINT ignored,
        # and Python then never raises KeyboardInterrupt: give the CLI a real Ctrl-C.
        ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        if ignored:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        finally:
            if ignored:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        deadline = time.monotonic() + 30
        while counts(db_path)["sessions"] == 3000 and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == ExitCode.INTERRUPTED, stderr
        assert "run the same command again" in stderr
        assert_consistent(db_path)
        left = counts(db_path)
        assert 0 < left["sessions"] < 3000
        assert left["session_messages"] == 2 * left["sessions"]
        assert run(db_url, "purge", "--older-than", "30d", "--yes").exit_code == 0
        assert counts(db_path)["sessions"] == 0
        assert_consistent(db_path)


def _bulk_finished_sessions(db_path: Path, count: int) -> None:
    """Insert ``count`` old completed sessions with two messages each, in one transaction."""
    engine = create_engine(f"sqlite:///{db_path}")
    rows = [f"bulk-{index:05d}" for index in range(count)]
    with engine.begin() as connection:
        connection.execute(
            insert(cast("Table", SessionRow.__table__)),
            [{"id": i, "user_id": "u", "name": i, "created_at": PAST, "last_active_at": PAST,
              "status": "completed", "meta": "{}", "resource_limits": None} for i in rows],
        )  # fmt: skip
        connection.execute(
            insert(cast("Table", SessionStateRow.__table__)),
            [{"session_id": i, "mode": "task", "context_variables": "{}", "plan_data": None,
              "current_phase": "done", "current_step": None, "status": "completed",
              "created_at": PAST, "updated_at": PAST, "expires_at": None, "version": 2,
              "message_count": 2, "owner": None, "epoch": 1, "lease_expires_at": None}
             for i in rows],
        )  # fmt: skip
        connection.execute(
            insert(cast("Table", SessionMessageRow.__table__)),
            [{"session_id": i, "seq": seq, "role": "user", "agent": None, "content": "x",
              "timestamp": None, "extra": None} for i in rows for seq in (0, 1)],
        )  # fmt: skip
    engine.dispose()
