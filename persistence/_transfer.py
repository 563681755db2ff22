"""Export and import of one session as a JSON document (its validation: :mod:`._import`).

An export is what ``sessions export`` writes and ``sessions import`` reads back, possibly
into another database; the import checks the whole document before writing anything, so
a bad file is refused with the JSON path of the first problem and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from persistence import _json
from persistence._admin import delete_rows
from persistence._codec import decode_message
from persistence._errors import InvalidArgument, SessionExists, SessionOwnedElsewhere
from persistence._import import EXPORT_FORMAT, EXPORT_FORMAT_VERSION, read_document
from persistence._migrate import current_revision
from persistence._tables import MESSAGE_COLUMNS, approvals, messages, sessions, states

# ---------------------------------------------------------------------- export


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def export_fn(session_id: str) -> Callable[[Connection], dict[str, Any] | None]:
    """The whole session as a JSON-ready document (``None`` if it does not exist).

    The lease (owner, lease expiry) and live connections are not exported: they belong
    to the processes running the session, not to the session.
    """

    def fn(connection: Connection) -> dict[str, Any] | None:
        with connection.begin():
            row = connection.execute(select(sessions).where(sessions.c.id == session_id)).first()
            if row is None:
                return None
            state = connection.execute(
                select(states).where(states.c.session_id == session_id)
            ).first()
            history = [
                decode_message(tuple(message))
                for message in connection.execute(
                    select(*MESSAGE_COLUMNS)
                    .where(messages.c.session_id == session_id)
                    .order_by(messages.c.seq)
                )
            ]
            requests = list(
                connection.execute(
                    select(approvals)
                    .where(approvals.c.session_id == session_id)
                    .order_by(approvals.c.created_at, approvals.c.id)
                )
            )
            revision = current_revision(connection)
        s = row._mapping
        document: dict[str, Any] = {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION,
            "schema_revision": revision,
            "session": {
                "id": s["id"],
                "user_id": s["user_id"],
                "name": s["name"],
                "status": s["status"],
                "created_at": _iso(s["created_at"]),
                "last_active_at": _iso(s["last_active_at"]),
                "meta": _json.decode(s["meta"]),
                "resource_limits": _json.decode(s["resource_limits"]),
            },
            "state": None,
            "messages": history,
            "approvals": [
                {
                    "id": a["id"],
                    "approval_type": a["approval_type"],
                    "context": _json.decode(a["context"]),
                    "status": a["status"],
                    "resolution": a["resolution"],
                    "result": _json.decode(a["result"]),
                    "created_at": _iso(a["created_at"]),
                    "expires_at": _iso(a["expires_at"]),
                    "resolved_at": _iso(a["resolved_at"]),
                }
                for a in (request._mapping for request in requests)
            ],
        }
        if state is not None:
            t = state._mapping
            document["state"] = {
                "mode": t["mode"],
                "status": t["status"],
                "current_phase": t["current_phase"],
                "current_step": t["current_step"],
                "context_variables": _json.decode(t["context_variables"]),
                "plan_data": _json.decode(t["plan_data"]),
                "created_at": _iso(t["created_at"]),
                "updated_at": _iso(t["updated_at"]),
                "expires_at": _iso(t["expires_at"]),
                "version": t["version"],
                "epoch": t["epoch"],
                "message_count": t["message_count"],
            }
        return document

    return fn


# ---------------------------------------------------------------------- import


def import_op(
    document: Any, now: datetime, *, replace: bool = False, new_id: str | None = None
) -> Callable[[Connection], str]:
    """Write a document made by :func:`export_fn`; the operation returns the session id.

    The whole document is validated (:func:`persistence._import.read_document`) before
    anything is written, and written in one transaction. ``new_id`` imports a copy under
    that id, its approval requests under new ids.

    Raises:
        InvalidArgument: the document is not a valid export (the message names the path).
        SessionExists: the session exists and ``replace`` is false.
        SessionOwnedElsewhere: ``replace`` of a session a live owner holds.
    """
    rows = read_document(document, new_id=new_id)
    session_id = rows.session_id

    def op(connection: Connection) -> str:
        found = connection.execute(
            select(sessions.c.id, states.c.owner, states.c.lease_expires_at)
            .select_from(sessions.outerjoin(states, sessions.c.id == states.c.session_id))
            .where(sessions.c.id == session_id)
        ).first()
        if found is not None:
            if not replace:
                raise SessionExists(session_id)
            _, owner, lease_until = found
            if owner is not None and lease_until is not None and lease_until >= now:
                raise SessionOwnedElsewhere(session_id, owner)
        taken = [r["id"] for r in rows.approvals]
        if taken:
            clash = connection.execute(
                select(approvals.c.id).where(
                    approvals.c.id.in_(taken), approvals.c.session_id != session_id
                )
            ).first()
            if clash is not None:
                raise InvalidArgument(
                    f"approval request {clash[0]!r} already exists in another session"
                )
        if found is not None:
            delete_rows(connection, [session_id])
        connection.execute(insert(sessions).values(**rows.session))
        connection.execute(insert(states).values(**rows.state))
        if rows.messages:
            connection.execute(insert(messages), rows.messages)
        if rows.approvals:
            connection.execute(insert(approvals), rows.approvals)
        return session_id

    return op


__all__ = ["EXPORT_FORMAT", "export_fn", "import_op"]
