"""The store's session reads: a whole session, its state, summaries and listings.

On SQLite each read runs on the :class:`SqliteReader` (prebuilt SQL on plain ``sqlite3``
connections) in a worker thread; on PostgreSQL it goes through the async reader engine.
Both return the same records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Row, select

from persistence import _json
from persistence._codec import decode_rows
from persistence._reader import SqliteReader
from persistence._records import MessageRow, SessionDocument, SessionSummary, StateRecord
from persistence._store_base import StoreBase
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

T = TypeVar("T")


class SessionReads(StoreBase):
    """Reads of sessions, their state and their history."""

    @property
    def sync_reader(self) -> SqliteReader | None:
        """The calling-thread reader of the hot reads (SQLite), else ``None``."""
        return self._engines.sync_reader

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a :class:`SqliteReader` read on a worker thread, not on the store's loop."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def load(self, session_id: str) -> SessionDocument | None:
        """The whole session with its history, or ``None`` if it does not exist."""
        if self._engines.sync_reader is not None:
            return await self._off_loop(self._engines.sync_reader.load, session_id)

        def fn(connection: Connection) -> SessionDocument | None:
            with connection.begin():
                head = (
                    connection.execute(
                        select(*STATE_COLUMNS, *LOAD_SESSION_COLUMNS)
                        .select_from(states.join(sessions, sessions.c.id == states.c.session_id))
                        .where(states.c.session_id == session_id)
                    )
                ).first()
                if head is None:
                    return None
                rows = connection.execute(
                    select(*MESSAGE_COLUMNS)
                    .where(messages.c.session_id == session_id)
                    .order_by(messages.c.seq)
                )
                history = decode_rows(cast("Iterable[MessageRow]", rows))
            return SessionDocument(
                session_id=session_id,
                user_id=head[15],
                name=head[16],
                config=_json.decode(head[17]) or {},
                created_at=head[18],
                last_active_at=head[19],
                state=state_record(head),
                history=history,
            )

        return await self._read(fn)

    async def state(self, session_id: str) -> StateRecord | None:
        """The state row of a session, without its history."""
        if self._engines.sync_reader is not None:
            return await self._off_loop(self._engines.sync_reader.state, session_id)

        def fn(connection: Connection) -> StateRecord | None:
            row = (
                connection.execute(select(*STATE_COLUMNS).where(states.c.session_id == session_id))
            ).first()
            return None if row is None else state_record(row)

        return await self._read(fn)

    def _summary_query(self) -> Any:
        return select(*SUMMARY_COLUMNS).select_from(
            sessions.outerjoin(states, sessions.c.id == states.c.session_id)
        )

    @staticmethod
    def _summary(row: Row[Any]) -> SessionSummary:
        values = list(row)
        values[3] = _json.decode(values[3]) or {}
        return SessionSummary(*values)

    async def session_info(self, session_id: str) -> SessionSummary | None:
        """A session's summary, whatever its status."""
        if self._engines.sync_reader is not None:
            return await self._off_loop(self._engines.sync_reader.session_info, session_id)

        def fn(connection: Connection) -> SessionSummary | None:
            row = (
                connection.execute(self._summary_query().where(sessions.c.id == session_id))
            ).first()
            return None if row is None else self._summary(row)

        return await self._read(fn)

    async def list_sessions(
        self,
        user_id: str | None,
        status: str | None,
        mode: str | None,
        limit: int,
        *,
        newest_by: str = "updated_at",
    ) -> list[SessionSummary]:
        """Sessions matching the filters, most recently updated (or created) first."""
        if self._engines.sync_reader is not None:
            reader = self._engines.sync_reader
            args = (user_id, status, mode, limit, newest_by)
            return await self._off_loop(reader.list_sessions, *args)

        def fn(connection: Connection) -> list[SessionSummary]:
            query = self._summary_query()
            if user_id is not None:
                query = query.where(sessions.c.user_id == user_id)
            if status is not None:
                query = query.where(states.c.status == status)
            if mode is not None:
                query = query.where(states.c.mode == mode)
            newest = sessions.c.created_at if newest_by == "created_at" else states.c.updated_at
            query = query.order_by(newest.desc(), sessions.c.id).limit(limit)
            return [self._summary(row) for row in connection.execute(query)]

        return await self._read(fn)
