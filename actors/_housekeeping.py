"""The manager's housekeeping: lease renewals, due restarts and the periodic sweep.

It runs on a daemon thread (a :class:`~actors._ticker.Ticker`) from the manager's creation,
so a host that never calls ``await manager.start()`` (no event loop, a plain script, a
thread pool) still gets idle actors passivated, TTLs and approval deadlines applied, and
leases released to other processes once their sessions went idle. The cadence is real
time (``time.monotonic``); every judgment (what is idle, expired, due) is the supervisor's,
on the injected clock.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pykka
import structlog

from actors._ticker import Ticker

log = structlog.get_logger("actors.manager")


class Housekeeping:
    """Ticks every ``min(cleanup_interval, lease_ttl / 3)``; sweeps every ``cleanup_interval``.

    Lease renewals and due restarts run on every tick once the thread runs; the sweep only
    while sweeping is on (from creation with ``autostart``, else from :meth:`start` until
    :meth:`pause`). There is at most one thread per manager, whatever is called how often.
    """

    def __init__(
        self, supervisor: Any, *, cleanup_interval: float, tick_interval: float, autostart: bool
    ) -> None:
        self._supervisor = supervisor
        self._cleanup_interval = cleanup_interval
        self._tick_interval = tick_interval
        self._lock = threading.Lock()
        self._running = False
        self._closed = False
        self._sweeping = False
        self._next_sweep = 0.0
        self._pending_sweep: pykka.Future[Any] | None = None
        self.ticker = Ticker(tick_interval, self.tick, name="session-supervisor-ticker")
        if autostart:
            self.start()

    @property
    def running(self) -> bool:
        """Whether the ticker thread runs."""
        return self._running

    @property
    def sweeping(self) -> bool:
        """Whether the periodic sweep is on."""
        return self._sweeping

    def start(self) -> bool:
        """Turn the periodic sweep on, starting the thread if it does not run yet.

        Returns:
            Whether anything changed (``False``: it already swept, or it is closed).
        """
        with self._lock:
            if self._closed or self._sweeping:
                return False
            self._sweeping = True
            # The first sweep one interval from now, as every later one.
            self._next_sweep = time.monotonic() + self._cleanup_interval
            if not self._running:
                self._running = True
                self.ticker.start()
            return True

    def pause(self) -> bool:
        """Turn the periodic sweep off; leases of live sessions are still renewed."""
        with self._lock:
            changed, self._sweeping = self._sweeping, False
            return changed

    def close(self) -> None:
        """Stop the thread (promptly: it waits on an event) and join it."""
        with self._lock:
            self._closed = True
            self._sweeping = False
        self.ticker.stop()

    def tick(self) -> None:
        """One tick: renew leases, restart what is due, sweep when an interval has passed.

        Each is a message to the supervisor; nothing here waits for it, but a sweep is not
        sent again while the previous one is still running.
        """
        if self._closed:
            return
        self._supervisor.renew_leases()
        self._supervisor.restart_due()
        if not self._sweeping or time.monotonic() < self._next_sweep:
            return
        pending = self._pending_sweep
        if pending is not None and not _done(pending):
            return
        self._next_sweep = time.monotonic() + self._cleanup_interval
        self._pending_sweep = self._supervisor.sweep(periodic=True)


def _done(future: pykka.Future[Any]) -> bool:
    """Whether a sweep sent earlier has finished (a failed one is logged)."""
    try:
        future.get(timeout=0)
    except pykka.Timeout:
        return False
    except Exception as exc:  # noqa: BLE001 - the next tick sweeps again
        log.warning("tick.failed", error=repr(exc))
    return True
