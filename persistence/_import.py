"""The validation of an imported session document, before anything is written.

Every value must pass the rules the API applies to the same column
(:mod:`persistence._checks`), and the document as a whole must describe a session the
API could have produced: a state row, the same status in both rows, an expiry for an
active session, no pending approval of a finished one, each approval id once. The first
problem is refused with :class:`InvalidArgument` naming its JSON path, so a bad file
changes nothing on either backend.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from persistence import _json
from persistence._checks import check_int32, check_text
from persistence._codec import encode_message
from persistence._errors import InvalidArgument
from persistence._models import (
    APPROVAL_RESOLUTIONS,
    APPROVAL_STATUSES,
    LIVE_STATUSES,
    SESSION_STATUSES,
)

EXPORT_FORMAT = "session-supervisor/session"
EXPORT_FORMAT_VERSION = 1

# The widths of the columns the texts go to (persistence._models).
_ID = 36
_SHORT = 64
_LONG = 255


@dataclass(frozen=True, slots=True)
class ImportRows:
    """The rows an import writes, all checked."""

    session_id: str
    session: dict[str, Any]
    state: dict[str, Any]
    messages: list[dict[str, Any]]
    approvals: list[dict[str, Any]]


class _Reader:
    """Checked access to one JSON object of the document; every error names its path."""

    def __init__(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise InvalidArgument(f"{path} must be a JSON object, not {_kind(value)}")
        self.value: dict[str, Any] = value
        self.path = path

    def get(self, key: str) -> Any:
        if key not in self.value:
            raise InvalidArgument(f"{self.path}.{key} is missing")
        return self.value[key]

    def text(
        self,
        key: str,
        *,
        width: int,
        optional: bool = False,
        choices: Sequence[str] = (),
        allow_empty: bool = False,
    ) -> Any:
        value = self.get(key)
        if value is None and optional:
            return None
        where = f"{self.path}.{key}"
        if not isinstance(value, str):
            raise InvalidArgument(f"{where} must be a string, not {_kind(value)}")
        check_text(where, value, allow_empty=allow_empty, max_length=width)
        if choices and value not in choices:
            raise InvalidArgument(f"{where} must be one of {list(choices)}, not {value!r}")
        return value

    def integer(self, key: str, *, optional: bool = False, minimum: int | None = None) -> Any:
        value = self.get(key)
        if value is None and optional:
            return None
        where = f"{self.path}.{key}"
        if minimum is None:
            return check_int32(where, value)
        return check_int32(where, value, minimum=minimum)

    def time(self, key: str, *, optional: bool = False) -> datetime | None:
        value = self.get(key)
        if value is None and optional:
            return None
        where = f"{self.path}.{key}"
        if not isinstance(value, str):
            raise InvalidArgument(f"{where} must be an ISO 8601 time, not {_kind(value)}")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidArgument(f"{where} is not an ISO 8601 time: {value!r}") from None
        if parsed.tzinfo is None:
            raise InvalidArgument(f"{where} has no time zone: {value!r}")
        try:
            # Stored as UTC: a time whose UTC is outside years 1..9999 cannot be stored.
            parsed.astimezone(UTC)
        except OverflowError:
            raise InvalidArgument(
                f"{where} is out of range once in UTC (years 1 to 9999): {value!r}"
            ) from None
        return parsed

    def json(self, key: str, *, optional: bool = True, obj: bool = False) -> str | None:
        value = self.get(key)
        if value is None and optional:
            return None
        if obj and not isinstance(value, dict):
            raise InvalidArgument(f"{self.path}.{key} must be a JSON object, not {_kind(value)}")
        return _json.encode(value, f"{self.path}.{key}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str | int | float):
        text = repr(value)
        return text if len(text) <= 40 else f"{text[:37]}..."
    return f"a JSON {'array' if isinstance(value, list) else type(value).__name__}"


def _header(top: _Reader) -> None:
    found = top.value.get("format")
    if found != EXPORT_FORMAT:
        raise InvalidArgument(
            f"$.format must be {EXPORT_FORMAT!r} (a file written by `sessions export`),"
            f" not {_kind(found)}"
        )
    version = top.value.get("format_version")
    if type(version) is not int or version != EXPORT_FORMAT_VERSION:
        raise InvalidArgument(
            f"$.format_version {_kind(version)} is not supported"
            f" (this version reads {EXPORT_FORMAT_VERSION})"
        )


def _session(top: _Reader, session_id: str | None) -> dict[str, Any]:
    s = _Reader(top.get("session"), "$.session")
    found = s.text("id", width=_ID)
    return {
        "id": session_id or found,
        "user_id": s.text("user_id", width=_LONG, optional=True),
        "name": s.text("name", width=_LONG),
        "status": s.text("status", width=_SHORT, choices=SESSION_STATUSES),
        "created_at": s.time("created_at"),
        "last_active_at": s.time("last_active_at", optional=True),
        "meta": s.json("meta", optional=False, obj=True),
        "resource_limits": s.json("resource_limits"),
    }


def _state(top: _Reader, session: dict[str, Any]) -> dict[str, Any]:
    if top.get("state") is None:
        raise InvalidArgument(
            "$.state is null: every session has a state (a file written by `sessions"
            " export` always has one)"
        )
    t = _Reader(top.value["state"], "$.state")
    state = {
        "session_id": session["id"],
        "mode": t.text("mode", width=_SHORT),
        "status": t.text("status", width=_SHORT, choices=SESSION_STATUSES),
        "current_phase": t.text("current_phase", width=_LONG, allow_empty=True),
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
    if state["status"] != session["status"]:
        raise InvalidArgument(
            f"$.state.status {state['status']!r} disagrees with $.session.status"
            f" {session['status']!r}: both rows always have the same status"
        )
    if state["status"] == "active" and state["expires_at"] is None:
        raise InvalidArgument(
            "$.state.expires_at is null for an active session: it would never expire"
        )
    return state


def _messages(top: _Reader, session_id: str) -> list[dict[str, Any]]:
    history = top.get("messages")
    if not isinstance(history, list):
        raise InvalidArgument(f"$.messages must be a JSON array, not {_kind(history)}")
    rows = []
    for seq, message in enumerate(history):
        role, agent, content, timestamp, extra = encode_message(message, f"$.messages[{seq}]", None)
        rows.append(
            {"session_id": session_id, "seq": seq, "role": role, "agent": agent,
             "content": content, "timestamp": timestamp, "extra": extra}
        )  # fmt: skip
    return rows


def _approval(a: _Reader, session_id: str, status: str) -> dict[str, Any]:
    row = {
        "id": a.text("id", width=_ID),
        "session_id": session_id,
        "approval_type": a.text("approval_type", width=_SHORT),
        "context": a.json("context", optional=False, obj=True),
        "status": a.text("status", width=_SHORT, choices=APPROVAL_STATUSES),
        "resolution": a.text(
            "resolution", width=_SHORT, optional=True, choices=APPROVAL_RESOLUTIONS
        ),
        "result": a.json("result"),
        "created_at": a.time("created_at"),
        "expires_at": a.time("expires_at", optional=True),
        "resolved_at": a.time("resolved_at", optional=True),
    }
    if (row["status"] == "resolved") != (row["resolution"] is not None):
        raise InvalidArgument(
            f"{a.path}.resolution is {_kind(row['resolution'])} for a {row['status']} request:"
            " a resolved request has one, no other has"
        )
    if row["status"] == "pending" and status not in LIVE_STATUSES:
        raise InvalidArgument(
            f"{a.path}.status is pending but the session is {status}: a {status} session's"
            " requests were cancelled when it ended"
        )
    return row


def _approvals(top: _Reader, session_id: str, status: str, new_ids: bool) -> list[dict[str, Any]]:
    requests = top.value.get("approvals", [])
    if not isinstance(requests, list):
        raise InvalidArgument(f"$.approvals must be a JSON array, not {_kind(requests)}")
    rows = []
    seen: dict[str, int] = {}
    for index, request in enumerate(requests):
        path = f"$.approvals[{index}]"
        row = _approval(_Reader(request, path), session_id, status)
        if row["id"] in seen:
            raise InvalidArgument(
                f"{path}.id {row['id']!r} is also $.approvals[{seen[row['id']]}].id:"
                " each request has its own id"
            )
        seen[row["id"]] = index
        if new_ids:
            row["id"] = str(uuid.uuid4())
        rows.append(row)
    return rows


def read_document(document: Any, *, new_id: str | None = None) -> ImportRows:
    """Check a whole document of ``sessions export``; the rows to write.

    Args:
        document: the parsed JSON.
        new_id: import as a copy under this session id; its approval requests get new
            ids too (theirs are unique across sessions).

    Raises:
        InvalidArgument: the first problem, naming its JSON path.
        NotSerializable: a JSON value that cannot be stored, naming its path.
    """
    top = _Reader(document, "$")
    _header(top)
    if new_id is not None:
        check_text("new session id", new_id, allow_empty=False, max_length=_ID)
    session = _session(top, new_id)
    session_id: str = session["id"]
    state = _state(top, session)
    message_rows = _messages(top, session_id)
    if state["message_count"] != len(message_rows):
        raise InvalidArgument(
            f"$.state.message_count is {state['message_count']} but $.messages has"
            f" {len(message_rows)} messages"
        )
    approval_rows = _approvals(top, session_id, session["status"], new_id is not None)
    return ImportRows(session_id, session, state, message_rows, approval_rows)
