"""The registry of live connections: tasks connected to a session, by instance.

Each connection's heartbeat keeps it listed; the store's sweep drops the ones whose
heartbeat stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from persistence._errors import SessionNotFound
from persistence._tables import connections, sessions


def register_connection(
    task_id: str, session_id: str | None, instance: str, now: datetime
) -> Callable[[Connection], None]:
    """Record (or refresh) a live connection of a task."""

    def op(connection: Connection) -> None:
        if session_id is not None:
            found = (
                connection.execute(select(sessions.c.id).where(sessions.c.id == session_id))
            ).first()
            if found is None:
                raise SessionNotFound(session_id)
        result = connection.execute(
            update(connections)
            .where(connections.c.task_id == task_id)
            .values(session_id=session_id, server_instance=instance, last_heartbeat=now)
        )
        if result.rowcount == 0:
            connection.execute(
                insert(connections).values(
                    task_id=task_id,
                    session_id=session_id,
                    server_instance=instance,
                    connected_at=now,
                    last_heartbeat=now,
                )
            )

    return op


def heartbeat(task_id: str, now: datetime) -> Callable[[Connection], bool]:
    """Refresh a connection's heartbeat; ``False`` if it is unknown (or was reaped)."""

    def op(connection: Connection) -> bool:
        result = connection.execute(
            update(connections).where(connections.c.task_id == task_id).values(last_heartbeat=now)
        )
        return bool(result.rowcount)

    return op


def unregister_connection(task_id: str) -> Callable[[Connection], bool]:
    """Forget a connection; ``False`` if it was unknown."""

    def op(connection: Connection) -> bool:
        result = connection.execute(delete(connections).where(connections.c.task_id == task_id))
        return bool(result.rowcount)

    return op


def connections_of(
    session_ids: Iterable[str] | None = None,
) -> Callable[[Connection], list[dict[str, Any]]]:
    """Live connections (of the given sessions, or all)."""

    def fn(connection: Connection) -> list[dict[str, Any]]:
        query = select(connections).order_by(connections.c.connected_at)
        if session_ids is not None:
            query = query.where(connections.c.session_id.in_(list(session_ids)))
        return [dict(row._mapping) for row in connection.execute(query)]

    return fn
