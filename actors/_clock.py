"""Injected time: every comparison of times goes through a ``Clock``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]
"""A callable returning the current time as an aware UTC datetime."""


#: "Never" as a stored deadline (``session_ttl=timedelta.max``): far past any real one,
#: yet a plain date on both backends, a year short of ``datetime.max`` so that no time
#: zone conversion overflows.
NEVER = datetime(9999, 1, 1, tzinfo=UTC)
#: The other end: every real time is after it.
DAWN = datetime(1, 1, 2, tzinfo=UTC)


def utc_now() -> datetime:
    """The real current time, aware UTC."""
    return datetime.now(UTC)


def later(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, saturated at :data:`NEVER` (a "never" duration never overflows)."""
    try:
        result = moment + delta
    except OverflowError:
        return NEVER
    return min(result, NEVER)


def earlier(moment: datetime, delta: timedelta) -> datetime:
    """``moment - delta``, saturated at :data:`DAWN`."""
    try:
        result = moment - delta
    except OverflowError:
        return DAWN
    return max(result, DAWN)


class ManualClock:
    """A clock that only moves when told to; for tests and simulations.

    Example:
        >>> clock = ManualClock()
        >>> start = clock()
        >>> clock.advance(hours=25)
        >>> clock() - start
        datetime.timedelta(days=1, seconds=3600)
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2030, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            msg = "ManualClock needs an aware datetime"
            raise ValueError(msg)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        """The clock's current time."""
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move the clock forward by ``delta`` (or ``timedelta(**kwargs)``)."""
        step = delta if delta is not None else timedelta(**kwargs)
        with self._lock:
            self._now += step
            return self._now
