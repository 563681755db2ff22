"""The store's tables as Core objects, and the column lists more than one read path selects.

Defined once for the store, the operators' functions and the SQLite reader, so that a row
read on any path has the same columns in the same order and decodes the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import Table

from persistence._models import (
    ActiveConnectionRow,
    ApprovalRequestRow,
    HandoffRequestRow,
    SessionMessageRow,
    SessionRow,
    SessionStateRow,
    StoreMetaRow,
)
from persistence._records import StateRecord

sessions = cast("Table", SessionRow.__table__)
states = cast("Table", SessionStateRow.__table__)
messages = cast("Table", SessionMessageRow.__table__)
approvals = cast("Table", ApprovalRequestRow.__table__)
connections = cast("Table", ActiveConnectionRow.__table__)
store_meta = cast("Table", StoreMetaRow.__table__)
handoffs = cast("Table", HandoffRequestRow.__table__)

#: A state row, in the order of :class:`StateRecord`'s fields.
STATE_COLUMNS = (
    states.c.session_id,
    states.c.mode,
    states.c.context_variables,
    states.c.plan_data,
    states.c.current_phase,
    states.c.current_step,
    states.c.status,
    states.c.created_at,
    states.c.updated_at,
    states.c.expires_at,
    states.c.version,
    states.c.message_count,
    states.c.owner,
    states.c.epoch,
    states.c.lease_expires_at,
)
#: A session joined to its state, in the order of :class:`SessionSummary`'s fields.
SUMMARY_COLUMNS = (
    sessions.c.id,
    sessions.c.name,
    sessions.c.user_id,
    sessions.c.meta,
    sessions.c.created_at,
    sessions.c.last_active_at,
    states.c.mode,
    states.c.status,
    states.c.current_phase,
    states.c.current_step,
    states.c.updated_at,
    states.c.version,
    states.c.message_count,
    states.c.owner,
    states.c.lease_expires_at,
)
#: A stored message, in the order :func:`persistence._codec.decode_message` reads.
MESSAGE_COLUMNS = (
    messages.c.role,
    messages.c.agent,
    messages.c.content,
    messages.c.timestamp,
    messages.c.extra,
)
#: The session columns a load selects after :data:`STATE_COLUMNS`.
LOAD_SESSION_COLUMNS = (
    sessions.c.user_id,
    sessions.c.name,
    sessions.c.meta,
    sessions.c.created_at,
    sessions.c.last_active_at,
)


#: Positions of the datetime columns in a row that starts with :data:`STATE_COLUMNS`.
STATE_TIMES = (7, 8, 9, 14)


def state_record(row: Sequence[Any], load_time: Callable[[Any], Any]) -> StateRecord:
    """The :class:`StateRecord` of a driver's row that starts with :data:`STATE_COLUMNS`."""
    values = list(row[: len(STATE_COLUMNS)])
    for position in STATE_TIMES:
        values[position] = load_time(values[position])
    return StateRecord(*values)
