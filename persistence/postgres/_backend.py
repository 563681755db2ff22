"""PostgreSQL through psycopg 3: prepared statements, pipelined group commits.

Every connection of the store (the writer's, the readers', the cold reads' pool) carries
the same settings: the instance's ``application_name`` (so an operator sees which process
holds what in ``pg_stat_activity``), UTC as its time zone, and an idle-in-transaction
timeout. Statements are prepared on first use, unless ``prepared_statements`` is off: a
connection pooler in transaction mode (PgBouncer) hands each transaction to any server
connection, where a statement prepared on another one does not exist.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import psycopg
from sqlalchemy import create_engine
from sqlalchemy.engine import URL

from persistence._backend import DEFAULT_APPLICATION_NAME, Backend
from persistence._sql import Statement
from persistence.postgres._statements import CHECKPOINT_APPEND, CHECKPOINT_SLIDE

#: A process that is paused (SIGSTOP, a frozen VM) inside one of its transactions keeps
#: that transaction's row locks, which would block a takeover for as long as the pause
#: lasts; the server ends such a transaction after this idle time, so its locks go and
#: the writes it held were never acknowledged. The store's own transactions never idle.
IDLE_IN_TRANSACTION_MS = 5000
#: deadlock_detected, serialization_failure: raised before COMMIT succeeded, whole batch undone.
RETRY_SQLSTATES = frozenset({"40P01", "40001"})
#: admin_shutdown, crash_shutdown, cannot_connect_now: the server ended the connection.
LOST_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


def connection_settings(*, application_name: str, prepared_statements: bool) -> dict[str, Any]:
    """The keyword arguments of every ``psycopg.connect`` the store makes."""
    return {
        "application_name": application_name,
        "options": (
            f"-c TimeZone=UTC -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"
        ),
        # 0: prepare on first use; None: never (PgBouncer in transaction mode).
        "prepare_threshold": 0 if prepared_statements else None,
    }


class PostgresBackend(Backend):
    """A PostgreSQL database."""

    name: ClassVar[str] = "postgresql"
    pipelines: ClassVar[bool] = True
    append_statement: ClassVar[Statement | None] = CHECKPOINT_APPEND
    slide_statement: ClassVar[Statement | None] = CHECKPOINT_SLIDE
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = (psycopg.Error,)
    data_errors: ClassVar[tuple[type[BaseException], ...]] = (
        *Backend.data_errors, psycopg.DataError, psycopg.IntegrityError,
    )  # fmt: skip

    def __init__(
        self,
        url: URL,
        *,
        pool_size: int = 5,
        application_name: str = DEFAULT_APPLICATION_NAME,
        prepared_statements: bool = True,
    ) -> None:
        self.settings = connection_settings(
            application_name=application_name, prepared_statements=prepared_statements
        )
        self.prepared_statements = prepared_statements
        sync_url = url.set(drivername="postgresql+psycopg")
        # A pooled connection the server dropped (restart, failover, a killed backend) is
        # replaced at checkout instead of failing the next write once the server is back.
        common: dict[str, Any] = {"pool_pre_ping": True, "connect_args": dict(self.settings)}
        write_engine = create_engine(sync_url, pool_size=1, max_overflow=0, **common)
        read_engine = create_engine(sync_url, pool_size=pool_size, max_overflow=pool_size, **common)
        super().__init__(
            write_engine.dialect,
            write_engine,
            read_engine,
            url.render_as_string(hide_password=True),
        )
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)

    def connect_reader(self) -> psycopg.Connection[Any]:
        """An autocommit connection: a one-statement read needs no BEGIN nor COMMIT."""
        return psycopg.connect(self._conninfo, autocommit=True, **self.settings)

    def begin_read(self, driver: psycopg.Connection[Any], *, snapshot: bool) -> None:
        """A read of several statements sees one snapshot."""
        if snapshot:
            driver.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def end_read(self, driver: psycopg.Connection[Any], *, snapshot: bool) -> None:
        """End the snapshot."""
        if snapshot:
            driver.execute("COMMIT")

    def writer_opened(self, driver: psycopg.Connection[Any]) -> None:
        """Leave no transaction open (a pool's pre-ping may have begun one)."""
        if driver.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            driver.rollback()

    def begin(self, driver: psycopg.Connection[Any]) -> None:
        """Nothing to send: psycopg begins with the first statement (queued with it)."""

    def commit(self, driver: psycopg.Connection[Any]) -> None:
        """Commit (inside a pipeline: queued, then synced)."""
        driver.commit()

    def rollback(self, driver: psycopg.Connection[Any]) -> None:
        """Roll back; a broken connection is dropped by the writer anyway."""
        with contextlib.suppress(psycopg.Error):
            driver.rollback()

    @contextlib.contextmanager
    def autocommit(self, driver: psycopg.Connection[Any]) -> Iterator[None]:
        """The statement commits by itself: no BEGIN, no COMMIT, one round trip."""
        driver.autocommit = True
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):  # a lost connection is dropped anyway
                driver.autocommit = False

    @contextlib.contextmanager
    def pipeline(self, driver: psycopg.Connection[Any]) -> Iterator[Callable[[], None]]:
        """Send the batch's statements without waiting for each one's result."""
        with driver.pipeline() as pipeline:
            yield pipeline.sync

    def retryable(self, error: BaseException) -> bool:
        """A deadlock victim or a serialization failure: the server undid the whole batch."""
        original = getattr(error, "orig", error)
        return getattr(original, "sqlstate", None) in RETRY_SQLSTATES

    def connection_lost(self, error: BaseException) -> bool:
        """The server closed the connection (a restart, a killed backend, a network cut)."""
        original = getattr(error, "orig", error)
        if not isinstance(original, psycopg.OperationalError):
            return False
        # An error the server reported on a live connection (a lock timeout) has a state
        # of its own; a dropped one has none, or a connection or shutdown state.
        state = getattr(original, "sqlstate", None)
        return state is None or state.startswith("08") or state in LOST_SQLSTATES

    def set_lock_wait(self, driver: psycopg.Connection[Any], milliseconds: int) -> None:
        """``lock_timeout`` of the writer's session, set outside any transaction."""
        with self.autocommit(driver):
            driver.execute(f"SET lock_timeout = {int(milliseconds)}")

    def alive(self, driver: psycopg.Connection[Any]) -> bool:
        """One round trip on a connection that was idle: a server may have dropped it."""
        try:
            driver.execute("SELECT 1")
            # COMMIT, not ROLLBACK: psycopg forgets its prepared statements on a ROLLBACK.
            driver.commit()
        except psycopg.Error:
            return False
        return True

    def executemany(
        self, driver: psycopg.Connection[Any], text: str, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Run ``text`` once per row, each queued in the batch's pipeline if one is open.

        (``executemany`` inside a pipeline waits for its own results: measured, it cost
        more than the rest of a batch of five checkpoints.)
        """
        if driver.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF:
            for row in rows:
                driver.execute(text, row)
            return
        with driver.cursor() as cursor:
            cursor.executemany(text, rows)

    def bind_time(self, value: datetime) -> datetime:
        """An aware datetime as it is (``timestamptz``).

        Raises:
            ValueError: ``value`` is naive (the clock must return aware UTC datetimes).
        """
        if value.tzinfo is None:
            msg = f"naive datetime {value!r}: the clock must return aware UTC datetimes"
            raise ValueError(msg)
        return value

    def load_time(self, value: Any) -> datetime | None:
        """A ``timestamptz`` (the connections' time zone is UTC) as an aware UTC datetime."""
        if value is None or value.tzinfo is UTC:
            return value  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]
