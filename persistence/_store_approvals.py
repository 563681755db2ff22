"""The store's approval requests: create, resolve and read them.

A request belongs to a live session; the store's lifecycle transitions and its sweep
cancel the pending requests of a session that ends (see :class:`Store`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, or_, select, update

from persistence import _json
from persistence._errors import ApprovalNotFound, InvalidTransition, SessionNotFound
from persistence._models import LIVE_STATUSES
from persistence._records import ApprovalRecord
from persistence._store_base import StoreBase
from persistence._tables import approvals, states


class ApprovalOps(StoreBase):
    """Approval requests of sessions."""

    async def create_approval(  # noqa: PLR0917
        self,
        approval_id: str,
        session_id: str,
        approval_type: str,
        context_json: str,
        now: datetime,
        expires_at: datetime | None,
    ) -> None:
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

        await self._writer.submit(op)

    async def resolve_approval(
        self, approval_id: str, resolution: str, result_json: str | None, now: datetime
    ) -> bool:
        """Resolve a pending, unexpired approval; ``False`` if it is no longer pending.

        Raises:
            ApprovalNotFound: no such approval request.
        """

        def op(connection: Connection) -> bool:
            result = connection.execute(
                update(approvals)
                .where(
                    approvals.c.id == approval_id,
                    approvals.c.status == "pending",
                    or_(approvals.c.expires_at.is_(None), approvals.c.expires_at >= now),
                )
                .values(
                    status="resolved", resolution=resolution, result=result_json, resolved_at=now
                )
            )
            if result.rowcount == 1:
                return True
            found = (
                connection.execute(select(approvals.c.id).where(approvals.c.id == approval_id))
            ).first()
            if found is None:
                raise ApprovalNotFound(approval_id)
            return False

        return await self._writer.submit(op)

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        """One approval request."""

        def fn(connection: Connection) -> ApprovalRecord | None:
            row = (
                connection.execute(select(approvals).where(approvals.c.id == approval_id))
            ).first()
            return None if row is None else _approval(row)

        return await self._read(fn)

    async def pending_approvals(self, session_id: str) -> list[ApprovalRecord]:
        """The pending approval requests of a session, oldest first."""

        def fn(connection: Connection) -> list[ApprovalRecord]:
            rows = connection.execute(
                select(approvals)
                .where(approvals.c.session_id == session_id, approvals.c.status == "pending")
                .order_by(approvals.c.created_at, approvals.c.id)
            )
            return [_approval(row) for row in rows]

        return await self._read(fn)


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
