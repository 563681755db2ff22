"""Approval requests (a human in the loop): plain functions of the manager's core."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import structlog

from actors._core import Core
from actors._validate import require_seconds, require_str
from persistence import APPROVAL_RESOLUTIONS, ApprovalRecord, InvalidArgument, _json

log = structlog.get_logger("actors.manager")


def approval_dict(record: ApprovalRecord) -> dict[str, Any]:
    """An approval as the API returns it (times as ISO-8601 strings)."""
    return {
        "approval_id": record.approval_id,
        "session_id": record.session_id,
        "approval_type": record.approval_type,
        "context": record.context,
        "status": record.status,
        "resolution": record.resolution,
        "result": record.result,
        "created_at": record.created_at.isoformat(),
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "resolved_at": record.resolved_at.isoformat() if record.resolved_at else None,
    }


def request(
    core: Core,
    session_id: str,
    approval_type: str,
    context: dict[str, Any],
    timeout: float | timedelta | None,
) -> str:
    """Store a pending approval request of a session; return its id."""
    core.check_open()
    session_id = require_str("session_id", session_id)
    # 64: the width of its column
    approval_type = require_str("approval_type", approval_type, max_length=64)
    if not isinstance(context, dict):
        raise InvalidArgument(f"context must be a dict, not {type(context).__name__}")
    context_json = _json.encode(context, "context", core.settings.max_state_bytes)
    now = core.now()
    expires_at = None
    if timeout is not None:
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        expires_at = now + timedelta(seconds=require_seconds("timeout", seconds))
    approval_id = str(uuid.uuid4())
    core.store().create_approval(
        approval_id, session_id, approval_type, context_json, now, expires_at
    )
    log.info(
        "approval.requested",
        session_id=session_id,
        approval_id=approval_id,
        approval_type=approval_type,
    )
    return approval_id


def resolve(core: Core, approval_id: str, resolution: str, result: Any) -> bool:
    """Answer a pending request; ``False`` if it was no longer pending."""
    core.check_open()
    approval_id = require_str("approval_id", approval_id)
    if resolution not in APPROVAL_RESOLUTIONS:
        raise InvalidArgument(
            f"resolution must be one of {', '.join(APPROVAL_RESOLUTIONS)}, not {resolution!r}"
        )
    result_json = _json.encode(result, "result", core.settings.max_state_bytes)
    resolved: bool = core.store().resolve_approval(approval_id, resolution, result_json, core.now())
    record: ApprovalRecord | None = core.store().get_approval(approval_id)
    log.info("approval.resolved" if resolved else "approval.late", approval_id=approval_id,
             session_id=record.session_id if record is not None else None,
             resolution=resolution)  # fmt: skip
    return resolved


def get(core: Core, approval_id: str) -> dict[str, Any] | None:
    """An approval request as a dict, or ``None``."""
    core.check_open()
    approval_id = require_str("approval_id", approval_id)
    record: ApprovalRecord | None = core.store().get_approval(approval_id)
    return None if record is None else approval_dict(record)


def pending(core: Core, session_id: str) -> list[dict[str, Any]]:
    """The pending requests of a session, oldest first."""
    core.check_open()
    session_id = require_str("session_id", session_id)
    records: list[ApprovalRecord] = core.store().pending_approvals(session_id)
    return [approval_dict(record) for record in records]
