"""Damaged, foreign, inconsistent, empty and newer databases, through the real process.

A file that is not a sound database gets one line, "not a valid session database", and
exit code 6; ``sessions check`` lists what is wrong (exit code 8); the schema's state is
named (empty, behind or newer) with exit code 7.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from actors.cli._support import ExitCode
from tests.actors.cli.conftest import (
    bulk_finished,
    execute,
    ok_json,
    one_error_line,
    sessions,
    upgraded,
)

PAGE = 4096


def _damaged_copy(tmp_path: Path) -> str:
    """A SQLite file of 400 sessions whose middle pages were overwritten with garbage."""
    path = tmp_path / "sound.db"
    upgraded(f"sqlite:///{path}")
    bulk_finished(path, 400)
    data = bytearray(path.read_bytes())
    middle = len(data) // PAGE // 2
    data[middle * PAGE : (middle + 20) * PAGE] = b"\xde\xad\xbe\xef" * (20 * PAGE // 4)
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(bytes(data))
    return f"sqlite:///{damaged}"


class TestDamagedFiles:
    """A foreign or corrupted file: one line, exit 6; `check` lists the damage."""

    def test_a_file_that_is_not_a_database(self, tmp_path: Path) -> None:
        """Every command, `check` and `db current` included, says so in one line."""
        junk = tmp_path / "notes.db"
        junk.write_text("these are not the sessions you are looking for\n" * 100)
        for command in (("list",), ("stats",), ("db", "current"), ("check",), ("show", "abcd")):
            done = sessions(str(junk), *command)
            assert done.returncode == ExitCode.UNAVAILABLE, command
            line = one_error_line(done)
            assert line == f"Error: not a valid session database: {junk}: file is not a database"

    def test_a_malformed_file(self, tmp_path: Path) -> None:
        """`stats` and `db current` refuse it (exit 6); `check` lists what is wrong (exit 8)."""
        url = _damaged_copy(tmp_path)
        for command in (("stats",), ("db", "current")):
            done = sessions(url, *command)
            assert done.returncode == ExitCode.UNAVAILABLE, done.stderr
            assert "not a valid session database" in one_error_line(done)
            assert "sessions check" in done.stderr
        checked = sessions(url, "check")
        assert checked.returncode == ExitCode.DAMAGED, checked.stderr
        assert "SQLite's integrity_check failed" in checked.stdout
        assert "problem found" in one_error_line(checked)


class TestCheck:
    """`sessions check` on both backends: the store's invariants."""

    def test_a_consistent_database(self, url: str, make_on: Callable[[str], list[str]]) -> None:
        """Sessions made by the API pass: exit 0, no problems."""
        make_on(url)
        assert ok_json(url, "check")["problems"] == []
        assert "no problems found" in sessions(url, "check").stdout

    def test_every_broken_invariant_is_listed(
        self, url: str, make_on: Callable[[str], list[str]]
    ) -> None:
        """Status disagreement, no expiry, pending request of a finished session, no state."""
        ids = make_on(url)
        execute(
            url,
            f"UPDATE sessions SET status = 'suspended' WHERE id = '{ids[0]}'",
            f"UPDATE session_states SET expires_at = NULL WHERE session_id = '{ids[1]}'",
            f"UPDATE approval_requests SET status = 'pending', resolved_at = NULL,"
            f" session_id = '{ids[2]}' WHERE session_id = '{ids[1]}'",
            "INSERT INTO sessions VALUES ('lonely-one', NULL, 'x', '2024-01-01 00:00:00', NULL,"
            " 'active', '{}', NULL)",
        )
        done = sessions(url, "check")
        assert done.returncode == ExitCode.DAMAGED, done.stderr
        for line in (
            f"sessions whose status differs from their state's: 1 (e.g. {ids[0]})",
            f"active sessions that never expire (expires_at is null): 1 (e.g. {ids[1]})",
            "pending approval requests of sessions that are not active or suspended: 1",
            "sessions without a state row: 1 (e.g. lonely-one)",
        ):
            assert line in done.stdout
        assert "problem found" in one_error_line(done)


class TestSchemaStates:
    """Empty, newer: each said as it is (exit 7 where a command cannot go on)."""

    def test_an_empty_sqlite_file(self, tmp_path: Path) -> None:
        """`db current` says it is empty and how to create it; --check and `list` exit 7."""
        empty = tmp_path / "empty.db"
        empty.touch()
        current = sessions(str(empty), "db", "current")
        assert current.returncode == 0, current.stderr
        assert "the database is empty (no session schema); `sessions db upgrade` creates it" in (
            current.stdout
        )
        for command in (("db", "current", "--check"), ("list",)):
            done = sessions(str(empty), *command)
            assert done.returncode == ExitCode.SCHEMA
            assert "is empty" in one_error_line(done)

    def test_an_empty_postgres_database(self, pg_url: str) -> None:
        """The same on PostgreSQL: a database without the schema is named empty."""
        done = sessions(pg_url, "db", "current", "--json")
        assert done.returncode == 0, done.stderr
        assert '"state": "empty"' in done.stdout

    def test_a_newer_schema_this_version_cannot_run_against(self, sqlite_url: str) -> None:
        """Newer, past its compatible_from: exit 7, and not "run sessions db upgrade"."""
        execute(sqlite_url, "UPDATE alembic_version SET version_num = 'f00dcafe9999'")
        execute(
            sqlite_url, "UPDATE store_meta SET value = 'f00dcafe9998' WHERE key = 'compatible_from'"
        )
        for command in (("list",), ("db", "upgrade"), ("db", "current", "--check")):
            done = sessions(sqlite_url, *command)
            assert done.returncode == ExitCode.SCHEMA, command
            line = one_error_line(done)
            assert "f00dcafe9999, newer than this version" in line
            assert "run `sessions db upgrade`" not in line
        current = ok_json(sqlite_url, "db", "current")
        assert (current["state"], current["usable"]) == ("newer", False)

    def test_a_newer_schema_that_still_supports_this_version(self, sqlite_url: str) -> None:
        """Within its compatible_from (a rolling deploy): the commands work, --check passes."""
        execute(sqlite_url, "UPDATE alembic_version SET version_num = 'f00dcafe9999'")
        listed = sessions(sqlite_url, "list")
        assert listed.returncode == 0, listed.stderr
        check = sessions(sqlite_url, "db", "current", "--check")
        assert check.returncode == 0, check.stderr
        assert "this version still runs against it" in check.stdout
        current = ok_json(sqlite_url, "db", "current")
        assert (current["state"], current["usable"]) == ("newer", True)
        upgrade = sessions(sqlite_url, "db", "upgrade")  # never "down" to this version's head
        assert upgrade.returncode == ExitCode.SCHEMA
