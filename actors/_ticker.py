"""A daemon thread that drives the supervisor's periodic work (pykka has no timers)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger("actors.ticker")


class Ticker:
    """Calls ``on_tick`` every ``interval`` seconds until stopped.

    The callback must not block for long: it should only send messages.
    """

    def __init__(self, interval: float, on_tick: Callable[[], None], name: str) -> None:
        self._interval = interval
        self._on_tick = on_tick
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def interval(self) -> float:
        """Seconds between two ticks."""
        return self._interval

    def start(self) -> None:
        """Start ticking."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._on_tick()
            except Exception as exc:  # noqa: BLE001 - a failed tick must not end the ticks
                log.warning("tick.failed", error=repr(exc))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop ticking and join the thread."""
        self._stopped.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
