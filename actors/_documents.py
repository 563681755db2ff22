"""The dicts the façade returns for stored sessions (shared by the façade and the actors)."""

from __future__ import annotations

from typing import Any

from persistence import SessionDocument, _json


def state_dict(document: SessionDocument) -> dict[str, Any]:
    """A whole stored session as the seed's ``load_session_state`` dict (+ extra keys).

    This is also what a ``runtime_factory`` receives.
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
