"""What every part of :class:`persistence.Store` shares: its engines, its writer, its reads.

:class:`Store` is assembled from one mixin per kind of operation (session reads, approvals,
connections, operators' tools) on top of :class:`StoreBase`, so each part is typed against
the same engines and writer and runs its reads the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection

from persistence._engine import Engines
from persistence._errors import StoreUnavailable
from persistence._writer import GroupCommitWriter

T = TypeVar("T")


class StoreBase:
    """The engines and writer of one database, and how the store reads from it."""

    def __init__(self, engines: Engines, writer: GroupCommitWriter) -> None:
        self._engines = engines
        self._writer = writer

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engines.dialect

    @property
    def writer(self) -> GroupCommitWriter:
        """The group-commit writer (for its stats)."""
        return self._writer

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        try:
            async with self._engines.reader.connect() as connection:
                return await connection.run_sync(fn)
        except StoreUnavailable:
            raise
        except Exception as exc:
            if isinstance(exc, LookupError | ValueError | TypeError):
                raise
            raise StoreUnavailable(f"the database could not be read: {exc}") from exc
