"""What differs between the databases, behind one interface: :class:`Backend`.

The store, its writer and its reads are written once against this class; each database
supplies one subclass in its own subpackage (``persistence.sqlite``,
``persistence.postgres``): its SQLAlchemy dialect and engines, how its driver opens a
connection, begins and commits a transaction, pipelines statements, and binds and reads
datetimes. :class:`Tx` is what a hot operation of the writer sees of a transaction.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Connection, Dialect, Engine

from persistence._sql import Statement

#: The ``application_name`` of PostgreSQL connections when the host names none.
DEFAULT_APPLICATION_NAME = "session-supervisor"

#: A driver's connection (``sqlite3.Connection`` or ``psycopg.Connection``) and cursor.
Driver = Any
Cursor = Any


class Backend(ABC):
    """One database: its engines, its driver's transactions and its value conversions.

    Attributes:
        name: the dialect's name, ``sqlite`` or ``postgresql``.
        dialect: the SQLAlchemy dialect statements are compiled for.
        write_engine: the engine of the writer's one connection (cold writes run Core on it).
        read_engine: the engine of the cold reads (Core), a small pool.
        url: the database's URL with the password hidden, for messages.
        driver_errors: the driver's own error classes (a failed read or write).
    """

    name: ClassVar[str]
    #: Whether the driver can send a batch's statements without waiting for each result.
    pipelines: ClassVar[bool] = False
    #: The one-statement form of an appending checkpoint, if the database has one: alone
    #: in its batch, such a checkpoint runs as its own transaction.
    append_statement: ClassVar[Statement | None] = None
    #: The same for a sliding window's checkpoint (oldest messages dropped, new appended);
    #: only on a backend that has ``append_statement``.
    slide_statement: ClassVar[Statement | None] = None
    driver_errors: ClassVar[tuple[type[BaseException], ...]]

    def __init__(
        self, dialect: Dialect, write_engine: Engine, read_engine: Engine, url: str
    ) -> None:
        self.dialect = dialect
        self.write_engine = write_engine
        self.read_engine = read_engine
        self.url = url

    # ------------------------------------------------------------------ connections

    @abstractmethod
    def connect_reader(self) -> Driver:
        """A new connection for the hot reads (read only where the database allows)."""

    @abstractmethod
    def begin_read(self, driver: Driver, *, snapshot: bool) -> None:
        """Start a read (``snapshot``: several statements that must agree)."""

    @abstractmethod
    def end_read(self, driver: Driver, *, snapshot: bool) -> None:
        """End the read started by :meth:`begin_read`."""

    def writer_opened(self, driver: Driver) -> None:  # noqa: B027 - optional hook
        """Set up the writer's connection once it is opened (default: nothing)."""

    # ------------------------------------------------------------------ transactions

    @abstractmethod
    def begin(self, driver: Driver) -> None:
        """Begin a write transaction on the driver's connection."""

    @abstractmethod
    def commit(self, driver: Driver) -> None:
        """Commit it."""

    @abstractmethod
    def rollback(self, driver: Driver) -> None:
        """Roll it back (the connection may be broken: best effort)."""

    @contextlib.contextmanager
    def pipeline(self, driver: Driver) -> Iterator[Callable[[], None]]:
        """Queue statements until the yielded ``sync`` (default: none, run at once)."""
        yield _no_sync

    @contextlib.contextmanager
    def autocommit(self, driver: Driver) -> Iterator[None]:
        """Run one statement as its own transaction (only with ``append_statement``)."""
        yield

    def retryable(self, error: BaseException) -> bool:
        """Whether a failed transaction was rolled back whole and may simply run again."""
        return False

    def connection_lost(self, error: BaseException) -> bool:
        """Whether ``error`` means the connection to the server is gone (default: never)."""
        return False

    def alive(self, driver: Driver) -> bool:
        """Whether an idle connection still reaches the server (default: always)."""
        return True

    #: Errors of one operation's own values, not of the database: that operation fails
    #: alone and the rest of its batch runs again (a value the driver cannot encode, a
    #: constraint). Anything else (a lock, the disk, the server, the schema) fails a batch.
    data_errors: ClassVar[tuple[type[BaseException], ...]] = (ValueError, TypeError, OverflowError)

    def data_fault(self, error: BaseException) -> bool:
        """Whether ``error`` was caused by one operation's values (see :attr:`data_errors`)."""
        return isinstance(getattr(error, "orig", error), self.data_errors)

    #: The longest lock wait the writer may set (ms); ``None``: no limit of the backend's.
    lock_wait_cap_ms: int | None = None

    def set_lock_wait(self, driver: Driver, milliseconds: int) -> None:  # noqa: B027 - optional
        """Wait at most ``milliseconds`` for another transaction's lock (default: no bound)."""

    def executemany(self, driver: Driver, text: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run ``text`` once per row of parameters."""
        driver.executemany(text, rows)

    # ------------------------------------------------------------------ values

    @abstractmethod
    def bind_time(self, value: datetime) -> Any:
        """An aware datetime as this driver binds it into a ``UTCDateTime`` column."""

    @abstractmethod
    def load_time(self, value: Any) -> datetime | None:
        """A ``UTCDateTime`` column's value as read by this driver, as an aware UTC datetime."""

    # ------------------------------------------------------------------ lifecycle

    def committed(self, operations: int) -> None:  # noqa: B027 - optional hook
        """Count operations the writer committed (background work may follow)."""

    def start(self) -> None:  # noqa: B027 - optional hook
        """Start background work (default: none)."""

    def close(self) -> None:
        """Stop background work and dispose of the engines."""
        self.write_engine.dispose()
        self.read_engine.dispose()


def _no_sync() -> None:
    """Nothing is queued when statements run at once."""


class Tx:
    """A write transaction as a hot operation sees it: compiled statements on the driver."""

    __slots__ = ("autocommit", "backend", "dialect", "driver")

    def __init__(self, backend: Backend, driver: Driver, *, autocommit: bool = False) -> None:
        self.backend = backend
        self.dialect = backend.dialect
        self.driver = driver
        #: The operation runs alone, each statement its own transaction: it must be one
        #: statement (see :attr:`Backend.append_statement`).
        self.autocommit = autocommit

    def execute(self, statement: Statement, params: Mapping[str, Any]) -> Cursor:
        """Run ``statement``; its cursor (rows, ``rowcount``) once the pipeline synced."""
        compiled = statement.compiled(self.dialect)
        return self.driver.execute(compiled.text, compiled.bind(params))

    def executemany(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run ``statement`` once per row of parameters."""
        compiled = statement.compiled(self.dialect)
        self.backend.executemany(self.driver, compiled.text, [compiled.bind(r) for r in rows])

    def time(self, value: datetime) -> Any:
        """``value`` bound for a ``UTCDateTime`` column."""
        return self.backend.bind_time(value)

    def optional_time(self, value: datetime | None) -> Any:
        """:meth:`time`, or ``None``."""
        return None if value is None else self.backend.bind_time(value)


def core_connection_driver(connection: Connection) -> Driver:
    """The driver's connection under a SQLAlchemy connection."""
    return connection.connection.driver_connection
