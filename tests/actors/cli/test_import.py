"""``sessions import`` refuses, with exit code 2 and the JSON path, whatever the API refuses.

Every case runs the real process; a refused file leaves every table as it was, on SQLite
and on PostgreSQL (which used to fail some of these with exit code 6 instead).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actors.cli._support import ExitCode
from tests.actors.cli.conftest import exported, ok_json, one_error_line, row_counts, sessions

Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    """An edit that sets ``doc[a][b]...`` (a dotted path; digits index lists)."""

    def edit(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value

    return edit


def _completed_with_pending(document: dict[str, Any]) -> None:
    document["session"]["status"] = document["state"]["status"] = "completed"


def _duplicate_approval(document: dict[str, Any]) -> None:
    document["approvals"].append(copy.deepcopy(document["approvals"][0]))


#: Stands for 5,000 nested objects, written as text (json.dumps cannot nest that deep).
DEEP = "@deep@"


def _deep(document: dict[str, Any]) -> None:
    document["state"]["context_variables"] = {"deep": DEEP}


#: name -> (edit of a valid export of a session with one pending approval, what stderr names)
REFUSED: dict[str, tuple[Edit, str]] = {
    "nul_in_id": (_set("session.id", "ab\x00cd"), "$.session.id must not contain NUL"),
    "nul_in_phase": (_set("state.current_phase", "a\x00b"), "$.state.current_phase"),
    "oversize_mode": (_set("state.mode", "m" * 10_000), "$.state.mode is 10000 characters"),
    "oversize_name": (_set("session.name", "n" * 100_000), "$.session.name is 100000"),
    "state_null": (_set("state", None), "$.state is null"),
    "status_disagrees": (_set("state.status", "suspended"), "$.state.status 'suspended'"),
    "active_never_expires": (_set("state.expires_at", None), "$.state.expires_at is null"),
    "completed_with_pending": (_completed_with_pending, "$.approvals[0].status is pending"),
    "format_version_true": (_set("format_version", True), "$.format_version true"),
    "duplicate_approval_ids": (_duplicate_approval, "$.approvals[1].id"),
    "int_over_64_bits": (_set("state.current_step", 2**70), "$.state.current_step"),
    "version_2_31": (_set("state.version", 2**31), "$.state.version 2147483648 is out of range"),
    "utc_out_of_range": (
        _set("session.created_at", "9999-12-31T23:59:59-23:59"),
        "$.session.created_at is out of range",
    ),
    "approval_id_too_long": (_set("approvals.0.id", "x" * 37), "$.approvals[0].id is 37"),
    "deeply_nested": (_deep, "$.state.context_variables.deep.k.k"),
}
#: The cases PostgreSQL used to refuse in the database (exit code 6) or store differently.
ON_POSTGRES = (
    "nul_in_id",
    "nul_in_phase",
    "oversize_mode",
    "version_2_31",
    "int_over_64_bits",
    "utc_out_of_range",
    "duplicate_approval_ids",
    "deeply_nested",
)


def _refused(url: str, document: dict[str, Any], tmp_path: Path, expected: str) -> None:
    """Importing ``document`` exits 2 naming ``expected`` and writes nothing."""
    path = tmp_path / "edited.json"
    text = json.dumps(document).replace(json.dumps(DEEP), '{"k":' * 5000 + "1" + "}" * 5000)
    path.write_text(text, encoding="utf-8")
    before = row_counts(url)
    done = sessions(url, "import", str(path))
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert expected in one_error_line(done)
    assert row_counts(url) == before


class TestRefusedLikeTheApi:
    """Each value the API refuses is refused by the import, before anything is written."""

    @pytest.mark.parametrize("case", sorted(REFUSED))
    def test_sqlite(
        self, case: str, sqlite_url: str, make_on: Callable[[str], list[str]], tmp_path: Path
    ) -> None:
        """On SQLite: exit code 2, the JSON path in one line, every table unchanged."""
        ids = make_on(sqlite_url)
        document = exported(sqlite_url, ids[1])
        document["session"]["id"] = "copy-of-one"
        edit, expected = REFUSED[case]
        edit(document)
        _refused(sqlite_url, document, tmp_path, expected)

    @pytest.mark.postgres
    @pytest.mark.parametrize("case", ON_POSTGRES)
    def test_postgres(
        self, case: str, postgres_url: str, make_on: Callable[[str], list[str]], tmp_path: Path
    ) -> None:
        """On PostgreSQL too: exit code 2 naming the path, never "database unavailable"."""
        ids = make_on(postgres_url)
        document = exported(postgres_url, ids[1])
        document["session"]["id"] = "copy-of-one"
        edit, expected = REFUSED[case]
        edit(document)
        _refused(postgres_url, document, tmp_path, expected)

    def test_not_json_and_huge_integers(self, sqlite_url: str, tmp_path: Path) -> None:
        """Not JSON, or an integer of more digits than Python reads: exit 2, one line."""
        for index, text in enumerate(("{not json", '{"n": ' + "9" * 5000 + "}")):
            path = tmp_path / f"bad{index}.json"
            path.write_text(text, encoding="utf-8")
            done = sessions(sqlite_url, "import", str(path))
            assert done.returncode == ExitCode.USAGE
            assert "is not a JSON file" in one_error_line(done)


class TestCopies:
    """``import --new-id`` copies a session; plain import, --replace and their refusals."""

    def test_new_id_gives_the_approvals_new_ids(
        self, url: str, make_on: Callable[[str], list[str]], tmp_path: Path
    ) -> None:
        """Two copies of one session: new session ids, new approval ids, same content."""
        ids = make_on(url)
        path = tmp_path / "one.json"
        assert sessions(url, "export", ids[1], "-o", str(path)).returncode == 0
        original = json.loads(path.read_text(encoding="utf-8"))
        copies = [ok_json(url, "import", str(path), "--new-id")["session_id"] for _ in range(2)]
        assert len({ids[1], *copies}) == 3
        approval_ids = {original["approvals"][0]["id"]}
        for copy_id in copies:
            copied = exported(url, copy_id)
            assert copied["messages"] == original["messages"]
            assert copied["state"] == original["state"]
            approval_ids.add(copied["approvals"][0]["id"])
        assert len(approval_ids) == 3
        assert row_counts(url)["approval_requests"] == 3

    def test_exists_replace_and_conflicting_flags(
        self, url: str, make_on: Callable[[str], list[str]], tmp_path: Path
    ) -> None:
        """Exit 4 over an existing session, 0 with --replace, 2 for --replace --new-id."""
        ids = make_on(url)
        path = tmp_path / "one.json"
        path.write_text(json.dumps(exported(url, ids[0])), encoding="utf-8")
        exists = sessions(url, "import", str(path))
        assert exists.returncode == ExitCode.REFUSED
        assert "--replace" in one_error_line(exists)
        assert sessions(url, "import", str(path), "--replace").returncode == 0
        both = sessions(url, "import", str(path), "--replace", "--new-id")
        assert both.returncode == ExitCode.USAGE
        assert "exclude each other" in both.stderr
