"""Export and import of one session as a JSON document, with the document's validation.

An export is what ``sessions export`` writes and ``sessions import`` reads back, possibly
into another database; the import checks the whole document before writing anything, so
a bad file is refused with the JSON path of the first problem and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from persistence import _json
from persistence._admin import delete_rows
from persistence._codec import decode_message, encode_message
from persistence._errors import InvalidArgument, SessionExists, SessionOwnedElsewhere
from persistence._migrate import current_revision
from persistence._models import APPROVAL_RESOLUTIONS, APPROVAL_STATUSES, SESSION_STATUSES
from persistence._tables import MESSAGE_COLUMNS, approvals, messages, sessions, states

EXPORT_FORMAT = "session-supervisor/session"
EXPORT_FORMAT_VERSION = 1


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


class _Reader:
    """Checked access to an imported document; every error names its JSON path."""

    def __init__(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise InvalidArgument(f"{path} must be a JSON object, not {type(value).__name__}")
        self.value: dict[str, Any] = value
        self.path = path

    def _get(self, key: str) -> Any:
        if key not in self.value:
            raise InvalidArgument(f"{self.path}.{key} is missing")
        return self.value[key]

    def text(
        self,
        key: str,
        *,
        optional: bool = False,
        choices: Sequence[str] = (),
        allow_empty: bool = False,
    ) -> Any:
        value = self._get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or (not value and not allow_empty):
            raise InvalidArgument(f"{self.path}.{key} must be a non-empty string, not {value!r}")
        if choices and value not in choices:
            raise InvalidArgument(
                f"{self.path}.{key} must be one of {list(choices)}, not {value!r}"
            )
        return value

    def integer(self, key: str, *, optional: bool = False, minimum: int | None = None) -> Any:
        value = self._get(key)
        if value is None and optional:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidArgument(f"{self.path}.{key} must be an integer, not {value!r}")
        if minimum is not None and value < minimum:
            raise InvalidArgument(f"{self.path}.{key} must be >= {minimum}, not {value}")
        return value

    def time(self, key: str, *, optional: bool = False) -> datetime | None:
        value = self._get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise InvalidArgument(f"{self.path}.{key} must be an ISO 8601 time, not {value!r}")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidArgument(f"{self.path}.{key} is not an ISO 8601 time: {value!r}") from None
        if parsed.tzinfo is None:
            raise InvalidArgument(f"{self.path}.{key} has no time zone: {value!r}")
        return parsed

    def json(self, key: str, *, optional: bool = True, obj: bool = False) -> str | None:
        value = self._get(key)
        if value is None and optional:
            return None
        if obj and not isinstance(value, dict):
            raise InvalidArgument(f"{self.path}.{key} must be a JSON object, not {value!r}")
        return _json.encode(value, f"{self.path}.{key}")


def _session_values(document: Any) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    top = _Reader(document, "$")
    if top.value.get("format") != EXPORT_FORMAT:
        raise InvalidArgument(
            f"$.format must be {EXPORT_FORMAT!r} (a file written by `sessions export`),"
            f" not {top.value.get('format')!r}"
        )
    if top.value.get("format_version") != EXPORT_FORMAT_VERSION:
        raise InvalidArgument(
            f"$.format_version {top.value.get('format_version')!r} is not supported"
            f" (this version reads {EXPORT_FORMAT_VERSION})"
        )
    s = _Reader(top._get("session"), "$.session")
    session_id = s.text("id")
    if len(session_id) > 36:
        raise InvalidArgument(f"$.session.id is longer than 36 characters: {session_id!r}")
    session = {
        "id": session_id,
        "user_id": s.text("user_id", optional=True),
        "name": s.text("name"),
        "status": s.text("status", choices=SESSION_STATUSES),
        "created_at": s.time("created_at"),
        "last_active_at": s.time("last_active_at", optional=True),
        "meta": s.json("meta", optional=False, obj=True),
        "resource_limits": s.json("resource_limits"),
    }
    state = None
    if top._get("state") is not None:
        t = _Reader(top.value["state"], "$.state")
        state = {
            "session_id": session_id,
            "mode": t.text("mode"),
            "status": t.text("status", choices=SESSION_STATUSES),
            "current_phase": t.text("current_phase", allow_empty=True),
            "current_step": t.integer("current_step", optional=True),
            "context_variables": t.json("context_variables", optional=False, obj=True),
            "plan_data": t.json("plan_data"),
            "created_at": t.time("created_at"),
            "updated_at": t.time("updated_at"),
            "expires_at": t.time("expires_at", optional=True),
            "version": t.integer("version", minimum=1),
            "epoch": t.integer("epoch", minimum=0),
            "message_count": t.integer("message_count", minimum=0),
            "owner": None,
            "lease_expires_at": None,
        }
    return session_id, session, state


def _message_rows(session_id: str, document: dict[str, Any]) -> list[dict[str, Any]]:
    history = document.get("messages")
    if not isinstance(history, list):
        raise InvalidArgument(f"$.messages must be a JSON array, not {type(history).__name__}")
    rows = []
    for seq, message in enumerate(history):
        role, agent, content, timestamp, extra = encode_message(message, f"$.messages[{seq}]", None)
        rows.append(
            {
                "session_id": session_id,
                "seq": seq,
                "role": role,
                "agent": agent,
                "content": content,
                "timestamp": timestamp,
                "extra": extra,
            }
        )
    return rows


def _approval_rows(session_id: str, document: dict[str, Any]) -> list[dict[str, Any]]:
    requests = document.get("approvals", [])
    if not isinstance(requests, list):
        raise InvalidArgument(f"$.approvals must be a JSON array, not {type(requests).__name__}")
    rows = []
    for index, request in enumerate(requests):
        a = _Reader(request, f"$.approvals[{index}]")
        rows.append(
            {
                "id": a.text("id"),
                "session_id": session_id,
                "approval_type": a.text("approval_type"),
                "context": a.json("context", optional=False, obj=True),
                "status": a.text("status", choices=APPROVAL_STATUSES),
                "resolution": a.text("resolution", optional=True, choices=APPROVAL_RESOLUTIONS),
                "result": a.json("result"),
                "created_at": a.time("created_at"),
                "expires_at": a.time("expires_at", optional=True),
                "resolved_at": a.time("resolved_at", optional=True),
            }
        )
    return rows


def import_op(
    document: Any, now: datetime, *, replace: bool = False
) -> Callable[[Connection], str]:
    """Write a document made by :func:`export_fn`; the operation returns the session id.

    The whole document is validated before anything is written.

    Raises:
        InvalidArgument: the document is not a valid export (the message names the path).
        SessionExists: the session exists and ``replace`` is false.
        SessionOwnedElsewhere: ``replace`` of a session a live owner holds.
    """
    session_id, session, state = _session_values(document)
    message_rows = _message_rows(session_id, document)
    approval_rows = _approval_rows(session_id, document)
    if state is not None and state["message_count"] != len(message_rows):
        raise InvalidArgument(
            f"$.state.message_count is {state['message_count']} but $.messages has"
            f" {len(message_rows)} messages"
        )

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
        taken = [r["id"] for r in approval_rows]
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
        connection.execute(insert(sessions).values(**session))
        if state is not None:
            connection.execute(insert(states).values(**state))
        if message_rows:
            connection.execute(insert(messages), message_rows)
        if approval_rows:
            connection.execute(insert(approvals), approval_rows)
        return session_id

    return op
