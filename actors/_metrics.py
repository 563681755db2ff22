"""Checkpoint latency, measured at the façade in a small bounded ring buffer."""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any

RING_SIZE = 1024
"""How many of the latest checkpoint latencies the percentiles are computed over."""


def percentile(samples: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of ``samples`` (``None`` when there are none).

    Example:
        >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5)
        2.0
    """
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class CheckpointTimings:
    """Counts checkpoints and keeps the latest latencies; safe from any thread.

    A checkpoint's latency is the time a caller waits for it: from the façade call until
    the database committed it (actor queue, group commit and fsync included).
    """

    def __init__(self, size: int = RING_SIZE) -> None:
        self._lock = threading.Lock()
        self._latest: deque[float] = deque(maxlen=size)
        self._count = 0
        self._failed = 0

    def record(self, seconds: float) -> None:
        """Note one acknowledged checkpoint that took ``seconds``."""
        with self._lock:
            self._count += 1
            self._latest.append(seconds)

    def failed(self) -> None:
        """Note one checkpoint that was refused or failed."""
        with self._lock:
            self._failed += 1

    def snapshot(self) -> dict[str, Any]:
        """``checkpoints``, ``checkpoints_failed``, ``checkpoint_p50_ms``, ``checkpoint_p99_ms``.

        The percentiles cover the latest :data:`RING_SIZE` checkpoints; ``None`` before
        the first one.
        """
        with self._lock:
            latest = list(self._latest)
            count, failed = self._count, self._failed
        p50, p99 = percentile(latest, 0.50), percentile(latest, 0.99)
        return {
            "checkpoints": count,
            "checkpoints_failed": failed,
            "checkpoint_p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "checkpoint_p99_ms": None if p99 is None else round(p99 * 1000, 3),
        }
