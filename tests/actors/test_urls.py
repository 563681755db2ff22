"""Database URLs: plain paths, an in-memory database, and bad paths refused in one line."""

from __future__ import annotations

import subprocess
import sys
import threading
import traceback
from pathlib import Path

import pytest

from actors import StoreUnavailable, create_session_manager
from tests.conftest import history

SESSIONS = Path(sys.executable).with_name("sessions")  # the console script, as installed
MEMORY_URLS = [":memory:", "sqlite://", "sqlite:///:memory:", "sqlite+aiosqlite://"]


class TestPlainPaths:
    """A path without a scheme is a SQLite file: relative, in a subdirectory, absolute."""

    @pytest.mark.parametrize("given", ["sessions.db", "./data/s.db", "ABSOLUTE"])
    def test_the_file_is_created_where_the_path_says(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
    ) -> None:
        """The file appears at the path (resolved against the working directory); reopens."""
        monkeypatch.chdir(tmp_path)
        (tmp_path / "data").mkdir()
        path = str(tmp_path / "abs.db") if given == "ABSOLUTE" else given
        with create_session_manager(path) as manager:
            sid = manager.create_session("copilot", {})
            assert manager.save_session_state(sid, history(2), {"k": 1}, "p")
        assert (tmp_path / path).is_file()
        with create_session_manager(path) as manager:
            assert manager.load(sid)["conversation_history"] == history(2)


class TestInMemory:
    """``:memory:`` (and ``sqlite://``): one database shared by all of the manager's threads."""

    @pytest.mark.parametrize("url", MEMORY_URLS)
    def test_every_thread_sees_the_same_database(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
    ) -> None:
        """Saves from 8 threads, reads from others; nothing is written to disk."""
        monkeypatch.chdir(tmp_path)
        with create_session_manager(url) as manager:
            assert manager.database.url == "sqlite:///:memory:"
            ids = [manager.create_session("copilot", {}) for _ in range(8)]
            errors: list[BaseException] = []

            def work(session_id: str) -> None:
                try:
                    for step in range(1, 6):
                        assert manager.save_session_state(session_id, history(2 * step), {}, "p")
                        assert manager.load(session_id)["message_count"] == 2 * step
                except BaseException as error:  # noqa: BLE001 - reported below
                    errors.append(error)

            threads = [threading.Thread(target=work, args=(sid,)) for sid in ids]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert errors == []
            assert {row["session_id"] for row in manager.list_sessions()} == set(ids)
            for sid in ids:
                assert manager.load_session_state(sid)["conversation_history"] == history(10)  # type: ignore[index]
        assert list(tmp_path.iterdir()) == []

    def test_each_manager_has_its_own_and_it_goes_with_close(self) -> None:
        """Two in-memory managers do not share; a new one after close() starts empty."""
        first, other = create_session_manager(":memory:"), create_session_manager(":memory:")
        with first, other:
            first.create_session("copilot", {})
            assert other.list_sessions() == []
        with create_session_manager(":memory:") as again:
            assert again.list_sessions() == []


def _bad_paths(tmp_path: Path) -> dict[str, tuple[str, Path, str]]:
    """Each case: (what to pass, the absolute path the message names, a hint it gives)."""
    return {
        "missing directory": ("nodir/s.db", tmp_path / "nodir" / "s.db", "mkdir -p"),
        "a directory": (".", tmp_path, "is a directory"),
        "not writable": ("/proc/sessions.db", Path("/proc/sessions.db"), "writable SQLite file"),
    }


@pytest.fixture(params=["missing directory", "a directory", "not writable"])
def bad_path(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Path, str]:
    """A path that cannot hold the database, relative to a fresh working directory."""
    monkeypatch.chdir(tmp_path)
    return _bad_paths(tmp_path)[request.param]


class TestBadPaths:
    """One line naming the absolute path and what to do; no chained traceback."""

    def test_the_factory_says_it_in_one_line(self, bad_path: tuple[str, Path, str]) -> None:
        """StoreUnavailable, no __cause__ / context shown, a short traceback, nothing created."""
        given, absolute, hint = bad_path
        before = sorted(Path().iterdir())
        with pytest.raises(StoreUnavailable) as caught:
            create_session_manager(given)
        message = str(caught.value)
        assert "\n" not in message
        assert str(absolute) in message
        assert hint in message
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__
        shown = "".join(traceback.format_exception(caught.value))
        assert "During handling" not in shown
        assert "direct cause" not in shown
        assert len(shown.splitlines()) < 25
        assert sorted(Path().iterdir()) == before

    @pytest.mark.parametrize("command", [["db", "upgrade"], ["list"]])
    def test_the_cli_says_it_in_one_line(
        self, bad_path: tuple[str, Path, str], command: list[str]
    ) -> None:
        """`sessions` exits 6 with one line on stderr naming the absolute path."""
        given, absolute, _hint = bad_path
        done = subprocess.run(
            [str(SESSIONS), "--database-url", given, *command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 6, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert str(absolute) in lines[0]
