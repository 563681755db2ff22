"""The store's operators' tools: history, purge, overview, export and import, schema.

Thin: each runs one function of :mod:`persistence._admin`, of :mod:`persistence._transfer`
(export and import) or of the migrations as a read on the reader engine or as one write
through the group-commit writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from persistence import _admin, _transfer
from persistence._migrate import current_revision, upgrade_op
from persistence._store_base import StoreBase


class OperatorOps(StoreBase):
    """Operations for operators and the command line, not for running sessions."""

    async def history(
        self, session_id: str, tail: int | None = None
    ) -> list[tuple[int, dict[str, Any]]] | None:
        """The last ``tail`` messages (all if ``None``) as ``(seq, message)``, oldest first.

        Returns ``None`` when the session does not exist.
        """
        return await self._read(_admin.history_fn(session_id, tail))

    async def count_purgeable(
        self, statuses: Sequence[str], cutoff: datetime, now: datetime
    ) -> int:
        """How many sessions :meth:`purge` would delete."""
        return await self._read(_admin.count_purgeable_fn(statuses, cutoff, now))

    async def purge(
        self, statuses: Sequence[str], cutoff: datetime, now: datetime, limit: int
    ) -> list[str]:
        """Delete at most ``limit`` unowned sessions in ``statuses`` not updated since ``cutoff``.

        One transaction per call: interrupting a purge between calls (or during one)
        leaves whole sessions or none. Returns the ids deleted.
        """
        return await self._writer.submit(_admin.purge_op(statuses, cutoff, now, limit))

    async def overview(self, now: datetime) -> _admin.StoreOverview:
        """Counts by status and mode, database size, oldest active, pending approvals."""
        return await self._read(_admin.overview_fn(now))

    async def export_session(self, session_id: str) -> dict[str, Any] | None:
        """A session with its history and approvals as a JSON-ready document, or ``None``."""
        return await self._read(_transfer.export_fn(session_id))

    async def import_session(self, document: Any, now: datetime, *, replace: bool = False) -> str:
        """Write a document of :meth:`export_session` (validated first); return its id.

        Raises:
            InvalidArgument: not a valid export; nothing was written.
            SessionExists: the session exists and ``replace`` is false.
            SessionOwnedElsewhere: ``replace`` of a session a live owner holds.
        """
        return await self._writer.submit(_transfer.import_op(document, now, replace=replace))

    async def schema_revision(self) -> str | None:
        """The alembic revision the database is at (``None``: no schema yet)."""
        return await self._read(current_revision)

    async def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to ``revision`` (one transaction, see :func:`upgrade_op`)."""
        await self._writer.submit(upgrade_op(revision))
