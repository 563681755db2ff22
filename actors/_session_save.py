"""What a session actor's save writes: plain functions from a request to a ``Checkpoint``.

The actor (:mod:`actors._session`) holds the state and the turn; these functions turn a
:class:`~actors._messages.Save` or :class:`~actors._messages.Append` into the rows and the
fenced update the store commits, and apply a committed checkpoint to the held state.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from actors._delta import Delta, StoredHistory
from actors._messages import Append, Save
from persistence import Checkpoint, SessionSupervisorError, StateRecord, encode_message
from persistence._json import unreadable

if TYPE_CHECKING:
    from actors._settings import Settings

# action -> (statuses it may start from, status it leads to, release the lease, event)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str, bool, str]] = {
    "suspend": (("active",), "suspended", False, "session.suspended"),
    "resume": (("suspended",), "active", False, "session.resumed"),
    "complete": (("active", "suspended"), "completed", True, "session.completed"),
    "expire": (("active",), "expired", True, "session.expired"),
}


def plan_save(history: StoredHistory, save: Save, max_message_bytes: int | None) -> Delta:
    """What ``save`` changes in the stored history: an append, a slide or a rewrite.

    Raises:
        InvalidArgument: a message the caller's own objects fail to read or encode.
    """
    pre_encoded = None if save.encoded is None else (save.encoded_from, save.encoded)
    try:
        return history.plan(save.history, save.rewritten, max_message_bytes, pre_encoded)
    except SessionSupervisorError:
        raise
    except Exception as exc:
        # The caller's own objects raised (a message whose items() fails): bad input,
        # refused like any other, not a crash of the actor.
        raise unreadable("conversation_history", exc) from exc


def plan_append(
    append: Append, state: StateRecord, known: int, max_message_bytes: int | None
) -> tuple[Save, Delta]:
    """``append`` as a save of the rest of the state and an append after ``known`` rows."""
    try:
        rows = [
            encode_message(message, f"messages[{offset}]", max_message_bytes)
            for offset, message in enumerate(append.messages)
        ]
    except SessionSupervisorError:
        raise
    except Exception as exc:
        raise unreadable("messages", exc) from exc
    step = state.current_step if append.step is None else append.step
    save = Save([], append.context_json, append.phase, step, None, set_plan=False)
    return save, Delta("append", known, rows)


def build_checkpoint(
    session_id: str,
    state: StateRecord,
    settings: Settings,
    request: tuple[Save, Delta, int],
    expected_version: int | None,
) -> Checkpoint:
    """The fenced write of ``request`` (save, delta, stored base) from the held ``state``.

    Values the caller left out are the stored ones, which the actor (the owner) holds.
    """
    save, delta, base = request
    now = settings.now()
    window_start = base + delta.dropped
    return Checkpoint(
        session_id=session_id,
        epoch=state.epoch,
        expected_version=state.version if expected_version is None else expected_version,
        context_json=state.context_json if save.context_json is None else save.context_json,
        plan_json=save.plan_json,
        set_plan=save.set_plan,
        phase=state.current_phase if save.phase is None else save.phase,
        step=save.step,
        now=now,
        expires_at=settings.expiry(now),
        first_seq=window_start + delta.first,
        new_messages=delta.rows,
        rewrite_from=window_start + delta.first if delta.rewrite else None,
        drop_before=window_start if delta.dropped else None,
        window_start=window_start,
    )


def apply_checkpoint(state: StateRecord, checkpoint: Checkpoint, version: int) -> dict[str, Any]:
    """Make the held ``state`` what ``checkpoint`` committed; return the fields to log."""
    phase_changed = checkpoint.phase != state.current_phase
    state.version = version
    state.message_count = checkpoint.message_count
    state.context_json = checkpoint.context_json
    if checkpoint.set_plan:
        state.plan_json = checkpoint.plan_json
    state.current_phase = checkpoint.phase
    state.current_step = checkpoint.step
    state.updated_at = checkpoint.now
    state.expires_at = checkpoint.expires_at
    return {"phase": checkpoint.phase, "phase_changed": phase_changed, "version": version}


def apply_transition(
    state: StateRecord, to_status: str, version: int, now: datetime, expires_at: datetime | None
) -> None:
    """Make the held ``state`` what a committed transition wrote."""
    state.status = to_status
    state.version = version
    state.updated_at = now
    state.expires_at = expires_at
