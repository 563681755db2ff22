"""Database faults: a dropped PostgreSQL connection, a locked, read-only or full SQLite file.

Each fault gives the typed ``StoreUnavailable`` (``False``/``None`` in the seed façade),
leaves the live actor's state as it was (nothing unacknowledged is adopted), and once the
database is back the session goes on where it was, with the actor and the database agreeing.
"""

from __future__ import annotations

import contextlib
import sqlite3
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event

from actors import ManualClock, OutcomeUnknown, SessionManager, StoreUnavailable
from persistence import Database
from tests.conftest import PG_ADMIN_DSN, ManagerFactory, history
from tests.robustness._support import child_env, snapshot, spawn, stop


def _agree(manager: SessionManager, session_id: str) -> dict[str, Any]:
    """The live actor and the stored row describe the same checkpoint; return the stored."""
    stored = manager.load(session_id)
    live = manager.live(session_id)
    assert (live.version, live.message_count, live.status) == (
        stored["version"],
        len(stored["conversation_history"]),
        stored["status"],
    )
    assert (live.current_phase, live.current_step) == (
        stored["current_phase"],
        stored["current_step"],
    )
    return stored


def _refused_everywhere(manager: SessionManager, session_id: str) -> None:
    """Every kind of call gets StoreUnavailable, or the seed façade's refusal value."""
    with pytest.raises(StoreUnavailable):
        manager.checkpoint(session_id, history(8), {"step": 4}, "broken", 4)
    assert manager.save_session_state(session_id, history(8), {"step": 4}, "broken", 4) is False
    assert manager.suspend_session(session_id) is False
    with pytest.raises(StoreUnavailable):
        manager.create_session("copilot", {})


def _goes_on(manager: SessionManager, session_id: str, before: dict[str, Any]) -> None:
    """After the fault: nothing of it was stored, and the session saves again."""
    assert snapshot(manager, session_id) == before
    assert manager.save_session_state(session_id, history(10), {"step": 5}, "after", 5)
    stored = _agree(manager, session_id)
    assert stored["conversation_history"] == history(10)
    assert (stored["context_variables"], stored["current_step"]) == ({"step": 5}, 5)
    assert stored["version"] == before["state"]["version"] + 1
    assert manager.suspend_session(session_id)
    assert manager.resume_session(session_id)


def _start(manager: SessionManager) -> tuple[str, dict[str, Any]]:
    session_id = manager.create_session("copilot", {"model": "m"})
    assert manager.save_session_state(session_id, history(6), {"step": 3}, "execution", 3)
    _agree(manager, session_id)
    return session_id, snapshot(manager, session_id)


# ---------------------------------------------------------------------------- PostgreSQL


def _pg_admin(statement: str, *args: Any) -> Any:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as connection:
        cursor = connection.execute(statement, args)
        return cursor.fetchall() if cursor.description is not None else []


def _terminate_backends(database: str) -> int:
    rows = _pg_admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        database,
    )
    return len(rows)


@pytest.mark.postgres
class TestPostgresConnectionDropped:
    """pg_terminate_backend on every connection of the test database, mid-run."""

    def test_dropped_and_refused_then_back(self, pg_url: str, make_manager: ManagerFactory) -> None:
        """While the database refuses connections every call fails typed; then it goes on."""
        manager = make_manager(database_url=pg_url)
        session_id, before = _start(manager)
        database = pg_url.rsplit("/", 1)[1]
        _pg_admin(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
        try:
            assert _terminate_backends(database) >= 1
            _refused_everywhere(manager, session_id)
            assert manager.load_session_state(session_id) is None
            live = manager.live(session_id)
            assert (live.version, live.current_step) == (before["state"]["version"], 3)
        finally:
            _pg_admin(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
        _goes_on(manager, session_id, before)

    def test_dropped_between_saves_costs_no_refusal(
        self, pg_url: str, make_manager: ManagerFactory
    ) -> None:
        """Connections killed between saves: the pool replaces them, no save is refused."""
        manager = make_manager(database_url=pg_url)
        session_id, _ = _start(manager)
        database = pg_url.rsplit("/", 1)[1]
        refusals = 0
        acked = 3
        for step in range(4, 24):
            if step % 4 == 0:
                assert _terminate_backends(database) >= 1
            if manager.save_session_state(
                session_id, history(2 * step), {"step": step}, f"phase-{step}", step
            ):
                acked = step
            else:
                refusals += 1
        assert refusals == 0, f"{refusals} refusals: dead pooled connections were reused"
        stored = _agree(manager, session_id)
        assert stored["current_step"] >= acked
        step = stored["current_step"]
        assert stored["conversation_history"] == history(2 * step)
        assert stored["context_variables"] == {"step": step}

    def test_dropped_under_concurrent_writers(
        self, pg_url: str, make_manager: ManagerFactory
    ) -> None:
        """Eight sessions saving from eight threads while their connections are killed."""
        import threading  # noqa: PLC0415

        manager = make_manager(database_url=pg_url)
        database = pg_url.rsplit("/", 1)[1]
        ids = [manager.create_session("copilot", {}) for _ in range(8)]
        acked = dict.fromkeys(ids, 0)
        refusals = [0]
        stop_flag = threading.Event()

        def writer(session_id: str) -> None:
            step = 0
            while not stop_flag.is_set() and step < 200:
                step += 1
                ok = manager.save_session_state(
                    session_id, history(step), {"step": step}, f"p{step}", step
                )
                if ok:
                    acked[session_id] = step
                else:  # an unacknowledged save may still have committed: reload
                    refusals[0] += 1
                    state = manager.load_session_state(session_id)
                    step = (state or {}).get("current_step") or acked[session_id]

        threads = [threading.Thread(target=writer, args=(sid,)) for sid in ids]
        for thread in threads:
            thread.start()
        try:
            for _ in range(5):
                time.sleep(0.05)  # the writers are mid-save when their connections go
                _terminate_backends(database)
        finally:
            stop_flag.set()
            for thread in threads:
                thread.join(30)
        for session_id in ids:
            assert manager.save_session_state(
                session_id, history(300), {"step": 300}, "final", 300
            ), f"{session_id} did not go on after the faults"
            stored = _agree(manager, session_id)
            assert stored["conversation_history"] == history(300)
        stats = manager.database.store.writer.stats
        met = refusals[0] + stats.retried_batches + stats.recovered_batches
        assert met >= 1, "no save met a dropped connection: the test proved nothing"
        print(f"pg faults: 5 terminations under 8 writers, {refusals[0]} refusals")  # noqa: T201


# ---------------------------------------------------------------------------- SQLite


@pytest.fixture
def short_busy(make_manager: ManagerFactory) -> SessionManager:
    """A manager whose SQLite connections wait only 100 ms for a lock held elsewhere."""
    # A call timeout below the default busy timeout (5 s): a refusal that names the lock
    # proves that the setting reached every SQLite connection.
    return make_manager(sqlite_busy_timeout=0.1, call_timeout=3)


class TestSqliteLocked:
    """Another connection holds the write lock past busy_timeout."""

    def test_locked_then_released(self, short_busy: SessionManager, tmp_path: Path) -> None:
        """BEGIN EXCLUSIVE elsewhere: writes fail typed (reads go on), then all goes on."""
        session_id, before = _start(short_busy)
        other = sqlite3.connect(tmp_path / "sessions.db", isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            # Refused by SQLite's busy timeout (0.1 s), not by the 3 s call timeout.
            with pytest.raises(StoreUnavailable, match="database is locked"):
                short_busy.checkpoint(session_id, history(8), {}, "blocked")
            _refused_everywhere(short_busy, session_id)
            assert short_busy.load_session_state(session_id) is not None  # WAL readers go on
            assert snapshot(short_busy, session_id) == before
        finally:
            other.execute("ROLLBACK")
            other.close()
        _goes_on(short_busy, session_id, before)


class TestSqliteLockedPastTheCallTimeout:
    """The lock outlasts the caller's patience, not SQLite's."""

    def test_an_idle_actors_save_gives_up_at_the_call_timeout(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        """Run in the caller's thread, the save waits for the lock only until call_timeout.

        It is refused (False) before the lock goes, and nothing commits once it has gone.
        """
        db = Database.open(f"sqlite+aiosqlite:///{tmp_path / 'late.db'}", busy_timeout_ms=5000)
        manager = SessionManager(db, clock=clock, call_timeout=0.3)
        try:
            session_id, before = _start(manager)
            other = sqlite3.connect(
                tmp_path / "late.db", isolation_level=None, check_same_thread=False
            )
            other.execute("BEGIN EXCLUSIVE")
            unlock = threading.Timer(1.0, other.execute, ("ROLLBACK",))
            unlock.start()
            try:
                started = time.monotonic()
                refused = manager.save_session_state(session_id, history(8), {"step": 4}, "late", 4)
                waited = time.monotonic() - started
            finally:
                unlock.join()
                other.close()
            assert refused is False
            assert waited < 0.9  # the 5 s busy timeout did not apply
            assert _agree(manager, session_id) == before["state"]
        finally:
            manager.close()

    def test_a_queued_save_refused_by_the_timeout_never_commits(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        """Behind a busy actor the caller gives up (False): withdrawn, it never commits.

        The next save goes on from what is stored.
        """
        db = Database.open(f"sqlite+aiosqlite:///{tmp_path / 'late.db'}", busy_timeout_ms=5000)
        manager = SessionManager(db, clock=clock, call_timeout=0.3, runtime_factory=dict)
        try:
            session_id, before = _start(manager)
            busy, release = threading.Event(), threading.Event()

            def occupy(_runtime: Any) -> None:
                busy.set()
                assert release.wait(10)

            occupier = threading.Thread(
                target=_quietly, args=(manager.run_in_actor, session_id, occupy)
            )
            occupier.start()
            assert busy.wait(10)
            other = sqlite3.connect(tmp_path / "late.db", isolation_level=None)
            try:
                other.execute("BEGIN EXCLUSIVE")
                refused = manager.save_session_state(session_id, history(8), {"step": 4}, "late", 4)
                release.set()  # the actor moves on: the withdrawn save is dropped
            finally:
                other.execute("ROLLBACK")
                other.close()
                release.set()
                occupier.join(10)
            assert refused is False
            version = before["state"]["version"]
            manager.live(session_id)  # the actor has worked off its inbox
            assert manager.load(session_id)["version"] == version
            assert manager.save_session_state(session_id, history(10), {"step": 5}, "after", 5)
            stored = _agree(manager, session_id)
            assert (stored["version"], stored["conversation_history"]) == (version + 1, history(10))
        finally:
            manager.close()


def _quietly(call: Any, *args: Any) -> None:
    """Call, ignoring the error (the occupying call outlives its caller's timeout)."""
    with contextlib.suppress(Exception):
        call(*args)


class TestSqliteReadOnly:
    """The database turns read-only under a running manager (SQLITE_READONLY)."""

    def test_read_only_then_writable(self, manager: SessionManager) -> None:
        """Every write fails typed while the file is read-only; nothing is half-written."""
        session_id, before = _start(manager)
        writer_engine = manager.database.store.backend.write_engine
        read_only = {"on": False}

        @event.listens_for(writer_engine, "checkout")
        def _checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            dbapi_connection.execute(f"PRAGMA query_only={int(read_only['on'])}")

        def query_only(on: bool) -> None:
            # The writer checks its connection out again after a failed batch, so from the
            # first failure on it follows the flag; the open one turns read-only now.
            read_only["on"] = on
            if on:
                manager.database.store.write(
                    lambda connection: connection.exec_driver_sql("PRAGMA query_only=1")
                )

        query_only(True)
        try:
            _refused_everywhere(manager, session_id)
            assert snapshot(manager, session_id) == before
        finally:
            query_only(False)
        _goes_on(manager, session_id, before)


_DISK_FULL = """
import resource, signal, sys
from actors import StoreUnavailable, create_session_manager

def history(n):
    return [{"role": "user", "content": f"message {i}"} for i in range(n)]

m = create_session_manager(sys.argv[1])
sid = m.create_session("copilot", {})
assert m.save_session_state(sid, history(4), {"step": 2}, "execution", 2)
before = m.load(sid)
# The disk is full: no file of this process may grow any more (EFBIG, not SIGXFSZ).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (1, hard))
big = {"blob": "x" * 4_000_000}
refused = 0
for _ in range(3):
    refused += m.save_session_state(sid, history(8), big, "too-big", 3) is False
try:
    m.checkpoint(sid, history(8), big, "too-big", 3)
except StoreUnavailable as error:
    print("typed:", type(error).__name__)
live = m.live(sid)
assert (live.version, live.message_count, live.current_step) == (before["version"], 4, 2), live
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
assert m.load(sid) == before
assert m.save_session_state(sid, history(8), {"step": 3}, "review", 3)
after = m.load(sid)
assert after["version"] == before["version"] + 1 and after["conversation_history"] == history(8)
m.close()
print("refused:", refused)
"""


class TestSqliteDiskFull:
    """No file may grow (a full disk / a size limit): SQLITE_FULL on the next commit."""

    def test_full_then_space_again(self, db_url: str, tmp_path: Path) -> None:
        """In a child process limited by RLIMIT_FSIZE: typed refusals, then recovery."""
        import subprocess  # noqa: PLC0415

        process = spawn(
            ["-c", textwrap.dedent(_DISK_FULL), db_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
        )
        try:
            out, err = process.communicate(timeout=60)
        finally:
            stop(process)
        assert process.returncode == 0, err
        assert out.split() == ["typed:", "StoreUnavailable", "refused:", "3"]
        connection = sqlite3.connect(tmp_path / "sessions.db")
        try:
            assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            connection.close()


class TestUnusableFile:
    """A database that cannot be opened at all gives StoreUnavailable, not a traceback."""

    @pytest.mark.parametrize(
        "make_path",
        [
            pytest.param(lambda d: d / "a-file" / "sessions.db", id="parent-is-a-file"),
            pytest.param(lambda d: d / "missing-dir" / "sessions.db", id="parent-missing"),
            pytest.param(lambda d: d / "garbage.db", id="not-a-database"),
            pytest.param(lambda d: d, id="a-directory"),
        ],
    )
    def test_open_refused(self, tmp_path: Path, make_path: Any) -> None:
        """create_session_manager raises StoreUnavailable naming the database."""
        from actors import create_session_manager  # noqa: PLC0415

        (tmp_path / "a-file").write_text("not a directory")
        (tmp_path / "garbage.db").write_bytes(b"this is not an SQLite database at all" * 100)
        path = make_path(tmp_path)
        with pytest.raises(StoreUnavailable, match="cannot open the session store"):
            create_session_manager(f"sqlite+aiosqlite:///{path}", session_ttl=timedelta(hours=1))


class TestLostAnswer:
    """A write that committed but whose answer never arrived (the link died after COMMIT)."""

    def _lose_answers(self, manager: SessionManager, monkeypatch: pytest.MonkeyPatch) -> None:
        store = manager.database.store
        real_checkpoint, real_transition = store.checkpoint, store.transition

        def checkpoint(cp: Any, timeout: float | None = None) -> int:
            real_checkpoint(cp, timeout)
            raise OutcomeUnknown("injected: the connection dropped after COMMIT")

        def transition(*args: Any) -> int:
            real_transition(*args)
            raise OutcomeUnknown("injected: the connection dropped after COMMIT")

        monkeypatch.setattr(store, "checkpoint", checkpoint)
        monkeypatch.setattr(store, "transition", transition)

    def test_next_save_goes_on_from_what_was_committed(
        self, manager: SessionManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The refused-but-committed save is reloaded; the next save is not refused as stale."""
        session_id, before = _start(manager)
        self._lose_answers(manager, monkeypatch)
        assert (
            manager.save_session_state(session_id, [history(8)[0]], {"step": 4}, "lost", 4) is False
        )
        monkeypatch.undo()
        stored = manager.load(session_id)
        assert (stored["version"], stored["current_step"]) == (before["state"]["version"] + 1, 4)
        # An append to the committed (rewritten, one-message) history, detected as such.
        longer = [history(8)[0], *history(3, start=20)]
        assert manager.save_session_state(session_id, longer, {"step": 5}, "after", 5)
        assert _agree(manager, session_id)["conversation_history"] == longer

    def test_next_transition_goes_on_from_what_was_committed(
        self, manager: SessionManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A suspend whose answer was lost: resume (not a second suspend) is what is allowed."""
        session_id, _ = _start(manager)
        self._lose_answers(manager, monkeypatch)
        assert manager.suspend_session(session_id) is False
        monkeypatch.undo()
        assert manager.load(session_id)["status"] == "suspended"
        assert manager.resume_session(session_id)
        assert _agree(manager, session_id)["status"] == "active"
