"""A save's inputs taken at the call: what a caller changes afterwards is never stored.

A save that runs at once (inline, the actor idle) reads the caller's objects while the
caller waits. One that must wait in the actor's inbox is made a snapshot first, in the
caller's thread: a shallow copy of the history list (the caller may append to or truncate
its list) and the messages the actor does not have yet, encoded now (the caller may edit
a message dict in place). No deep copy: the cost stays flat in the history's length, but
for the copy of the list.
"""

from __future__ import annotations

from dataclasses import replace

from actors._messages import Save
from persistence import SessionSupervisorError, encode_message
from persistence._json import unreadable


def snapshot_save(save: Save, known: int, limit: int | None) -> Save:
    """``save`` with a copy of its history and ``history[known:]`` encoded.

    Args:
        save: the caller's save.
        known: how many messages the session stores (a hint: checked when it runs).
        limit: ``max_message_bytes``.

    Raises:
        NotSerializable, PayloadTooLarge, InvalidArgument: a new message is not valid;
            nothing was queued.
    """
    if save.encoded is not None:
        return save
    history = list(save.history)
    first = min(known, len(history))
    try:
        rows = [
            encode_message(item, f"conversation_history[{first + offset}]", limit)
            for offset, item in enumerate(history[first:])
        ]
    except SessionSupervisorError:
        raise
    except Exception as exc:
        raise unreadable("conversation_history", exc) from exc
    return replace(save, history=history, encoded_from=first, encoded=rows)
