"""The hot statements, each written once in Core (compiled per dialect by :class:`Statement`).

A checkpoint, a lease take, a create and a load happen on every step or every
rehydration of every session; these statements run on the driver's connection (see
:mod:`persistence._sql`). Bind names differ from column names, which SQLAlchemy reserves
in SET clauses.
"""

from __future__ import annotations

import functools

from sqlalchemy import bindparam, func, insert, or_, select, update

from persistence._clock import JudgedNow
from persistence._models import LIVE_STATUSES
from persistence._sql import Statement
from persistence._tables import (
    LOAD_SESSION_COLUMNS,
    MESSAGE_COLUMNS,
    STATE_COLUMNS,
    SUMMARY_COLUMNS,
    messages,
    sessions,
    states,
)

# ---------------------------------------------------------------------- checkpoint

_UPDATE_STATE = (
    update(states)
    .where(
        states.c.session_id == bindparam("sid"),
        states.c.version == bindparam("expected"),
        states.c.epoch == bindparam("mine"),
        states.c.status == "active",
    )
    .values(
        context_variables=bindparam("context"),
        current_phase=bindparam("phase"),
        current_step=bindparam("step"),
        updated_at=bindparam("now"),
        expires_at=bindparam("expires"),
        version=bindparam("new_version"),
        message_count=bindparam("count"),
    )
)
#: The fenced state update of a checkpoint: it matches no row unless epoch and version do.
UPDATE_STATE = Statement("update_state", _UPDATE_STATE)
UPDATE_STATE_AND_PLAN = Statement(
    "update_state_and_plan", _UPDATE_STATE.values(plan_data=bindparam("plan"))
)
DELETE_MESSAGES_FROM = Statement(
    "delete_messages_from",
    messages.delete().where(
        messages.c.session_id == bindparam("sid"), messages.c.seq >= bindparam("first")
    ),
)
#: A sliding window's oldest messages, those that fell out of it.
DELETE_MESSAGES_BEFORE = Statement(
    "delete_messages_before",
    messages.delete().where(
        messages.c.session_id == bindparam("sid"), messages.c.seq < bindparam("drop_before")
    ),
)
INSERT_MESSAGE = Statement("insert_message", insert(messages))
TOUCH_SESSION = Statement(
    "touch_session",
    update(sessions)
    .where(sessions.c.id == bindparam("sid"))
    .values(last_active_at=bindparam("now")),
)
#: What a refused write's guard compared: status, version, epoch, owner.
STATE_GUARD = Statement(
    "state_guard",
    select(states.c.status, states.c.version, states.c.epoch, states.c.owner).where(
        states.c.session_id == bindparam("sid")
    ),
)

# ---------------------------------------------------------------------- create

INSERT_SESSION = Statement("insert_session", insert(sessions))
INSERT_STATE = Statement("insert_state", insert(states))
#: What a create with a caller-chosen id compares with a session of that id.
SESSION_IDENTITY = Statement(
    "session_identity",
    select(sessions.c.user_id, sessions.c.name, sessions.c.meta, states.c.mode)
    .select_from(sessions.outerjoin(states, states.c.session_id == sessions.c.id))
    .where(sessions.c.id == bindparam("sid")),
)

# ---------------------------------------------------------------------- leases

#: The current owner and lease expiry: decides the usual refusal without locking the row.
HELD = Statement(
    "held",
    select(states.c.owner, states.c.lease_expires_at).where(
        states.c.session_id == bindparam("sid")
    ),
)
_candidate = states.alias("candidate")
#: Owner, epoch + 1 and lease expiry set, unless another owner's lease is still valid.
#: PostgreSQL: the row is locked only when the take may proceed, and a row another
#: transaction holds (its owner writing it, another process taking it) is skipped: the
#: take is refused at once instead of stalling this process's whole group commit behind
#: a peer's transaction (a paused one's included), and a refused take holds no lock until
#: its batch commits. SQLite renders no FOR UPDATE: its lock is the file's.
TAKE = Statement(
    "take",
    update(states)
    .where(
        states.c.session_id.in_(
            select(_candidate.c.session_id)
            .where(
                _candidate.c.session_id == bindparam("sid"),
                or_(*(_candidate.c.status == status for status in LIVE_STATUSES)),
                or_(
                    _candidate.c.owner.is_(None),
                    _candidate.c.owner == bindparam("owner"),
                    # On PostgreSQL the server's clock (see persistence._clock).
                    _candidate.c.lease_expires_at < JudgedNow(),
                ),
            )
            .with_for_update(skip_locked=True)
        )
    )
    .values(owner=bindparam("owner"), epoch=states.c.epoch + 1,
            lease_expires_at=bindparam("lease_until"))
    .returning(*STATE_COLUMNS),
)  # fmt: skip
RELEASE = Statement(
    "release",
    update(states)
    .where(
        states.c.session_id == bindparam("sid"),
        states.c.owner == bindparam("holder"),
        states.c.epoch == bindparam("mine"),
    )
    .values(owner=None, lease_expires_at=None),
)


@functools.cache
def samples(count: int) -> Statement:
    """The messages at ``count`` sampled positions (bound as ``p0`` ... ``p{count-1}``).

    A position counts from the history's first stored message (its lowest ``seq``, above
    0 once a sliding window dropped messages); each row comes with its ``seq``.
    """
    base = (
        select(func.min(messages.c.seq).label("base"))
        .where(messages.c.session_id == bindparam("sid"))
        .subquery("first_stored")
    )
    return Statement(
        f"samples_{count}",
        select(messages.c.seq, *MESSAGE_COLUMNS).where(
            messages.c.session_id == bindparam("sid"),
            messages.c.seq.in_([base.c.base + bindparam(f"p{i}") for i in range(count)]),
        ),
    )


# ---------------------------------------------------------------------- reads

LOAD_HEAD = Statement(
    "load_head",
    select(*STATE_COLUMNS, *LOAD_SESSION_COLUMNS)
    .select_from(states.join(sessions, sessions.c.id == states.c.session_id))
    .where(states.c.session_id == bindparam("sid")),
)
LOAD_MESSAGES = Statement(
    "load_messages",
    select(*MESSAGE_COLUMNS)
    .where(messages.c.session_id == bindparam("sid"))
    .order_by(messages.c.seq),
)
STATE = Statement("state", select(*STATE_COLUMNS).where(states.c.session_id == bindparam("sid")))
SESSION_INFO = Statement(
    "session_info",
    select(*SUMMARY_COLUMNS)
    .select_from(sessions.outerjoin(states, sessions.c.id == states.c.session_id))
    .where(sessions.c.id == bindparam("sid")),
)


@functools.cache
def list_sessions(*, by_user: bool, by_status: bool, by_mode: bool, newest_by: str) -> Statement:
    """One shape of the session listing (filters bound by name, newest first)."""
    query = select(*SUMMARY_COLUMNS).select_from(
        sessions.outerjoin(states, sessions.c.id == states.c.session_id)
    )
    if by_user:
        query = query.where(sessions.c.user_id == bindparam("user_id"))
    if by_status:
        query = query.where(states.c.status == bindparam("status"))
    if by_mode:
        query = query.where(states.c.mode == bindparam("mode"))
    newest = sessions.c.created_at if newest_by == "created_at" else states.c.updated_at
    query = query.order_by(newest.desc(), sessions.c.id).limit(bindparam("limit"))
    return Statement(f"list_{by_user}_{by_status}_{by_mode}_{newest_by}", query)
