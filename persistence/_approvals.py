"""Approval requests: create, resolve and read them (write operations and read functions).

A request belongs to a live session; the lifecycle's transitions and its sweep cancel the
pending requests of a session that ends (see :mod:`persistence._lifecycle`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, or_, select, update

from persistence import _json
from persistence._errors import ApprovalNotFound, InvalidTransition, SessionNotFound
from persistence._models import LIVE_STATUSES
from persistence._records import ApprovalRecord
from persistence._tables import approvals, states


def create_approval(  # noqa: PLR0917
    approval_id: str,
    session_id: str,
    approval_type: str,
    context_json: str,
    now: datetime,
    expires_at: datetime | None,
) -> Callable[[Connection], None]:
    """Insert a pending approval request for an existing session."""

    def op(connection: Connection) -> None:
        found = (
            connection.execute(select(states.c.status).where(states.c.session_id == session_id))
        ).first()
        if found is None:
            raise SessionNotFound(session_id)
        if found[0] not in LIVE_STATUSES:
            raise InvalidTransition(session_id, found[0], "request an approval for")
        connection.execute(
            insert(approvals).values(
                id=approval_id,
                session_id=session_id,
                approval_type=approval_type,
                context=context_json,
                status="pending",
                resolution=None,
                result=None,
                created_at=now,
                expires_at=expires_at,
                resolved_at=None,
            )
        )

    return op


def resolve_approval(
    approval_id: str, resolution: str, result_json: str | None, now: datetime
) -> Callable[[Connection], bool]:
    """Resolve a pending, unexpired approval; ``False`` if it is no longer pending.

    The operation raises ``ApprovalNotFound`` when there is no such request.
    """

    def op(connection: Connection) -> bool:
        result = connection.execute(
            update(approvals)
            .where(
                approvals.c.id == approval_id,
                approvals.c.status == "pending",
                or_(approvals.c.expires_at.is_(None), approvals.c.expires_at >= now),
            )
            .values(status="resolved", resolution=resolution, result=result_json, resolved_at=now)
        )
        if result.rowcount == 1:
            return True
        found = (
            connection.execute(select(approvals.c.id).where(approvals.c.id == approval_id))
        ).first()
        if found is None:
            raise ApprovalNotFound(approval_id)
        return False

    return op


def get_approval(approval_id: str) -> Callable[[Connection], ApprovalRecord | None]:
    """One approval request."""

    def fn(connection: Connection) -> ApprovalRecord | None:
        row = (connection.execute(select(approvals).where(approvals.c.id == approval_id))).first()
        return None if row is None else _approval(row)

    return fn


def pending_approvals(session_id: str) -> Callable[[Connection], list[ApprovalRecord]]:
    """The pending approval requests of a session, oldest first."""

    def fn(connection: Connection) -> list[ApprovalRecord]:
        rows = connection.execute(
            select(approvals)
            .where(approvals.c.session_id == session_id, approvals.c.status == "pending")
            .order_by(approvals.c.created_at, approvals.c.id)
        )
        return [_approval(row) for row in rows]

    return fn


def _approval(row: Row[Any]) -> ApprovalRecord:
    m = row._mapping
    return ApprovalRecord(
        approval_id=m["id"],
        session_id=m["session_id"],
        approval_type=m["approval_type"],
        context=_json.decode(m["context"]),
        status=m["status"],
        resolution=m["resolution"],
        result=_json.decode(m["result"]),
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        resolved_at=m["resolved_at"],
    )
