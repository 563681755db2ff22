"""The store's periodic cleanup: one sweeper at a time across processes, in batches.

Every process sharing a database ticks, but the expiry work is database-wide, so a
process first *claims* the sweep on the ``store_meta`` row ``sweep``: the claim fails
when another process swept within the interval (or holds the row right now, PostgreSQL:
``FOR UPDATE SKIP LOCKED``, never a wait), and N processes cost one sweep per interval,
not N. The work itself runs in batches of at most ``limit`` rows per kind, each batch its
own short transaction through the group-commit writer, so a large backlog never holds the
writer (nor row locks) for long; on PostgreSQL each batch skips rows another transaction
holds (a checkpoint in flight, a concurrent sweeper) instead of waiting for them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, delete, insert, or_, select, update

from persistence._admin import purge_op
from persistence._clock import judged_now
from persistence._records import SweepCounts
from persistence._tables import approvals, connections, handoffs, sessions, states, store_meta

#: Rows of each kind one batch of the sweep changes at most.
SWEEP_BATCH = 500
#: The statuses the retention purges.
RETIRED_STATUSES = ("completed", "expired")
#: How old a hand-off request the sweep drops: far past any requester's wait.
STALE_HANDOFF = timedelta(minutes=10)
_SWEEP_KEY = "sweep"


def claim(owner: str, now: datetime, within_seconds: float | None) -> Callable[[Connection], bool]:
    """Record that ``owner`` sweeps at ``now``; ``False`` if another process has it.

    With ``within_seconds`` the claim fails when the last sweep started less than that
    long before ``now`` (or another transaction is claiming it at this moment); without,
    it always succeeds (a sweep asked for explicitly) and only records the time.
    """

    def op(connection: Connection) -> bool:
        values = {"value": owner, "updated_at": now}
        if within_seconds is None:
            claimed = connection.execute(
                update(store_meta).where(store_meta.c.key == _SWEEP_KEY).values(**values)
            )
        else:
            row = store_meta.alias("claimed")
            cutoff = now - timedelta(seconds=within_seconds)
            due = or_(row.c.updated_at.is_(None), row.c.updated_at <= cutoff)
            claimed = connection.execute(
                update(store_meta)
                .where(
                    store_meta.c.key.in_(
                        select(row.c.key)
                        .where(row.c.key == _SWEEP_KEY, due)
                        .with_for_update(skip_locked=True)
                    )
                )
                .values(**values)
            )
        if claimed.rowcount == 1:
            return True
        present = connection.execute(
            select(store_meta.c.key).where(store_meta.c.key == _SWEEP_KEY)
        ).first()
        if present is not None:
            return False
        # The row was removed by hand: put it back, and this process sweeps.
        connection.execute(insert(store_meta).values(key=_SWEEP_KEY, **values))
        return True

    return op


def _picked(table: Table, key: str, limit: int, where: Callable[[Any], list[Any]]) -> Any:
    """At most ``limit`` keys of rows matching ``where(table)``, locked; locked ones skipped.

    ``where`` builds the conditions for any alias of ``table``: the outer statement checks
    them again on the rows the subquery picked.
    """
    row = table.alias(f"picked_{table.name}")
    # A materialised CTE, evaluated once: as a plain IN subquery PostgreSQL may scan it
    # again for each outer row and so change more than ``limit`` rows (measured).
    picked = (
        select(row.c[key])
        .where(*where(row))
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte(f"picked_{table.name}_keys")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return select(picked.c[key])


def _delete_picked(
    connection: Connection,
    table: Table,
    key: str,
    limit: int,
    where: Callable[[Any], list[Any]],
) -> int:
    """Delete at most ``limit`` rows matching ``where`` (see :func:`_picked`); how many."""
    # Counted from RETURNING: sqlite3 reports no rowcount for a statement with WITH.
    return len(
        connection.execute(
            delete(table)
            .where(table.c[key].in_(_picked(table, key, limit, where)))
            .where(*where(table))
            .returning(table.c[key])
        ).all()
    )


def sweep_batch(
    now: datetime, connection_cutoff: datetime, purge_before: datetime | None, limit: int
) -> Callable[[Connection], tuple[SweepCounts, bool]]:
    """One batch of the sweep: at most ``limit`` rows of each kind.

    The operation returns the counts and whether any kind filled its batch (then more may
    be left, and the caller runs another batch).
    """

    def stale(t: Any) -> list[Any]:
        return [t.c.last_heartbeat < connection_cutoff]

    def old(t: Any) -> list[Any]:
        return [t.c.requested_at < now - STALE_HANDOFF]

    def op(connection: Connection) -> tuple[SweepCounts, bool]:
        # Expiry is judged by the server's clock on PostgreSQL (see persistence._clock).
        judged = judged_now(connection.dialect.name, now)

        def idle(t: Any) -> list[Any]:
            return [t.c.status == "active", t.c.expires_at < judged]

        def overdue(t: Any) -> list[Any]:
            return [t.c.status == "pending", t.c.expires_at < judged]

        expired = [
            row[0]
            for row in connection.execute(
                update(states)
                .where(states.c.session_id.in_(_picked(states, "session_id", limit, idle)))
                .where(*idle(states))
                .values(
                    status="expired",
                    version=states.c.version + 1,
                    updated_at=now,
                    owner=None,
                    lease_expires_at=None,
                )
                .returning(states.c.session_id)
            )
        ]
        if expired:
            connection.execute(
                update(sessions).where(sessions.c.id.in_(expired)).values(status="expired")
            )
            connection.execute(
                update(approvals)
                .where(approvals.c.status == "pending", approvals.c.session_id.in_(expired))
                .values(status="cancelled", resolved_at=now)
            )
        # Counted from RETURNING: sqlite3 reports no rowcount for a statement with WITH.
        approvals_expired = len(
            connection.execute(
                update(approvals)
                .where(approvals.c.id.in_(_picked(approvals, "id", limit, overdue)))
                .where(*overdue(approvals))
                .values(status="expired")
                .returning(approvals.c.id)
            ).all()
        )
        removed = _delete_picked(connection, connections, "task_id", limit, stale)
        # A request whose owner died (or whose requester stopped waiting long ago) is never
        # taken: nobody answers it now, so the sweep drops it.
        dropped = _delete_picked(connection, handoffs, "session_id", limit, old)
        purged: list[str] = []
        if purge_before is not None:
            purged = purge_op(RETIRED_STATUSES, purge_before, now, limit)(connection)
        counts = SweepCounts(expired, approvals_expired, removed, len(purged))
        full = limit in (len(expired), approvals_expired, removed, dropped, len(purged))
        return counts, full

    return op


def merge(total: SweepCounts, part: SweepCounts) -> SweepCounts:
    """The counts of two batches of one sweep added up."""
    return SweepCounts(
        total.expired_sessions + part.expired_sessions,
        total.approvals_expired + part.approvals_expired,
        total.connections_removed + part.connections_removed,
        total.sessions_purged + part.sessions_purged,
    )
