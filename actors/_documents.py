"""The dicts the façade returns for stored sessions (shared by the façade and the actors)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from persistence import SessionDocument, SessionSummary, _json


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def state_dict(document: SessionDocument) -> dict[str, Any]:
    """A whole stored session as the seed's ``load_session_state`` dict (+ extra keys).

    Its times are datetimes, as the seed's callers expect; see :func:`json_state_dict`.
    """
    state = document.state
    return {
        "session_id": document.session_id,
        "mode": state.mode,
        "conversation_history": document.history,
        "context_variables": _json.decode(state.context_json) or {},
        "current_phase": state.current_phase,
        "current_step": state.current_step,
        "plan_data": _json.decode(state.plan_json),
        "status": state.status,
        "config": document.config,
        "created_at": state.created_at,
        "updated_at": state.updated_at,
        "version": state.version,
        "user_id": document.user_id,
        "name": document.name,
        "message_count": state.message_count,
    }


def json_state_dict(document: SessionDocument) -> dict[str, Any]:
    """:func:`state_dict` ready for ``json.dumps``: times as ISO-8601 strings.

    The typed ``load()`` returns this, as ``info()`` and ``sessions()`` do; so does a
    ``runtime_factory`` receive it.
    """
    state = state_dict(document)
    state["created_at"] = _iso(state["created_at"])
    state["updated_at"] = _iso(state["updated_at"])
    return state


def info_dict(summary: SessionSummary) -> dict[str, Any]:
    """A session's summary as the seed's ``get_session_info`` dict (+ extra keys)."""
    return {
        "session_id": summary.session_id,
        "name": summary.name,
        "user_id": summary.user_id,
        "mode": summary.mode,
        "status": summary.status,
        "current_phase": summary.current_phase,
        "current_step": summary.current_step,
        "created_at": _iso(summary.created_at),
        "updated_at": _iso(summary.updated_at),
        "config": summary.config,
        "version": summary.version,
        "message_count": summary.message_count,
        "owner": summary.owner,
        "lease_expires_at": _iso(summary.lease_expires_at),
        "last_active_at": _iso(summary.last_active_at),
    }


def listing_dict(summary: SessionSummary) -> dict[str, Any]:
    """One entry of the seed's ``list_sessions`` list."""
    return {
        "session_id": summary.session_id,
        "name": summary.name,
        "created_at": _iso(summary.created_at),
        "last_active_at": _iso(summary.last_active_at),
        "mode": summary.mode,
        "status": summary.status,
        "current_phase": summary.current_phase,
        "updated_at": _iso(summary.updated_at),
    }
