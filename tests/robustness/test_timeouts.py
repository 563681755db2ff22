"""The timeout rule: a call refused by ``call_timeout`` never takes effect later.

Each test holds something the call needs (the session's actor, the database's write lock,
the writer's transaction) past the caller's timeout, then lets it go and checks that what
is stored agrees with what the caller was told. On both backends where the backend matters.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from actors import InvalidArgument, SessionExists, SessionManager, StoreUnavailable
from tests.conftest import ManagerFactory, history
from tests.robustness._support import snapshot, wait_until

#: The caller's timeout in these tests: short, so that a test takes a second or two.
SHORT = 0.4
WAIT = 10.0


class _Runtime:
    """A runtime whose ``block`` step holds the session's actor until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def block(self) -> str:
        self.entered.set()
        assert self.release.wait(WAIT)
        return "done"


@contextmanager
def _blocked(make_manager: ManagerFactory, url: str, call_timeout: float) -> Iterator[Any]:
    runtime = _Runtime()
    manager = make_manager(
        database_url=url, call_timeout=call_timeout, runtime_factory=lambda _state: runtime
    )
    sid = manager.create_session("copilot", {})
    assert manager.save_session_state(sid, history(2), {"k": 1}, "start", 1)
    pool = ThreadPoolExecutor(4)

    def hold() -> Future[Any]:
        runtime.entered.clear()
        future = pool.submit(manager.run_in_actor, sid, lambda rt: rt.block())
        assert runtime.entered.wait(WAIT)
        return future

    try:
        yield manager, sid, runtime, hold, pool
    finally:
        runtime.release.set()
        pool.shutdown(wait=True)


@pytest.fixture
def blocked(make_manager: ManagerFactory, any_db_url: str) -> Iterator[Any]:
    """A manager (call_timeout SHORT), a session, and a way to hold its actor busy."""
    with _blocked(make_manager, any_db_url, SHORT) as parts:
        yield parts


@pytest.fixture
def patient(make_manager: ManagerFactory, any_db_url: str) -> Iterator[Any]:
    """As ``blocked``, with callers that wait long enough for the actor."""
    with _blocked(make_manager, any_db_url, WAIT) as parts:
        yield parts


class TestQueuedBehindTheActor:
    """A call queued behind a busy actor is withdrawn when its caller gives up."""

    def test_a_refused_save_never_commits_later(self, blocked: Any) -> None:
        """save_session_state returns False after call_timeout; nothing is stored, ever.

        The caller then changes its list (as a loop keeps appending to its buffer); once
        the actor is free again, the stored state is still the one before the call.
        """
        manager, sid, runtime, hold, _ = blocked
        before = snapshot(manager, sid)
        step = hold()
        messages = history(4)
        started = time.monotonic()
        assert manager.save_session_state(sid, messages, {"k": 2}, "refused", 2) is False
        assert time.monotonic() - started < SHORT + 1.5
        messages.append({"role": "user", "content": "added after the refusal"})
        runtime.release.set()
        step.exception(WAIT)  # the step outlived its own call_timeout; it still ran
        manager.live(sid)  # the actor has worked off its inbox
        assert snapshot(manager, sid) == before

    def test_a_refused_suspend_never_commits_later(self, blocked: Any) -> None:
        """A suspend refused after call_timeout leaves the session active, for good."""
        manager, sid, runtime, hold, _ = blocked
        step = hold()
        with pytest.raises(StoreUnavailable, match="nothing was changed"):
            manager.suspend(sid)
        runtime.release.set()
        step.exception(WAIT)
        manager.live(sid)
        assert manager.info(sid)["status"] == "active"

    def test_a_queued_save_stores_the_inputs_of_the_call(self, patient: Any) -> None:
        """Changes the caller makes while its save waits in the inbox are not stored.

        The list grows and a new message is edited in place after the call; the save
        stores the four messages as they were when it was called.
        """
        manager, sid, runtime, hold, pool = patient
        step = hold()
        messages = history(4)
        expected = [dict(m) for m in messages]
        saving = pool.submit(manager.checkpoint, sid, messages, {"k": 3}, "queued", 3)
        wait_until(lambda: not manager._core._refs[sid][0].actor_inbox.empty())
        messages[3]["content"] = "edited in place after the call"
        messages.append({"role": "user", "content": "appended after the call"})
        runtime.release.set()
        assert step.result(WAIT) == "done"
        assert saving.result(WAIT) == 3
        state = manager.load(sid)
        assert state["conversation_history"] == expected
        assert state["current_phase"] == "queued"


def _hold_sqlite_lock(url: str) -> Any:
    connection = sqlite3.connect(str(make_url(url).database), isolation_level=None, timeout=0)
    connection.execute("BEGIN IMMEDIATE")
    return connection


def _hold_pg_rows(url: str) -> Any:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = psycopg.connect(dsn)
    # Reads go on; every write to these tables waits.
    connection.execute(
        "LOCK TABLE sessions, session_states, approval_requests IN SHARE ROW EXCLUSIVE MODE"
    )
    return connection


@contextmanager
def _database_held(url: str) -> Iterator[None]:
    """Another process's transaction holds the SQLite write lock, or PG's tables."""
    holder = _hold_sqlite_lock(url) if url.startswith("sqlite") else _hold_pg_rows(url)
    try:
        yield
    finally:
        holder.rollback()
        holder.close()


@pytest.fixture
def locked(make_manager: ManagerFactory, any_db_url: str) -> tuple[SessionManager, str, str]:
    """A manager whose calls wait SHORT seconds, SQLite's busy timeout 5 s, and a session."""
    manager = make_manager(database_url=any_db_url, call_timeout=SHORT, sqlite_busy_timeout=5.0)
    sid = manager.create_session("copilot", {})
    assert manager.save_session_state(sid, history(2), {"k": 1}, "start", 1)
    return manager, sid, any_db_url


class TestLockedDatabase:
    """Another process holds the database: a call is refused in time, and stays refused."""

    def _refused_in_time(self, call: Any) -> None:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            call()
        assert time.monotonic() - started < SHORT + 1.0

    def test_suspend_create_and_request_approval(
        self, locked: tuple[SessionManager, str, str]
    ) -> None:
        """Suspend, create and request_approval are refused within call_timeout.

        Not after the 5 s busy timeout; and once the lock is gone they have changed
        nothing: no suspended session, no duplicate session, no approval.
        """
        manager, sid, url = locked
        with _database_held(url):
            self._refused_in_time(lambda: manager.suspend(sid))
            self._refused_in_time(lambda: manager.create("copilot", {}))
            self._refused_in_time(lambda: manager.request_approval(sid, "plan", {}))
        time.sleep(0.3)  # a write still running would commit now that the lock is gone
        manager.live(sid)
        assert manager.info(sid)["status"] == "active"
        assert len(manager.sessions()) == 1
        assert manager.database.store.pending_approvals(sid) == []

    def test_an_inline_save_honours_call_timeout(
        self, locked: tuple[SessionManager, str, str]
    ) -> None:
        """A save to an idle actor (run in the caller's thread) gives up at call_timeout.

        It returns False, and nothing is stored after the lock is released.
        """
        manager, sid, url = locked
        before = snapshot(manager, sid)
        with _database_held(url):
            started = time.monotonic()
            assert manager.save_session_state(sid, history(6), {"k": 9}, "late", 9) is False
            assert time.monotonic() - started < SHORT + 1.0
        time.sleep(0.3)
        assert snapshot(manager, sid) == before
        assert manager.save_session_state(sid, history(6), {"k": 9}, "later", 9) is True


class TestCallerChosenIds:
    """A create with the caller's id can be retried after an unknown outcome."""

    def test_a_retried_create_returns_the_same_session(
        self, make_manager: ManagerFactory, any_db_url: str
    ) -> None:
        """Same id and arguments: the same session, written once; other arguments: refused."""
        manager = make_manager(database_url=any_db_url)
        sid = "order-1234"
        assert manager.create_session("copilot", {"m": 1}, "alice", session_id=sid) == sid
        assert manager.save_session_state(sid, history(2), {}, "p", 1)
        assert manager.create_session("copilot", {"m": 1}, "alice", session_id=sid) == sid
        assert len(manager.load(sid)["conversation_history"]) == 2  # untouched by the retry
        assert len(manager.sessions()) == 1
        with pytest.raises(SessionExists):
            manager.create_session("copilot", {"m": 2}, "alice", session_id=sid)
        with pytest.raises(SessionExists):
            manager.create("swarm", {"m": 1}, "alice", session_id=sid)

    @pytest.mark.parametrize("bad", ["", "x" * 37, "tab\there", 7])
    def test_a_bad_id_is_refused(
        self, make_manager: ManagerFactory, any_db_url: str, bad: Any
    ) -> None:
        """Empty, too long for the column, not printable, not a str: InvalidArgument."""
        manager = make_manager(database_url=any_db_url)
        with pytest.raises(InvalidArgument):
            manager.create("copilot", {}, session_id=bad)
        assert manager.sessions() == []
