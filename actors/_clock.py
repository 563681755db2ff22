"""Injected time: every comparison of times goes through a ``Clock``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]
"""A callable returning the current time as an aware UTC datetime."""


def utc_now() -> datetime:
    """The real current time, aware UTC."""
    return datetime.now(UTC)


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
