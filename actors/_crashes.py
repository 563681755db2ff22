"""The crash bookkeeping of the supervisor: recent crashes per session and the backoff.

Plain functions on a ``dict[session_id, Crashes]`` the supervisor owns (only its thread
touches it); times are on the injected clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from actors._errors import SessionFailed

if TYPE_CHECKING:
    from actors._settings import Settings

_MICROSECOND = timedelta(microseconds=1)


@dataclass
class Crashes:
    """The recent crashes of one session and its delayed restart, on the injected clock."""

    times: deque[datetime] = field(default_factory=deque)
    restart_at: datetime | None = None


def check(crashes: dict[str, Crashes], session_id: str, settings: Settings) -> None:
    """Forget crashes older than the window; raise if the session crashed too often.

    Raises:
        SessionFailed: ``max_restarts`` crashes within ``restart_window``.
    """
    record = crashes.get(session_id)
    if record is None:
        return
    window = settings.restart_window
    horizon = settings.now() - window
    while record.times and record.times[0] <= horizon:
        record.times.popleft()
    if len(record.times) >= settings.max_restarts:
        raise SessionFailed(session_id, len(record.times), window.total_seconds())
    if not record.times and record.restart_at is None:
        del crashes[session_id]


def backoff(settings: Settings, failures: int) -> timedelta:
    """The delay before the automatic restart after the ``failures``-th recent crash.

    The first crash is restarted at once (a one-off fault); each further crash in the
    window doubles the delay, up to ``restart_backoff_max``.
    """
    if failures <= 1:
        return timedelta(0)
    # In whole microseconds (Python ints): a long backoff doubled many times must not
    # overflow timedelta before the ceiling applies.
    base = settings.restart_backoff // _MICROSECOND
    ceiling = settings.restart_backoff_max // _MICROSECOND
    return timedelta(microseconds=min(base << min(failures - 2, 32), ceiling))


def summary(crashes: dict[str, Crashes], session_id: str, settings: Settings) -> dict[str, Any]:
    """A session's recent crashes: their count in the window and the pending restart."""
    record = crashes.get(session_id)
    if record is None:
        return {"recent_crashes": 0, "restart_at": None, "stopped": False}
    try:
        check(crashes, session_id, settings)
    except SessionFailed:
        stopped = True
    else:
        stopped = False
    return {
        "recent_crashes": len(record.times),
        "restart_at": record.restart_at,
        "stopped": stopped,
    }
