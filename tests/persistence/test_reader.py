"""The read hot path: the ReadPool's compiled statements on pooled driver connections.

Reads run in the calling thread on the driver's own connections (read-only ``sqlite3``
ones on SQLite, autocommit psycopg ones on PostgreSQL); most tests here are about SQLite's
file and locks, the round trips run on both databases.
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, cast

import pytest
from sqlalchemy import Connection, Select, select

from actors import SessionManager
from persistence import (
    Checkpoint,
    Database,
    MessageRow,
    NewSession,
    SessionDocument,
    SessionSummary,
    StateRecord,
    StoreUnavailable,
    _json,
)
from persistence._backend import Driver
from persistence._codec import decode_message, decode_rows, encode_message
from persistence._reads import ReadPool
from persistence._statements import LOAD_MESSAGES
from persistence._tables import (
    LOAD_SESSION_COLUMNS,
    MESSAGE_COLUMNS,
    STATE_COLUMNS,
    SUMMARY_COLUMNS,
    messages,
    sessions,
    state_record,
    states,
)
from tests.conftest import ManagerFactory, history

WAIT = 5.0

#: Every shape a message can take: column values, values that cannot go to their column
#: (not strings, NUL characters, too wide), extra keys, nesting, unicode, nothing at all.
EVERY_SHAPE: list[dict[str, Any]] = [
    {"role": "user", "content": "hello"},
    {
        "role": "assistant",
        "agent": "planner",
        "content": "plan",
        "timestamp": "2026-01-01T00:00:00Z",
    },
    {"role": "tool", "content": "x", "tool_call_id": "c1", "meta": {"n": [1, 2.5, None, True]}},
    {"role": "user", "content": "nul \x00 inside"},
    {"role": "r" * 65, "agent": "a" * 256, "content": "wide columns", "timestamp": "t" * 65},
    {"role": 7, "content": None, "agent": ["not", "a", "string"], "timestamp": 1.5},
    {"content": "ünïcødé ✓ 🎉", "extra": "a key named extra"},
    {"role": "user"},
    {},
    {"role": "assistant", "content": "", "agent": "", "timestamp": ""},
]

#: (user_id, status, mode, limit) filters of list_sessions, each shape once.
LIST_FILTERS = [
    (None, None, None, 10),
    ("u", None, None, 10),
    (None, "active", None, 1),
    (None, None, "copilot", 10),
    ("u", "active", "copilot", 10),
    ("nobody", None, None, 10),
]


@pytest.fixture
def db(manager: SessionManager) -> Database:
    """The store behind a manager on a fresh SQLite file."""
    return manager.database


def _reader(db: Database) -> ReadPool:
    return db.store.reads


def _load_messages(db: Database, connection: Driver, session_id: str) -> list[Any]:
    """The hot load's message rows of a session, read on ``connection``."""
    compiled = LOAD_MESSAGES.compiled(db.store.backend.dialect)
    rows: list[Any] = connection.execute(compiled.text, compiled.bind({"sid": session_id}))
    return list(rows)


def _file(db: Database) -> str:
    return db.url.split("///", 1)[1]


def _in_thread(fn: Any, *args: Any) -> Any:
    """Run ``fn`` on a fresh thread (not the caller's, not the store's) and wait for it."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result(WAIT)


class TestReadYourWrites:
    """A read sees every write acknowledged before it began, from any thread."""

    def test_reads_from_other_threads_see_each_acknowledged_save_at_once(
        self, manager: SessionManager, db: Database
    ) -> None:
        """Once a save returns, a load on another thread (on a pooled connection) sees it."""
        sid = manager.create_session("copilot", {})
        messages: list[dict[str, Any]] = []
        for step in range(1, 21):
            messages = [*messages, *history(2, start=len(messages))]
            assert manager.save_session_state(sid, messages, {"step": step}, "run", step)
            document = _in_thread(db.store.load, sid)
            assert document is not None
            assert document.history == messages
            assert document.state.current_step == step
            state = _in_thread(db.store.state, sid)
            assert state is not None
            assert state.message_count == len(messages)
            info = _in_thread(db.store.session_info, sid)
            assert info is not None
            assert info.message_count == len(messages)

    def test_no_snapshot_is_held_between_reads(self, manager: SessionManager, db: Database) -> None:
        """After reads, a TRUNCATE checkpoint of the WAL completes (an open read would stop it)."""
        sid = manager.create_session("copilot", {})
        assert manager.save_session_state(sid, history(10), {}, "run")
        for _ in range(3):
            assert db.store.load(sid) is not None
            assert db.store.state(sid) is not None
            assert db.store.session_info(sid) is not None
            assert db.store.load("missing") is None
        probe = sqlite3.connect(_file(db), timeout=0.5, isolation_level=None)
        try:
            assert probe.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
            # The probe itself can fail: a snapshot held open makes the same checkpoint busy.
            held = sqlite3.connect(_file(db), isolation_level=None)
            try:
                held.execute("BEGIN")
                held.execute("SELECT count(*) FROM session_messages").fetchall()
                assert manager.save_session_state(sid, history(12), {}, "run")
                assert probe.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 1
            finally:
                held.close()
        finally:
            probe.close()


class TestNeverBlocksAWriter:
    """Reads take no write lock: they neither wait for a writer nor make one wait."""

    def test_reads_answer_while_another_connection_holds_the_write_lock(
        self, manager: SessionManager, db: Database
    ) -> None:
        """With the write lock held elsewhere (busy timeout 5 s), every read answers at once."""
        sid = manager.create_session("copilot", {})
        assert manager.save_session_state(sid, history(4), {}, "run")
        locker = sqlite3.connect(_file(db), isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                document = pool.submit(db.store.load, sid).result(timeout=2.0)
                assert pool.submit(db.store.state, sid).result(timeout=2.0) is not None
                assert pool.submit(db.store.session_info, sid).result(timeout=2.0) is not None
            assert document is not None
            assert document.history == history(4)
        finally:
            locker.close()

    def test_a_save_commits_while_a_read_is_in_progress(
        self, manager: SessionManager, db: Database
    ) -> None:
        """A read transaction left open does not delay a save; the read keeps its snapshot."""
        sid = manager.create_session("copilot", {})
        assert manager.save_session_state(sid, history(2), {}, "run")
        inside, release = threading.Event(), threading.Event()

        def slow_read(connection: sqlite3.Connection) -> int:
            rows = _load_messages(db, connection, sid)
            inside.set()
            assert release.wait(WAIT)
            return len(_load_messages(db, connection, sid)) + len(rows)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            reading = pool.submit(_reader(db).read, slow_read, snapshot=True)
            assert inside.wait(WAIT)
            with concurrent.futures.ThreadPoolExecutor(1) as saver:
                saved = saver.submit(manager.save_session_state, sid, history(6), {}, "run")
                assert saved.result(timeout=2.0) is True
            release.set()
            assert reading.result(WAIT) == 4  # both statements saw the snapshot before the save
        document = db.store.load(sid)
        assert document is not None
        assert document.history == history(6)

    def test_reader_connections_refuse_writes(self, manager: SessionManager, db: Database) -> None:
        """A write on a reader connection is a StoreUnavailable and changes nothing."""
        sid = manager.create_session("copilot", {})

        def write(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM sessions")

        with pytest.raises(StoreUnavailable, match="could not be read"):
            _reader(db).read(write)
        assert db.store.session_info(sid) is not None


class TestClose:
    """Closing the store closes every reader connection."""

    def test_close_closes_every_reader_connection(self, make_manager: ManagerFactory) -> None:
        """Connections opened by concurrent reads are all closed by close(); reads then fail."""
        manager = make_manager()
        db = manager.database
        sid = manager.create_session("copilot", {})
        reader = _reader(db)
        barrier = threading.Barrier(4, timeout=WAIT)

        def read_together(connection: sqlite3.Connection) -> None:
            _load_messages(db, connection, sid)
            barrier.wait()

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for future in [pool.submit(reader.read, read_together) for _ in range(4)]:
                future.result(WAIT)
        assert reader.open_connections == 4
        manager.close()
        assert db.closed
        assert reader.open_connections == 0
        with pytest.raises(StoreUnavailable, match="closed"):
            db.store.load(sid)
        with pytest.raises(StoreUnavailable, match="closed"):
            reader.state(sid)

    def test_a_read_in_progress_at_close_closes_its_connection_after(self, tmp_path: Path) -> None:
        """A connection checked out when close() runs is closed when its read ends."""
        db = Database.open(f"sqlite:///{tmp_path / 'c.db'}")
        reader = _reader(db)
        inside, release = threading.Event(), threading.Event()

        def held(connection: sqlite3.Connection) -> int:
            inside.set()
            assert release.wait(WAIT)
            return int(connection.execute("SELECT 1").fetchone()[0])

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            reading = pool.submit(reader.read, held)
            assert inside.wait(WAIT)
            db.close()
            assert reader.open_connections == 1
            release.set()
            assert reading.result(WAIT) == 1
        assert reader.open_connections == 0


class TestRoundTrip:
    """A load gives back exactly the messages that were saved."""

    def test_every_message_shape_round_trips(
        self, any_db_url: str, make_manager: ManagerFactory
    ) -> None:
        """Agent, timestamp, extra keys, NUL, wide and non-string values: equal after load."""
        manager = make_manager(database_url=any_db_url)
        db = manager.database
        sid = manager.create_session("copilot", {"k": 1}, user_id="u", name="n")
        assert manager.save_session_state(sid, EVERY_SHAPE, {"c": [1]}, "run", 3)
        document = db.store.load(sid)
        assert document is not None
        assert document.history == EVERY_SHAPE
        assert _CoreReads(db).load(sid) == document
        state = manager.load_session_state(sid)
        assert state is not None
        assert state["conversation_history"] == EVERY_SHAPE

    def test_the_fast_path_loads_what_the_engine_path_loads(self, any_db_url: str) -> None:
        """Document, state, summary and listings from the ReadPool equal SQLAlchemy's.

        The hot reads run compiled statements on the driver and convert datetimes and
        JSON themselves; SQLAlchemy Core with the models' types, on the same rows, is
        the reference (on both databases).
        """
        db = Database.open(any_db_url)
        try:
            _seed(db)
            fast = _load_everything(db.store)
            assert fast == _load_everything(_CoreReads(db))
            assert fast[0][0] is not None  # the full session was read, not only misses
            assert fast[0][0].state.lease_expires_at is None
            assert fast[1][1] is not None
            assert fast[1][1].lease_expires_at is not None
        finally:
            db.close()

    def test_decode_rows_equals_decode_message(self) -> None:
        """The unrolled decoder gives what the per-row decoder gives, for every shape."""
        rows = [encode_message(message, "m", None) for message in EVERY_SHAPE]
        assert decode_rows(rows) == [decode_message(row) for row in rows] == EVERY_SHAPE


class _Reads(Protocol):
    """The hot reads, as the store and the reference both offer them."""

    def load(self, session_id: str) -> SessionDocument | None: ...

    def state(self, session_id: str) -> StateRecord | None: ...

    def session_info(self, session_id: str) -> SessionSummary | None: ...

    def list_sessions(
        self,
        user_id: str | None,
        status: str | None,
        mode: str | None,
        limit: int,
        *,
        newest_by: str = "updated_at",
    ) -> list[SessionSummary]: ...


class _CoreReads:
    """The hot reads written in SQLAlchemy Core (the models' types convert the values)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def load(self, session_id: str) -> SessionDocument | None:
        def fn(connection: Connection) -> SessionDocument | None:
            with connection.begin():
                head = connection.execute(
                    select(*STATE_COLUMNS, *LOAD_SESSION_COLUMNS)
                    .select_from(states.join(sessions, sessions.c.id == states.c.session_id))
                    .where(states.c.session_id == session_id)
                ).first()
                if head is None:
                    return None
                rows = connection.execute(
                    select(*MESSAGE_COLUMNS)
                    .where(messages.c.session_id == session_id)
                    .order_by(messages.c.seq)
                )
                history = [decode_message(cast("MessageRow", tuple(row))) for row in rows]
            return SessionDocument(
                session_id=session_id,
                user_id=head[15],
                name=head[16],
                config=_json.decode(head[17]) or {},
                created_at=head[18],
                last_active_at=head[19],
                state=state_record(head, _as_is),
                history=history,
            )

        return self._db.store.read(fn)

    def state(self, session_id: str) -> StateRecord | None:
        def fn(connection: Connection) -> StateRecord | None:
            row = connection.execute(
                select(*STATE_COLUMNS).where(states.c.session_id == session_id)
            ).first()
            return None if row is None else state_record(row, _as_is)

        return self._db.store.read(fn)

    @staticmethod
    def _summaries(connection: Connection, query: Select[Any]) -> list[SessionSummary]:
        summaries = []
        for row in connection.execute(query):
            values = list(row)
            values[3] = _json.decode(values[3]) or {}
            summaries.append(SessionSummary(*values))
        return summaries

    def session_info(self, session_id: str) -> SessionSummary | None:
        def fn(connection: Connection) -> SessionSummary | None:
            found = self._summaries(connection, _summary_query().where(sessions.c.id == session_id))
            return found[0] if found else None

        return self._db.store.read(fn)

    def list_sessions(
        self,
        user_id: str | None,
        status: str | None,
        mode: str | None,
        limit: int,
        *,
        newest_by: str = "updated_at",
    ) -> list[SessionSummary]:
        query = _summary_query()
        if user_id is not None:
            query = query.where(sessions.c.user_id == user_id)
        if status is not None:
            query = query.where(states.c.status == status)
        if mode is not None:
            query = query.where(states.c.mode == mode)
        newest = sessions.c.created_at if newest_by == "created_at" else states.c.updated_at
        query = query.order_by(newest.desc(), sessions.c.id).limit(limit)
        return self._db.store.read(lambda connection: self._summaries(connection, query))


def _as_is(value: Any) -> Any:
    """SQLAlchemy's UTCDateTime already returns aware UTC datetimes."""
    return value


def _summary_query() -> Select[Any]:
    return select(*SUMMARY_COLUMNS).select_from(
        sessions.outerjoin(states, sessions.c.id == states.c.session_id)
    )


def _load_everything(reads: _Reads) -> list[Any]:
    """Every read of every seeded session (and of a missing one), every listing."""
    result: list[Any] = [
        (reads.load(sid), reads.state(sid), reads.session_info(sid))
        for sid in ("full", "empty", "other", "x")
    ]
    for user_id, status, mode, limit in LIST_FILTERS:
        for newest_by in ("updated_at", "created_at"):
            result.append(reads.list_sessions(user_id, status, mode, limit, newest_by=newest_by))
    return result


def _seed(db: Database) -> None:
    """A session with every message shape and a plan, an empty leased one, a suspended one."""
    now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    for sid, user, mode, lease in (
        ("full", "u", "copilot", None),
        ("empty", "u", "copilot", now + timedelta(seconds=30)),
        ("other", "v", "task", None),
    ):
        new = NewSession(sid, user, sid, mode, '{"a":1}', now, now + timedelta(days=1),
                         "me", lease)  # fmt: skip
        db.store.create_session(new)
    rows = [encode_message(message, "m", None) for message in EVERY_SHAPE]
    checkpoint = Checkpoint(
        session_id="full", epoch=1, expected_version=1, context_json='{"v":1}',
        plan_json='{"p":2}', set_plan=True, phase="p", step=4, now=now + timedelta(seconds=1),
        expires_at=now + timedelta(days=2), first_seq=0, new_messages=rows,
    )  # fmt: skip
    assert db.store.checkpoint(checkpoint) == 2
    later = now + timedelta(seconds=2)
    db.store.transition("other", 1, 1, ("active",), "suspended", "suspend", later, None, True)
