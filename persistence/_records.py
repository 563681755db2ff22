"""Plain records passed between the store and its callers (no SQLAlchemy objects leak)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# A message row as stored: (role, agent, content, timestamp, extra JSON).
MessageRow = tuple[str | None, str | None, str | None, str | None, str | None]


@dataclass(frozen=True, slots=True)
class NewSession:
    """What :meth:`Store.create_session` writes."""

    session_id: str
    user_id: str | None
    name: str
    mode: str
    config_json: str
    now: datetime
    expires_at: datetime
    owner: str | None
    lease_until: datetime | None
    #: The id was chosen by the caller: a create that finds the same session returns it
    #: (a retry), one that finds a different session raises ``SessionExists``.
    caller_id: bool = False


@dataclass(slots=True)
class StateRecord:
    """One ``session_states`` row: everything resumable except the history itself."""

    session_id: str
    mode: str
    context_json: str
    plan_json: str | None
    current_phase: str
    current_step: int | None
    status: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    version: int
    message_count: int
    owner: str | None
    epoch: int
    lease_expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Lease:
    """A session taken by one owner: its state row and the sampled messages of its history.

    ``samples`` maps positions in the history to their rows as stored (so a change of
    type, ``1`` to ``True``, is seen); ``base`` is the ``seq`` of the history's first
    message (above 0 once a sliding window dropped its oldest messages). ``taken_from``
    names the previous owner when its lease had lapsed (a takeover).
    """

    state: StateRecord
    samples: dict[int, MessageRow]
    taken_from: str | None = None
    base: int = 0


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One durable save of a session, fenced by ``epoch`` and ``expected_version``.

    ``rewrite_from`` is ``None`` for an append (only ``new_messages`` are inserted, from
    ``first_seq`` on); otherwise every stored message at ``seq >= rewrite_from`` is
    replaced. ``drop_before`` deletes the messages at ``seq < drop_before`` (a sliding
    window's oldest); ``window_start`` is the ``seq`` of the history's first message after
    the checkpoint (the messages of a session are always ``seq`` ``window_start`` ...
    ``window_start + message_count - 1``).
    """

    session_id: str
    epoch: int
    expected_version: int
    context_json: str
    plan_json: str | None
    set_plan: bool
    phase: str
    step: int | None
    now: datetime
    expires_at: datetime
    first_seq: int
    new_messages: list[MessageRow]
    rewrite_from: int | None = None
    drop_before: int | None = None
    window_start: int = 0

    @property
    def message_count(self) -> int:
        """The length of the history after this checkpoint."""
        return self.first_seq + len(self.new_messages) - self.window_start


@dataclass(frozen=True, slots=True)
class SessionDocument:
    """A whole session as loaded: its row, its state and its history."""

    session_id: str
    user_id: str | None
    name: str
    config: dict[str, Any]
    created_at: datetime
    last_active_at: datetime | None
    state: StateRecord
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """One row of :meth:`Store.list_sessions` / :meth:`Store.session_info`."""

    session_id: str
    name: str
    user_id: str | None
    config: dict[str, Any]
    created_at: datetime
    last_active_at: datetime | None
    mode: str | None
    status: str | None
    current_phase: str | None
    current_step: int | None
    updated_at: datetime | None
    version: int | None
    message_count: int | None
    owner: str | None
    lease_expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """An approval request."""

    approval_id: str
    session_id: str
    approval_type: str
    context: dict[str, Any]
    status: str
    resolution: str | None
    result: Any
    created_at: datetime
    expires_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class SweepCounts:
    """What one cleanup pass of the store changed."""

    expired_sessions: list[str]
    approvals_expired: int
    connections_removed: int
    #: Completed and expired sessions deleted because they were older than the retention.
    sessions_purged: int = 0
    #: Another process swept within the interval: this pass changed nothing.
    skipped: bool = False
