"""Ids by unique prefix, `list` pages, bounded numbers, and what `purge` skips and frees.

Through the real process; prefixes on both backends (SQLite's LIKE ignores case,
PostgreSQL's does not), the rest where the backends differ.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from actors import ManualClock
from actors.cli._support import ExitCode
from persistence import Database
from tests.actors.cli.conftest import (
    bulk_finished,
    exported,
    ok_json,
    one_error_line,
    sessions,
)
from tests.conftest import ManagerFactory


def _copies(url: str, source: str, *new_ids: str) -> None:
    """Import copies of session ``source`` under the given ids (in this process)."""
    document = exported(url, source)
    db = Database.open(url, migrate=False)
    try:
        for new_id in new_ids:
            db.store.import_session(document, datetime.now(UTC), new_id=new_id)
    finally:
        db.close()


class TestPrefixes:
    """A session named by the start of its id, as git and docker do."""

    def test_unique_ambiguous_short_and_literal(
        self, url: str, make_on: Callable[[str], list[str]]
    ) -> None:
        """Unique: works everywhere; ambiguous: exit 2 listing both; short or absent: 3."""
        ids = make_on(url)
        _copies(url, ids[0], "abcd1111-x", "abcd2222-x", "ABCD3333-x")
        shown = ok_json(url, "show", "abcd1")
        assert shown["session_id"] == "abcd1111-x"
        assert ok_json(url, "show", "ABCD")["session_id"] == "ABCD3333-x"
        ambiguous = sessions(url, "history", "abcd")
        assert ambiguous.returncode == ExitCode.USAGE
        line = one_error_line(ambiguous)
        assert "abcd1111-x, abcd2222-x" in line
        assert "ABCD3333" not in line
        for missing in ("abc", "ab%d", "zzzz"):
            done = sessions(url, "show", missing)
            assert done.returncode == ExitCode.NOT_FOUND, missing
        suspended = ok_json(url, "suspend", "abcd2")
        assert suspended["session_id"] == "abcd2222-x"
        assert sessions(url, "export", ids[1][:8]).returncode == 0
        assert sessions(url, "delete", "abcd11", "--yes").returncode == 0


class TestListPages:
    """`list` says how many it shows of how many, and pages on."""

    def test_showing_n_of_m_offset_and_all(
        self, sqlite_url: str, make_on: Callable[[str], list[str]]
    ) -> None:
        """--limit, --offset and --all; the JSON carries total and has_more."""
        make_on(sqlite_url)
        first = sessions(sqlite_url, "list", "--limit", "2")
        assert first.returncode == 0, first.stderr
        assert len(first.stdout.splitlines()) == 3  # header and two rows
        assert first.stderr.strip() == "showing 2 of 3; next page: --offset 2, or --all"
        page = ok_json(sqlite_url, "list", "--limit", "2", "--offset", "2")
        assert (len(page["sessions"]), page["total"], page["has_more"]) == (1, 3, False)
        assert ok_json(sqlite_url, "list", "--limit", "2")["has_more"] is True
        every = ok_json(sqlite_url, "list", "--all", "--limit", "1")
        assert (len(every["sessions"]), every["limit"], every["has_more"]) == (3, None, False)
        past = sessions(sqlite_url, "list", "--offset", "7")
        assert "showing 0 of 3" in past.stderr

    def test_numbers_out_of_range_exit_2(self, sqlite_url: str) -> None:
        """Huge or negative numbers are usage errors with a message, never a traceback."""
        huge = "99999999999999999999"
        for command in (
            ("list", "--limit", huge),
            ("list", "--offset", "-1"),
            ("history", "abcd", "--tail", huge),
            ("show", "abcd", "-n", huge),
            ("purge", "--older-than", "99999999d", "--yes"),
            ("purge", "--older-than", "9" * 400 + "d", "--yes"),
        ):
            done = sessions(sqlite_url, *command)
            assert done.returncode == ExitCode.USAGE, command
            assert "Invalid value" in done.stderr
            assert "Traceback" not in done.stderr


class TestPurge:
    """`purge` names what a live worker holds; --vacuum gives space back on SQLite."""

    def test_held_sessions_reported_and_space_reclaimed(
        self, sqlite_url: str, make_manager: ManagerFactory
    ) -> None:
        """The held session is skipped and named; the file shrinks after --vacuum."""
        path = Path(sqlite_url.split(":///", 1)[1])
        bulk_finished(path, 300, message_bytes=4000)
        worker = make_manager(
            database_url=sqlite_url,
            clock=ManualClock(datetime.now(UTC) - timedelta(days=60)),
            lease_ttl=timedelta(days=90),
        )
        held = worker.create_session("copilot", {})
        done = ok_json(
            sqlite_url, "purge", "--older-than", "30d", "--status", "active,completed",
            "--yes", "--vacuum",
        )  # fmt: skip
        assert done["purged"] == 300
        assert done["skipped_held"] == [held]
        vacuum = done["vacuum"]
        assert vacuum["bytes_after"] < vacuum["bytes_before"] / 4
        text = sessions(sqlite_url, "purge", "--older-than", "30d", "--status", "active", "--yes")
        assert text.returncode == 0, text.stderr
        assert f"skipped 1 held by a live worker (purge them once it lets go): {held}" in (
            text.stderr
        )

    def test_vacuum_on_postgres_is_a_note(self, postgres_url: str) -> None:
        """On PostgreSQL --vacuum only says that it applies to SQLite; the purge runs."""
        done = sessions(postgres_url, "purge", "--older-than", "30d", "--yes", "--vacuum")
        assert done.returncode == 0, done.stderr
        assert "--vacuum only applies to SQLite" in done.stderr
