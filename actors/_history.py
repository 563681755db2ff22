"""Saving without losing another caller's update: compare-and-set, and appends by the actor.

Several handlers that each load a session, add a message and save the whole list lose
each other's messages (the last save wins). Two remedies, plain functions of the
manager's :class:`~actors._core.Core`:

* ``checkpoint(..., expected_version=v)``: the version the caller loaded goes into the
  fenced update of the checkpoint, so the database refuses the save (``StaleSession``)
  when another one came first; of two such savers exactly one wins.
* :func:`append`: only the new messages go to the session's actor, which appends them
  after whatever is stored when it handles the request; appends from any number of
  threads are serialised by the actor's mailbox, and none is lost.
"""

from __future__ import annotations

import time
from typing import Any

from actors._core import Core
from actors._messages import Append
from actors._validate import require_step, require_str
from persistence import InvalidArgument, _json

#: Versions are stored in a 32-bit INTEGER column; a save sets ``expected + 1``.
_MAX_VERSION = 2**31 - 2


def require_version(value: Any) -> int | None:
    """An ``expected_version`` is ``None`` or a positive ``int`` (versions start at 1)."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        kind = type(value).__name__
        raise InvalidArgument(f"expected_version must be an int or None, not {kind}")
    if not 1 <= value <= _MAX_VERSION:
        raise InvalidArgument(f"expected_version must be 1 to {_MAX_VERSION}, not {value}")
    return int(value)


def append(  # noqa: PLR0917
    core: Core,
    session_id: str,
    messages: list[dict[str, Any]],
    context_variables: dict[str, Any] | None,
    current_phase: str | None,
    current_step: int | None,
) -> int:
    """Check the arguments, encode the context, and hand the append to the actor."""
    core.check_open()
    session_id = require_str("session_id", session_id)
    if current_phase is not None:
        current_phase = require_str("current_phase", current_phase, allow_empty=True)
    require_step(current_step)
    if not isinstance(messages, list):
        raise InvalidArgument(
            f"messages must be a list of message dicts, not {type(messages).__name__}"
        )
    try:
        # A copy: the caller may reuse its list while the request waits in the mailbox.
        messages = list(messages)
    except Exception as exc:
        raise _json.unreadable("messages", exc) from exc
    if context_variables is not None and not isinstance(context_variables, dict):
        raise InvalidArgument(
            f"context_variables must be a dict or None, not {type(context_variables).__name__}"
        )
    limit = core.settings.max_state_bytes
    context_json = (
        None
        if context_variables is None
        else _json.encode(context_variables, "context_variables", limit)
    )
    started = time.perf_counter()
    try:
        version: int = core.ask(
            session_id, Append(messages, context_json, current_phase, current_step), inline=True
        )
    except BaseException:
        core.checkpoint_timings.failed()
        raise
    core.checkpoint_timings.record(time.perf_counter() - started)
    return version
