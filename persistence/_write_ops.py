"""What the group-commit writer runs: write operations, their outcomes, its counters.

An operation is either a :class:`HotOp` (a generator on compiled statements, see
:class:`persistence._backend.Tx`) or a plain callable on a SQLAlchemy connection (Core;
cold paths such as migrations and imports). Within a batch each one's domain error becomes
its own outcome; anything else fails the whole batch (see :mod:`persistence._writer`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from persistence._ack import Ack
from persistence._backend import Tx
from persistence._errors import OutcomeUnknown, SessionSupervisorError, StoreUnavailable

T = TypeVar("T")
#: A hot operation's body: it sends statements, yields where it needs their results
#: (a pipeline sync point), and returns its value.
Phases = Generator[None, None, T]
Outcome = tuple[bool, Any]


@dataclass(frozen=True, slots=True)
class HotOp(Generic[T]):
    """A write on compiled statements, run on the driver's connection.

    ``run`` is called once per attempt of its batch; each ``yield`` of the generator it
    returns marks where it reads the results of the statements it sent. On PostgreSQL
    the writer sends every operation's statements up to its next ``yield`` in one round
    trip; on SQLite statements run at once and the yields change nothing.
    """

    run: Callable[[Tx], Phases[T]]
    #: One statement on a backend with ``Backend.one_statement_appends``: alone in its
    #: batch it runs in autocommit, without BEGIN and COMMIT.
    autocommit: bool = False
    #: After the connection was lost once its COMMIT was sent: the operation's result if
    #: it committed; raises :class:`NotCommitted` if it did not (then it may run again).
    recover: Callable[[Tx], T] | None = None


class NotCommitted(Exception):
    """A write whose connection was lost did not commit: it may simply run again."""


WriteOp = HotOp[Any] | Callable[[Connection], Any]
Item = tuple[WriteOp, Ack[Any]]

#: Runs of one batch the database rolled back whole (a deadlock victim) before it fails.
ATTEMPTS = 3

#: Seconds a caller whose write already started waits past its own timeout for the
#: outcome. The writer bounds its lock waits by the earliest timeout of its batch (see
#: ``Backend.bound_lock_wait``), so a started write normally ends well within this.
STARTED_GRACE = 2.0


@dataclass
class WriterStats:
    """Counters of the writer since it started."""

    batches: int = 0
    operations: int = 0
    failed_batches: int = 0
    retried_batches: int = 0
    largest_batch: int = 0
    #: Batches whose connection was lost during COMMIT, then read back.
    recovered_batches: int = 0
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


def run_phased(tx: Tx, ops: list[HotOp[Any]], sync: Callable[[], None]) -> list[Outcome]:
    """Run hot operations phase by phase: one ``sync`` per phase for the whole batch.

    Any other error is raised as it is: in a pipeline, an operation reading its results
    after a failed sync raises the error of whichever operation failed, so no error here
    names its operation (the writer runs the batch again one by one to find it).
    """
    outcomes: list[Outcome] = [(False, None)] * len(ops)
    running = [(index, op.run(tx)) for index, op in enumerate(ops)]
    while running:
        waiting = []
        for index, phases in running:
            try:
                next(phases)
            except StopIteration as done:
                outcomes[index] = (True, done.value)
            except SessionSupervisorError as error:
                outcomes[index] = (False, error)
            else:
                waiting.append((index, phases))
        if waiting:
            sync()
        running = waiting
    return outcomes


def run_hot(tx: Tx, op: HotOp[T]) -> T:
    """Run one hot operation to its end (statements run at once)."""
    phases = op.run(tx)
    while True:
        try:
            next(phases)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


class OpFailed(Exception):
    """An operation of a batch raised something other than its domain error.

    Carries its position in the batch, so the writer can refuse that operation alone and
    run the rest again (see :meth:`GroupCommitWriter._commit_locked`); ``error`` is what
    it raised.
    """

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


def run_mixed(tx: Tx, connection: Connection, ops: list[WriteOp]) -> list[Outcome]:
    """Run operations one after the other in the connection's open transaction.

    Raises:
        OpFailed: an operation raised an error that is not its domain error.
    """
    outcomes: list[Outcome] = []
    for index, op in enumerate(ops):
        try:
            value = run_hot(tx, op) if isinstance(op, HotOp) else op(connection)
            outcomes.append((True, value))
        except SessionSupervisorError as error:
            outcomes.append((False, error))
        except Exception as exc:
            raise OpFailed(index, exc) from exc
    return outcomes


def settle(batch: list[Item], outcomes: list[Outcome]) -> None:
    """Acknowledge (or fail) each operation of a finished transaction."""
    for (_, ack), (ok, value) in zip(batch, outcomes, strict=True):
        if ok:
            ack.set_result(value)
        else:
            ack.set_exception(value)


def wait_for_ack(ack: Ack[T], timeout: float, grace: float = STARTED_GRACE) -> T:
    """The outcome of a queued write, waiting ``timeout`` seconds (and ``grace`` if started).

    The timeout rule: a write still queued when its caller gives up is withdrawn (it will
    never run); a write already running is waited for, up to ``grace`` more seconds, so
    that a refusal always means that nothing changed.

    Raises:
        StoreUnavailable: no outcome in time, and the write was withdrawn: nothing changed.
        OutcomeUnknown: the write started and gave no outcome within the grace either.
    """
    if ack.wait(timeout):
        return ack.outcome()
    if ack.cancel():  # still queued: withdrawn, it will never run
        raise StoreUnavailable("the session store did not answer in time; nothing was written")
    if ack.wait(grace):
        return ack.outcome()
    raise OutcomeUnknown(
        f"the session store did not answer in time (a write that had started did not end"
        f" within {timeout:g}s + {grace:g}s); it may have committed"
    )


def refusal(exc: BaseException) -> StoreUnavailable:
    """The error of every operation of a batch the database refused."""
    error = StoreUnavailable(f"the database refused the write: {exc}")
    error.__cause__ = exc
    return error


def outcome_unknown(exc: BaseException) -> OutcomeUnknown:
    """The error of an operation whose transaction may or may not have committed."""
    error = OutcomeUnknown(
        f"the connection was lost while committing and it could not be read back whether"
        f" the write committed: {exc}"
    )
    error.__cause__ = exc
    return error
