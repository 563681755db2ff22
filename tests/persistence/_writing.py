"""Helpers that drive the group-commit writer from plain threads, deterministically.

``writer.call`` blocks its caller until the operation committed, so each queued write runs
on a helper thread of its own and its outcome comes back as a future. To put several
writes into one transaction, a gate operation holds the writer's transaction open while
the others queue behind it; ``writer.pending`` then counts them exactly.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from persistence import Checkpoint, Database, NewSession, StoreUnavailable, encode_message
from persistence._backend import Driver, Tx
from persistence._write_ops import HotOp, Phases, WriteOp
from persistence._writer import GroupCommitWriter

WAIT = 10.0
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def submit(
    writer: GroupCommitWriter, op: WriteOp, on_ack: Callable[[], None] | None = None
) -> concurrent.futures.Future[Any]:
    """Run ``writer.call(op, WAIT)`` on a thread of its own; its outcome as a future.

    ``on_ack`` runs in that thread as soon as the call returned (before the future is
    resolved), so that what it records is ordered with the writer's own events.
    """
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        try:
            value = writer.call(op, WAIT)
        except BaseException as exc:  # noqa: BLE001 - handed to the future
            future.set_exception(exc)
            return
        if on_ack is not None:
            on_ack()
        future.set_result(value)

    threading.Thread(target=run, name="test-caller", daemon=True).start()
    return future


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` until it holds (at most ``WAIT`` seconds)."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.001)


def wait_for_pending(writer: GroupCommitWriter, count: int) -> None:
    """Wait until exactly ``count`` writes are queued (see :func:`hold_writer`)."""
    wait_until(lambda: writer.pending == count, f"{count} queued writes (not {writer.pending})")


class Gate:
    """A Core operation that holds its transaction open until released.

    It keeps the driver's connection it ran on (``driver``) and its thread.
    """

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.driver: Driver = None
        self.thread: threading.Thread | None = None

    def __call__(self, connection: Connection) -> str:
        self.driver = connection.connection.driver_connection
        self.thread = threading.current_thread()
        self.entered.set()
        assert self.release.wait(WAIT)
        return "gate"


class HotGate:
    """A hot operation that holds its batch open after ``phases`` pipeline syncs.

    Everything the batch's other operations did in earlier phases has reached the
    database by the time it blocks (their statements were synced).
    """

    def __init__(self, phases: int = 10) -> None:
        self.phases = phases
        self.entered = threading.Event()
        self.release = threading.Event()
        self.op = HotOp(self._run)

    def _run(self, tx: Tx) -> Phases[str]:
        for _ in range(self.phases):
            yield
        self.entered.set()
        assert self.release.wait(WAIT)
        return "hot gate"


def _noop(_connection: Connection) -> None:
    """A write that changes nothing."""


def hold_writer(writer: GroupCommitWriter) -> tuple[Gate, concurrent.futures.Future[Any]]:
    """Occupy the writer with a :class:`Gate`; return once its transaction is running.

    From then on every call queues, and ``writer.pending`` counts exactly the calls
    queued: the gate runs inline in a helper thread (the writer was idle), so the writer
    thread is first parked on an abandoned write (a call that gave up at once, dropped
    when the next batch begins) and waits for the connection with it in hand.
    """
    gate = Gate()
    held = submit(writer, gate)
    assert gate.entered.wait(WAIT)
    if gate.thread is not writer._thread:
        with pytest.raises(StoreUnavailable, match="in time"):
            writer.call(_noop, 0.0)
        wait_for_pending(writer, 0)
    return gate, held


def queue_in_order(
    writer: GroupCommitWriter, ops: list[WriteOp]
) -> list[concurrent.futures.Future[Any]]:
    """Queue ``ops`` behind a held writer, one after the other, in this order."""
    futures = []
    for count, op in enumerate(ops, start=1):
        futures.append(submit(writer, op))
        wait_for_pending(writer, count)
    return futures


def pg_dsn(pg_url: str) -> str:
    """The libpq connection string of a test database's URL (for a raw psycopg connection)."""
    return make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)


def create(db: Database, session_id: str, owner: str | None = "me") -> None:
    """Create an active session (leased by ``owner`` for five minutes, if given)."""
    lease = NOW + timedelta(minutes=5) if owner is not None else None
    new = NewSession(session_id, None, session_id, "copilot", "{}", NOW, NOW + timedelta(days=1),
                     owner, lease)  # fmt: skip
    db.store.create_session(new)


def checkpoint(session_id: str, version: int, first: int, count: int, epoch: int = 1) -> Checkpoint:
    """Append ``count`` messages from ``first`` on, expecting ``version``."""
    rows = [
        encode_message({"role": "user", "content": f"{session_id} {seq}"}, "m", None)
        for seq in range(first, first + count)
    ]
    return Checkpoint(
        session_id=session_id, epoch=epoch, expected_version=version, context_json='{"v":1}',
        plan_json=None, set_plan=False, phase="p", step=version, now=NOW,
        expires_at=NOW + timedelta(days=1), first_seq=first, new_messages=rows,
    )  # fmt: skip


def version_of(db: Database, session_id: str) -> int:
    """The stored version of a session."""
    state = db.store.state(session_id)
    assert state is not None
    return state.version


def messages_of(db: Database, session_id: str) -> int:
    """How many messages a session has stored."""
    history = db.store.history(session_id)
    assert history is not None
    return len(history)


def broken_hot_op() -> HotOp[None]:
    """A hot operation the database refuses (a driver error, not a domain error)."""

    def run(tx: Tx) -> Phases[None]:
        tx.driver.execute("INSERT INTO no_such_table VALUES (1)")
        yield

    return HotOp(run)
