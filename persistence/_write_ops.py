"""What the group-commit writer runs: write operations, their outcomes, its counters.

An operation is a callable on a SQLAlchemy connection (or a :class:`DualOp`, which can also
run on the bare ``sqlite3`` connection). Within a batch each one's domain error becomes its
own outcome; anything else fails the whole batch (see :mod:`persistence._writer`).
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection

from persistence._ack import Ack
from persistence._errors import SessionSupervisorError, StoreUnavailable

T = TypeVar("T")
WriteOp = Callable[[Connection], Any]
Outcome = tuple[bool, Any]
Item = tuple[WriteOp, "concurrent.futures.Future[Any] | Ack[Any]"]


#: deadlock_detected, serialization_failure: raised before COMMIT succeeded, whole batch undone.
RETRY_SQLSTATES = frozenset({"40P01", "40001"})
#: Runs of one PostgreSQL batch before its operations are refused.
PG_ATTEMPTS = 3


@dataclass
class WriterStats:
    """Counters of the writer since it started."""

    batches: int = 0
    operations: int = 0
    failed_batches: int = 0
    retried_batches: int = 0
    largest_batch: int = 0
    commit_seconds: list[float] = field(default_factory=list)

    def committed(self, size: int, seconds: float) -> None:
        """Count one committed batch of ``size`` operations."""
        self.batches += 1
        self.operations += size
        self.largest_batch = max(self.largest_batch, size)
        timings = self.commit_seconds
        timings.append(seconds)
        if len(timings) > 4096:
            del timings[:2048]


@dataclass(frozen=True, slots=True)
class DualOp:
    """A write that can also run on the writer's bare ``sqlite3`` connection.

    Calling it runs ``core`` (any dialect, through SQLAlchemy). On SQLite, a batch made
    only of these runs ``sqlite`` instead, in a transaction the writer opens and commits on
    the ``sqlite3`` connection itself: SQLAlchemy's transaction and event machinery cost
    more than a checkpoint's statements. Both must do the same thing.
    """

    core: WriteOp
    sqlite: Callable[[sqlite3.Connection], Any]

    def __call__(self, connection: Connection) -> Any:
        """Run the SQLAlchemy version."""
        return self.core(connection)


def apply_sqlite(connection: sqlite3.Connection, ops: list[DualOp]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for op in ops:
        try:
            outcomes.append((True, op.sqlite(connection)))
        except SessionSupervisorError as error:
            outcomes.append((False, error))
    return outcomes


def apply_ops(connection: Connection, ops: list[WriteOp]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for op in ops:
        try:
            outcomes.append((True, op(connection)))
        except SessionSupervisorError as error:
            outcomes.append((False, error))
    return outcomes


def settle(batch: list[Item], outcomes: list[Outcome]) -> None:
    """Acknowledge (or fail) each operation of a finished transaction."""
    for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def wait_for(future: concurrent.futures.Future[T], timeout: float) -> T:
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()  # dropped if its transaction has not started yet
        raise StoreUnavailable("the session store did not answer in time") from None


def wait_for_ack(ack: Ack[T], timeout: float) -> T:
    """:func:`wait_for` for an :class:`Ack`."""
    if ack.wait(timeout):
        return ack.outcome()
    ack.cancel()  # dropped if its transaction has not started yet
    raise StoreUnavailable("the session store did not answer in time")


def rolled_back_for_a_retry(exc: BaseException) -> bool:
    """Whether ``exc`` is a PostgreSQL deadlock or serialization failure.

    The server then rolled the whole transaction back (nothing of it committed), so
    running the batch again is safe.
    """
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in RETRY_SQLSTATES


def refusal(exc: BaseException) -> StoreUnavailable:
    error = StoreUnavailable(f"the database refused the write: {exc}")
    error.__cause__ = exc
    return error
