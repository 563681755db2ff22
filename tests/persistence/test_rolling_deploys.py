"""Rolling deploys: ``auto_migrate=False``, the compatibility window, and the previous release.

Migrations only add, so the code of the release before the newest schema keeps working
against it; a process older than the database's ``compatible_from`` refuses to start.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, inspect, text

from actors import InvalidArgument, SchemaOutdated, SchemaTooNew, create_session_manager
from persistence import Database, head_revision

REPO = Path(__file__).resolve().parents[2]
MIGRATIONS = REPO / "persistence" / "migrations" / "versions"
RELEASES = Path(__file__).parent / "releases"


def _sql(url: str, *statements: str) -> None:
    """Run raw statements on the database (bypassing every check), through a raw store."""
    db = Database.open(url, migrate=False)
    try:

        def op(connection: Connection) -> None:
            for statement in statements:
                connection.execute(text(statement))

        db.store.write(op)
    finally:
        db.close()


def _tables(url: str) -> set[str]:
    db = Database.open(url, migrate=False)
    try:
        return set(db.store.read(lambda connection: inspect(connection).get_table_names()))
    finally:
        db.close()


def _pretend_a_newer_release_migrated(url: str, compatible_from: str) -> None:
    """The database as a release two revisions ahead would leave it."""
    Database.open(url).close()
    _sql(
        url,
        "UPDATE alembic_version SET version_num = '0099'",
        f"UPDATE store_meta SET value = '{compatible_from}' WHERE key = 'compatible_from'",
    )


class TestAutoMigrateOff:
    """Fleets that migrate once: a worker never changes the schema, and says what to run."""

    def test_an_empty_database_is_refused_and_left_empty(self, any_db_url: str) -> None:
        """SchemaOutdated names ``sessions db upgrade``; no table is created."""
        with pytest.raises(SchemaOutdated, match="sessions db upgrade") as refused:
            create_session_manager(any_db_url, auto_migrate=False)
        assert refused.value.current is None
        assert refused.value.head == head_revision()
        assert _tables(any_db_url) == set()

    def test_an_older_schema_is_refused_until_upgraded(self, any_db_url: str) -> None:
        """A database one revision behind is refused, and opens once it was upgraded."""
        db = Database.open(any_db_url)
        db.store.downgrade("0002")
        db.close()
        with pytest.raises(SchemaOutdated, match="revision 0002"):
            Database.open(any_db_url, auto_migrate=False)
        db = Database.open(any_db_url, migrate=False)
        db.store.migrate()  # what `sessions db upgrade` runs
        db.close()
        with create_session_manager(any_db_url, auto_migrate=False) as manager:
            session_id = manager.create_session("copilot", {})
            assert manager.save_session_state(session_id, [], {"k": 1}, "planning")

    def test_auto_migrate_must_be_a_bool(self, tmp_path: Path) -> None:
        """Checked before anything is opened."""
        with pytest.raises(InvalidArgument, match="auto_migrate"):
            create_session_manager(f"sqlite:///{tmp_path / 's.db'}", auto_migrate="no")  # type: ignore[arg-type]
        assert not (tmp_path / "s.db").exists()


class TestCompatibilityWindow:
    """A database newer than the code: run if the code is within its window, else refuse."""

    @pytest.mark.parametrize("auto_migrate", [True, False])
    def test_a_newer_schema_that_still_supports_this_code_opens_untouched(
        self, any_db_url: str, auto_migrate: bool
    ) -> None:
        """Its ``compatible_from`` is this code's head: work goes on, nothing is migrated."""
        _pretend_a_newer_release_migrated(any_db_url, compatible_from=str(head_revision()))
        with create_session_manager(any_db_url, auto_migrate=auto_migrate) as manager:
            session_id = manager.create_session("copilot", {})
            assert manager.save_session_state(
                session_id, [{"role": "user", "content": "hi"}], {}, "p"
            )
            assert manager.load(session_id)["message_count"] == 1
            assert manager.database.store.schema_revision() == "0099"

    @pytest.mark.parametrize("compatible_from", ["0098", None])
    def test_a_schema_beyond_the_window_refuses_to_start(
        self, any_db_url: str, compatible_from: str | None
    ) -> None:
        """SchemaTooNew says the code is too old and what to deploy; nothing changes."""
        _pretend_a_newer_release_migrated(any_db_url, compatible_from="0098")
        if compatible_from is None:
            _sql(any_db_url, "DELETE FROM store_meta WHERE key = 'compatible_from'")
        for auto_migrate in (True, False):
            with pytest.raises(SchemaTooNew, match="newer than this code") as refused:
                create_session_manager(any_db_url, auto_migrate=auto_migrate)
            assert refused.value.compatible_from == compatible_from
            assert "Deploy the newer release" in str(refused.value)
        db = Database.open(any_db_url, migrate=False)
        try:
            assert db.store.schema_revision() == "0099"
        finally:
            db.close()


def _from_git(head_file: Path) -> bytes:
    """The packages of the commit before ``head_file`` was added, from the git history."""
    git = shutil.which("git") or "git"
    try:
        added = subprocess.run(
            [git, "log", "--diff-filter=A", "--format=%H", "--", str(head_file)],
            cwd=REPO, capture_output=True, text=True, check=True, timeout=30,
        ).stdout.split()  # fmt: skip
        before = f"{added[-1]}^" if added else "HEAD"  # not committed yet: HEAD is older
        return subprocess.run(
            [git, "archive", "--format=tar", before, "persistence", "actors"],
            cwd=REPO, capture_output=True, check=True, timeout=60,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError, IndexError) as error:
        pytest.fail(
            f"the previous release's code: no {RELEASES.name}/ archive and no git history"
            f" ({error}); add one with `git archive <commit> persistence actors | gzip`"
        )


def _previous_release(tmp_path: Path) -> Path:
    """The ``persistence`` and ``actors`` packages of the commit before the head migration.

    That is the release whose code must keep working while the fleet rolls onto this one.
    """
    head_file = next(MIGRATIONS.glob(f"{head_revision()}_*.py"))
    found = re.search(r'^down_revision\b[^=]*=\s*"([^"]+)"', head_file.read_text(), re.MULTILINE)
    assert found is not None, f"{head_file.name} names no down_revision"
    # Kept in the repository, so that a checkout without history (a shallow CI clone) runs it.
    vendored = RELEASES / f"{found.group(1)}.tar.gz"
    archive = gzip.decompress(vendored.read_bytes()) if vendored.exists() else _from_git(head_file)
    root = tmp_path / "previous"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    return root


_PREVIOUS_RELEASE_WORKER = textwrap.dedent(
    """
    import json, sys
    from actors import SessionManager
    from persistence import Database, head_revision

    url, theirs = sys.argv[1], sys.argv[2]
    # The previous release migrated on open; against a newer schema it is started without.
    manager = SessionManager(Database.open(url, migrate=False), instance_id="previous")
    mine = manager.create_session("copilot", {"model": "m"}, user_id="u")
    ok = [
        manager.save_session_state(mine, [{"role": "user", "content": "old"}], {"a": 1}, "p1", 1),
        manager.suspend_session(mine), manager.resume_session(mine),
        manager.save_session_state(
            theirs,
            [{"role": "user", "content": "new"}, {"role": "assistant", "content": "old"}],
            {"b": 2},
            "p2",
        ),
    ]
    loaded = manager.load_session_state(theirs)
    listed = sorted(row["session_id"] for row in manager.list_sessions(user_id="u"))
    swept = manager.sweep()
    manager.close()
    print(json.dumps({"head": head_revision(), "mine": mine, "ok": ok, "listed": listed,
                      "theirs_context": loaded["context_variables"], "swept": swept}))
    """
)


class TestPreviousRelease:
    """The release before the head migration runs its code paths against the new schema."""

    def test_the_previous_release_reads_and_writes_the_new_schema(
        self, any_db_url: str, tmp_path: Path
    ) -> None:
        """Its create, save, suspend/resume, load, list and sweep work; both see each other's."""
        previous = _previous_release(tmp_path)
        with create_session_manager(any_db_url, instance_id="new") as manager:
            theirs = manager.create_session("copilot", {}, user_id="u")
            manager.save_session_state(theirs, [{"role": "user", "content": "new"}], {}, "p0")
        # The previous release's worker, with its own code first on the path.
        env = {**os.environ, "PYTHONPATH": str(previous)}
        script = tmp_path / "previous_worker.py"
        script.write_text(_PREVIOUS_RELEASE_WORKER)
        done = subprocess.run(
            [sys.executable, str(script), any_db_url, theirs],
            cwd=previous, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["head"] != head_revision(), "the worker ran this release's code"
        assert result["ok"] == [True, True, True, True]
        assert result["theirs_context"] == {"b": 2}
        assert result["listed"] == sorted([theirs, result["mine"]])
        with create_session_manager(any_db_url, instance_id="new") as manager:
            mine = manager.load(result["mine"])
            assert mine["context_variables"] == {"a": 1}
            assert mine["current_phase"] == "p1"
            assert manager.load(theirs)["message_count"] == 2
            assert manager.save_session_state(
                theirs, [{"role": "user", "content": "new"}], {"c": 3}, "p3"
            )
