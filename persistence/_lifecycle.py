"""A session's life in the store: create, lease, checkpoint, transitions, delete.

Each function returns one write operation for the group-commit writer: a :class:`HotOp`
on compiled statements for what happens on every step or rehydration (create, lease
take and release, checkpoint), a function of a SQLAlchemy connection for the rest. Every
write is fenced: it changes a row only when its epoch (lease) and version match, and a
refused write changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, or_, select, tuple_, update

from persistence import _statements as sql
from persistence._backend import Tx
from persistence._clock import judged_now, offset
from persistence._errors import SessionExists, SessionOwnedElsewhere, SessionSupervisorError
from persistence._models import LIVE_STATUSES
from persistence._records import (
    Checkpoint,
    Lease,
    MessageRow,
    NewSession,
    StateRecord,
)
from persistence._refusals import diagnose, refusal_of
from persistence._tables import approvals, sessions, state_record, states
from persistence._write_ops import HotOp, NotCommitted, Phases

# (session, epoch) pairs per renewal statement: 2 parameters each, far below SQLite's limit.
_RENEW_CHUNK = 4000


def sample_positions(count: int) -> list[int]:
    """Positions of the history the owner keeps to detect a rewritten history.

    The first message, every power of two, and the last: O(log n) messages whose positions
    never move as the history grows, so an append is checked without reading the history.
    """
    if count <= 0:
        return []
    positions = [0]
    power = 1
    while power < count:
        positions.append(power)
        power *= 2
    if positions[-1] != count - 1:  # built in order: no set, no sort
        positions.append(count - 1)
    return positions


# ---------------------------------------------------------------------- hot operations


def create_session(new: NewSession) -> HotOp[bool]:
    """Insert a session and its initial state (owned by ``new.owner`` if given).

    The operation returns ``True``; with a caller-chosen id (``new.caller_id``), ``False``
    when that session exists already with the same user, name, mode and config (a retry),
    and raises ``SessionExists`` when a different one does.
    """

    def run(tx: Tx) -> Phases[bool]:
        if new.caller_id:
            found = tx.execute(sql.SESSION_IDENTITY, {"sid": new.session_id})
            yield
            row = found.fetchone()
            if row is not None:
                if tuple(row) != (new.user_id, new.name, new.config_json, new.mode):
                    raise SessionExists(new.session_id)
                return False
        now = tx.time(new.now)
        tx.execute(
            sql.INSERT_SESSION,
            {"id": new.session_id, "user_id": new.user_id, "name": new.name,
             "created_at": now, "last_active_at": now, "status": "active",
             "meta": new.config_json, "resource_limits": None},
        )  # fmt: skip
        tx.execute(
            sql.INSERT_STATE,
            {"session_id": new.session_id, "mode": new.mode, "context_variables": "{}",
             "plan_data": None, "current_phase": "init", "current_step": None,
             "status": "active", "created_at": now, "updated_at": now,
             "expires_at": tx.time(new.expires_at), "version": 1, "message_count": 0,
             "owner": new.owner, "epoch": 1, "lease_expires_at": tx.optional_time(new.lease_until)},
        )  # fmt: skip
        return True
        yield  # one phase: nothing to read back

    def recover(tx: Tx) -> bool:
        # A random id exists only if this create committed; a caller's id is compared.
        row = tx.execute(sql.SESSION_IDENTITY, {"sid": new.session_id}).fetchone()
        if row is None:
            raise NotCommitted
        if tuple(row) != (new.user_id, new.name, new.config_json, new.mode):
            raise SessionExists(new.session_id)
        return True

    return HotOp(run, recover=recover)


def take_lease(session_id: str, owner: str, now: datetime, lease_until: datetime) -> HotOp[Lease]:
    """Take (or re-take) a session for ``owner``, bumping its epoch.

    The operation raises ``SessionNotFound``, ``InvalidTransition`` (completed or
    expired) or ``SessionOwnedElsewhere`` (another owner's lease is still valid).
    """

    def run(tx: Tx) -> Phases[Lease]:
        # The owner as committed before the take: only to report a takeover.
        held = tx.execute(sql.HELD, {"sid": session_id})
        params = {"sid": session_id, "owner": owner, "now": tx.time(now),
                  "offset": offset(now), "lease_until": tx.time(lease_until)}  # fmt: skip
        taken = tx.execute(sql.TAKE, params)
        yield
        before = held.fetchone()
        found = taken.fetchone()
        if found is None:
            raise refusal_of(tx, session_id, action="open")
        state = state_record(found, tx.backend.load_time)
        previous = before[0] if before is not None and before[0] != owner else None
        base, samples = yield from _samples(tx, session_id, state)
        return Lease(state, samples, taken_from=previous, base=base)

    return HotOp(run)


def _samples(
    tx: Tx, session_id: str, state: StateRecord
) -> Phases[tuple[int, dict[int, MessageRow]]]:
    """The history's first ``seq`` and its sampled rows, by position, as stored."""
    positions = sample_positions(state.message_count)
    if not positions:
        return 0, {}
    params: dict[str, Any] = {f"p{i}": position for i, position in enumerate(positions)}
    params["sid"] = session_id
    rows = tx.execute(sql.samples(len(positions)), params)
    yield
    found = rows.fetchall()
    # Position 0 is always sampled: the lowest seq read is the history's first.
    base = min((row[0] for row in found), default=0)
    return base, {row[0] - base: (row[1], row[2], row[3], row[4], row[5]) for row in found}


def checkpoint(cp: Checkpoint) -> HotOp[int]:
    """Durably apply one checkpoint; the operation returns the new version.

    It raises ``SessionNotFound``, ``SessionOwnedElsewhere``, ``InvalidTransition`` or
    ``StaleSession`` when the guard did not match; then nothing was written.
    """

    def run(tx: Tx) -> Phases[int]:
        sid = cp.session_id
        now = tx.time(cp.now)
        # Measured on PostgreSQL: one statement pays alone (one round trip, no BEGIN nor
        # COMMIT); in a pipelined batch the three plain statements run faster.
        backend = tx.backend
        slides = cp.drop_before is not None
        one_statement = backend.slide_statement if slides else backend.append_statement
        if tx.autocommit and one_statement is not None and cp.rewrite_from is None:
            rows = cp.new_messages
            applied = tx.execute(
                one_statement,
                {"sid": sid, "expected": cp.expected_version, "mine": cp.epoch,
                 "context": cp.context_json, "phase": cp.phase, "step": cp.step, "now": now,
                 "expires": tx.time(cp.expires_at), "new_version": cp.expected_version + 1,
                 "count": cp.message_count, "set_plan": cp.set_plan, "plan": cp.plan_json,
                 "seqs": list(range(cp.first_seq, cp.first_seq + len(rows))),
                 "roles": [row[0] for row in rows], "agents": [row[1] for row in rows],
                 "contents": [row[2] for row in rows], "stamps": [row[3] for row in rows],
                 "extras": [row[4] for row in rows],
                 **({"drop_before": cp.drop_before} if slides else {})},
            )  # fmt: skip
            yield
            if applied.fetchone()[0] != 1:
                raise _refused(tx, cp)
            return cp.expected_version + 1
        params: dict[str, Any] = {
            "sid": sid,
            "expected": cp.expected_version,
            "mine": cp.epoch,
            "context": cp.context_json,
            "phase": cp.phase,
            "step": cp.step,
            "now": now,
            "expires": tx.time(cp.expires_at),
            "new_version": cp.expected_version + 1,
            "count": cp.message_count,
        }
        statement = sql.UPDATE_STATE
        if cp.set_plan:
            statement = sql.UPDATE_STATE_AND_PLAN
            params["plan"] = cp.plan_json
        guarded = tx.execute(statement, params)
        # The guarded update runs first and is read before anything else is sent, so a
        # refused checkpoint writes nothing.
        yield
        if guarded.rowcount != 1:
            raise _refused(tx, cp)
        if cp.rewrite_from is not None:
            tx.execute(sql.DELETE_MESSAGES_FROM, {"sid": sid, "first": cp.rewrite_from})
        if cp.drop_before is not None:
            tx.execute(sql.DELETE_MESSAGES_BEFORE, {"sid": sid, "drop_before": cp.drop_before})
        if cp.new_messages:
            first = cp.first_seq
            tx.executemany(
                sql.INSERT_MESSAGE,
                [
                    {"session_id": sid, "seq": first + offset, "role": row[0], "agent": row[1],
                     "content": row[2], "timestamp": row[3], "extra": row[4]}
                    for offset, row in enumerate(cp.new_messages)
                ],
            )  # fmt: skip
        tx.execute(sql.TOUCH_SESSION, {"sid": sid, "now": now})
        return cp.expected_version + 1

    def recover(tx: Tx) -> int:
        # Only this owner writes the row at this epoch, and it waits for this answer: the
        # version tells whether the checkpoint committed.
        row = tx.execute(sql.STATE_GUARD, {"sid": cp.session_id}).fetchone()
        if row is not None and row[2] == cp.epoch:
            if row[1] == cp.expected_version + 1:
                return cp.expected_version + 1
            if row[1] == cp.expected_version:
                raise NotCommitted
        raise _refused(tx, cp)

    return HotOp(run, autocommit=cp.rewrite_from is None, recover=recover)


def _refused(tx: Tx, cp: Checkpoint) -> SessionSupervisorError:
    return refusal_of(
        tx, cp.session_id, action="save", epoch=cp.epoch, version=cp.expected_version,
        allowed=("active",),
    )  # fmt: skip


def release_lease(session_id: str, owner: str, epoch: int) -> HotOp[bool]:
    """Give up a lease (a no-op if it was taken over meanwhile)."""

    def run(tx: Tx) -> Phases[bool]:
        released = tx.execute(sql.RELEASE, {"sid": session_id, "holder": owner, "mine": epoch})
        yield
        return bool(released.rowcount)

    return HotOp(run)


# ---------------------------------------------------------------------- Core operations


def transition(  # noqa: PLR0917
    session_id: str,
    epoch: int,
    version: int,
    from_statuses: Sequence[str],
    to_status: str,
    action: str,
    now: datetime,
    expires_at: datetime | None,
    release: bool,
) -> Callable[[Connection], int]:
    """Change a live session's status (fenced); the operation returns the new version."""

    def op(connection: Connection) -> int:
        values: dict[str, Any] = {
            "status": to_status,
            "version": version + 1,
            "updated_at": now,
            "expires_at": expires_at,
        }
        if release:
            values.update(owner=None, lease_expires_at=None)
        result = connection.execute(
            update(states)
            .where(
                states.c.session_id == session_id,
                states.c.epoch == epoch,
                states.c.version == version,
                states.c.status.in_(from_statuses),
            )
            .values(**values)
        )
        if result.rowcount != 1:
            diagnose(
                connection,
                session_id,
                action=action,
                epoch=epoch,
                version=version,
                allowed=from_statuses,
            )
        connection.execute(
            update(sessions)
            .where(sessions.c.id == session_id)
            .values(status=to_status, last_active_at=now)
        )
        if to_status in ("completed", "expired"):
            connection.execute(
                update(approvals)
                .where(approvals.c.session_id == session_id, approvals.c.status == "pending")
                .values(status="cancelled", resolved_at=now)
            )
        return version + 1

    return op


def delete_session(session_id: str, owner: str, now: datetime) -> Callable[[Connection], bool]:
    """Delete a session with its history, approvals and connections.

    The operation returns ``False`` when it does not exist, and raises
    ``SessionOwnedElsewhere`` when another owner holds a valid lease on it.
    """

    def op(connection: Connection) -> bool:
        lapsed = states.c.lease_expires_at < judged_now(connection.dialect.name, now)
        unowned = or_(states.c.owner.is_(None), states.c.owner == owner, lapsed)
        result = connection.execute(
            delete(sessions).where(
                sessions.c.id == session_id,
                or_(
                    exists().where(states.c.session_id == session_id, unowned),
                    ~exists().where(states.c.session_id == session_id),
                ),
            )
        )
        if result.rowcount == 1:
            return True
        holder = (
            connection.execute(select(states.c.owner).where(states.c.session_id == session_id))
        ).first()
        if holder is not None:
            raise SessionOwnedElsewhere(session_id, holder[0])
        return False

    return op


def release_all(owner: str) -> Callable[[Connection], int]:
    """Give up every lease ``owner`` holds."""

    def op(connection: Connection) -> int:
        result = connection.execute(
            update(states).where(states.c.owner == owner).values(owner=None, lease_expires_at=None)
        )
        return int(result.rowcount)

    return op


def renew_leases(
    owner: str, lease_until: datetime, epochs: dict[str, int]
) -> Callable[[Connection], set[str]]:
    """Extend the leases ``owner`` holds at exactly these ``epochs``; return those lost.

    Only the given ``(session, epoch)`` pairs are renewed: a row still naming ``owner``
    that the caller no longer serves (its release failed) lapses by itself instead of
    being kept from other processes for as long as this one lives.
    """
    pairs = list(epochs.items())

    def op(connection: Connection) -> set[str]:
        held: set[str] = set()
        # Bounded chunks keep the statement under SQLite's bound-parameter limit.
        for start in range(0, len(pairs), _RENEW_CHUNK):
            result = connection.execute(
                update(states)
                .where(
                    states.c.owner == owner,
                    states.c.status.in_(LIVE_STATUSES),
                    tuple_(states.c.session_id, states.c.epoch).in_(
                        pairs[start : start + _RENEW_CHUNK]
                    ),
                )
                .values(lease_expires_at=lease_until)
                .returning(states.c.session_id)
            )
            held.update(row[0] for row in result)
        return {sid for sid, _ in pairs if sid not in held}

    return op
