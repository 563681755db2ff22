"""Approval requests and live connections, on the manager."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from actors._approvals_wait import ApprovalWaits
from actors._validate import require_optional_str, require_seconds, require_str
from persistence import APPROVAL_RESOLUTIONS, ApprovalRecord, InvalidArgument, _json

if TYPE_CHECKING:
    from actors._settings import Settings
    from persistence import Database, Store

log = structlog.get_logger("actors.manager")


def _expired(record: ApprovalRecord, now: datetime) -> bool:
    """Pending past its deadline: the sweep will mark it so; it reads so at once."""
    return record.status == "pending" and record.expires_at is not None and record.expires_at < now


def _approval_dict(record: ApprovalRecord, now: datetime) -> dict[str, Any]:
    # resolve_approval refuses the same requests, on the same clock (expires_at < now).
    return {
        "approval_id": record.approval_id,
        "session_id": record.session_id,
        "approval_type": record.approval_type,
        "context": record.context,
        "status": "expired" if _expired(record, now) else record.status,
        "resolution": record.resolution,
        "result": record.result,
        "created_at": record.created_at.isoformat(),
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "resolved_at": record.resolved_at.isoformat() if record.resolved_at else None,
    }


class SideTables(ApprovalWaits):
    """Approvals (human in the loop) and connections (heartbeats) of sessions."""

    _settings: Settings
    _db: Database

    def _open_store(self) -> Store:  # pragma: no cover - provided by the manager
        raise NotImplementedError

    def _check_open(self) -> None:  # pragma: no cover - provided by the manager
        raise NotImplementedError

    def _now(self) -> datetime:  # pragma: no cover - provided by the manager
        raise NotImplementedError

    # ------------------------------------------------------------------ approvals

    def request_approval(
        self,
        session_id: str,
        approval_type: str,
        context: dict[str, Any],
        timeout: float | timedelta | None = None,
    ) -> str:
        """Ask a human to approve something; return the request's id.

        Args:
            session_id: the session waiting for the answer (active or suspended).
            approval_type: e.g. ``plan``, ``tool``, ``error_recovery``.
            context: what the human needs to decide (JSON).
            timeout: seconds (or a timedelta) until the request expires; ``None``: never.

        Raises:
            SessionNotFound, InvalidTransition (session finished), NotSerializable,
            InvalidArgument.
        """
        self._check_open()
        session_id = require_str("session_id", session_id)
        # 64: the width of its column
        approval_type = require_str("approval_type", approval_type, max_length=64)
        if not isinstance(context, dict):
            raise InvalidArgument(f"context must be a dict, not {type(context).__name__}")
        context_json = _json.encode(context, "context", self._settings.max_state_bytes)
        now = self._now()
        expires_at = None
        if timeout is not None:
            seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
            expires_at = now + timedelta(seconds=require_seconds("timeout", seconds))
        approval_id = str(uuid.uuid4())
        self._open_store().create_approval(
            approval_id, session_id, approval_type, context_json, now, expires_at
        )
        log.info(
            "approval.requested",
            session_id=session_id,
            approval_id=approval_id,
            approval_type=approval_type,
        )
        return approval_id

    def resolve_approval(self, approval_id: str, resolution: str, result: Any = None) -> bool:
        """Answer a pending approval request.

        Args:
            approval_id: the id :meth:`request_approval` returned.
            resolution: ``approved``, ``rejected`` or ``modified``.
            result: what the human chose or edited (JSON).

        Returns:
            ``True`` if it was pending and is now resolved; ``False`` if it had already
            been resolved, expired or cancelled (a late answer changes nothing).

        Raises:
            ApprovalNotFound: no such request. InvalidArgument, NotSerializable.
        """
        self._check_open()
        approval_id = require_str("approval_id", approval_id)
        if resolution not in APPROVAL_RESOLUTIONS:
            raise InvalidArgument(
                f"resolution must be one of {', '.join(APPROVAL_RESOLUTIONS)}, not {resolution!r}"
            )
        result_json = _json.encode(result, "result", self._settings.max_state_bytes)
        resolved: bool = self._open_store().resolve_approval(
            approval_id, resolution, result_json, self._now()
        )
        if resolved:
            self._approval_waiters.notify(approval_id)
        record: ApprovalRecord | None = self._open_store().get_approval(approval_id)
        log.info("approval.resolved" if resolved else "approval.late", approval_id=approval_id,
                 session_id=record.session_id if record is not None else None,
                 resolution=resolution)  # fmt: skip
        return resolved

    def get_approval(self, approval_id: str) -> dict[str, Any] | None:
        """An approval request as a dict, or ``None`` if it does not exist.

        Its ``status`` is ``pending``, ``resolved`` (see ``resolution``), ``expired``
        (past its deadline unanswered: so from the deadline on, before any sweep) or
        ``cancelled`` (its session ended first).
        """
        self._check_open()
        approval_id = require_str("approval_id", approval_id)
        record: ApprovalRecord | None = self._open_store().get_approval(approval_id)
        return None if record is None else _approval_dict(record, self._now())

    def list_pending_approvals(self, session_id: str) -> list[dict[str, Any]]:
        """The pending approval requests of a session, oldest first (none past its deadline)."""
        self._check_open()
        session_id = require_str("session_id", session_id)
        records: list[ApprovalRecord] = self._open_store().pending_approvals(session_id)
        now = self._now()
        return [_approval_dict(record, now) for record in records if not _expired(record, now)]

    # ------------------------------------------------------------------ connections

    def register_connection(self, task_id: str, session_id: str | None = None) -> None:
        """Record a live connection (e.g. a websocket) of a task; refreshes its heartbeat.

        Connections without a heartbeat for 5 minutes are removed by the sweep.

        Raises:
            SessionNotFound: ``session_id`` does not exist.
        """
        self._check_open()
        task_id = require_str("task_id", task_id)
        session_id = require_optional_str("session_id", session_id)
        self._open_store().register_connection(
            task_id, session_id, self._settings.instance_id, self._now()
        )

    def heartbeat(self, task_id: str) -> bool:
        """Refresh a connection; ``False`` if it is unknown (or was already removed)."""
        self._check_open()
        task_id = require_str("task_id", task_id)
        alive: bool = self._open_store().heartbeat(task_id, self._now())
        return alive

    def unregister_connection(self, task_id: str) -> bool:
        """Forget a connection; ``False`` if it was unknown."""
        self._check_open()
        task_id = require_str("task_id", task_id)
        removed: bool = self._open_store().unregister_connection(task_id)
        return removed

    def list_connections(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """Live connections (of one session, or all)."""
        self._check_open()
        session_id = require_optional_str("session_id", session_id)
        rows: list[dict[str, Any]] = self._open_store().connections_of(
            None if session_id is None else [session_id]
        )
        return [
            {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
            for row in rows
        ]
