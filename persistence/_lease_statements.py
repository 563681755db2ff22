"""The statements of a rehydration (taking a session's lease), built once.

Building them per take cost more than running them: about half of a rehydration went to
SQLAlchemy's expression construction. Values are bound by name at execution.
"""

from __future__ import annotations

from sqlalchemy import bindparam, or_, select, update

from persistence._models import LIVE_STATUSES
from persistence._tables import MESSAGE_COLUMNS, STATE_COLUMNS, messages, states

#: The current owner and lease expiry: decides the usual refusal without locking the row.
HELD = select(states.c.owner, states.c.lease_expires_at).where(
    states.c.session_id == bindparam("sid")
)
# PostgreSQL: lock the row, or give up at once if another transaction holds it (its owner
# is writing it, or another process is taking it). Waiting instead would stall this
# process's whole group commit behind a peer's transaction, a paused one's included.
# SQLite renders no FOR UPDATE: its lock is the file's.
OWNER_FOR_TAKE = (
    select(states.c.owner)
    .where(states.c.session_id == bindparam("sid"))
    .with_for_update(skip_locked=True)
)
#: Owner, epoch + 1 and lease expiry set, unless another owner's lease is still valid.
TAKE = (
    update(states)
    .where(
        states.c.session_id == bindparam("sid"),
        states.c.status.in_(LIVE_STATUSES),
        or_(
            states.c.owner.is_(None),
            states.c.owner == bindparam("owner"),
            states.c.lease_expires_at < bindparam("now"),
        ),
    )
    .values(owner=bindparam("owner"), epoch=states.c.epoch + 1,
            lease_expires_at=bindparam("lease_until"))
    .returning(*STATE_COLUMNS)
)  # fmt: skip
#: The messages at the sampled positions (see ``sample_positions``).
SAMPLES = select(messages.c.seq, *MESSAGE_COLUMNS).where(
    messages.c.session_id == bindparam("sid"),
    messages.c.seq.in_(bindparam("positions", expanding=True)),
)
