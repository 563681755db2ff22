"""What many live actors cost: create + first save with N live actors, and memory per actor.

Each live session is an actor (with a thread only while it has queued work: see
``actors/_mailbox.py``). This bench fills a manager with ``N``
live actors (created, each saved once), then times ``create_session`` + the first
``save_session_state`` of new sessions (median of ``--samples``), for a few ``N``, and
prints the ratio to the smallest ``N``, and the resident memory each live actor adds.

Run: ``python -m benchmarks.live_actors_bench [--live 10,5000] [--samples 200] [--rounds 3]``
(``--url``: a database, default a SQLite file in a temporary directory). Each count runs
``--rounds`` times in turn (medians shown), as figures are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

from actors import create_session_manager

_HISTORY = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]


def _rss_kib() -> int:
    """This process's resident memory (Linux), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure(url: str, live: int, samples: int) -> dict[str, float]:
    """Median create + first save with ``live`` actors live; RSS and threads per actor."""
    manager = create_session_manager(
        url, max_live=live + samples + 10, idle_timeout=timedelta(hours=1)
    )
    try:
        rss_before, threads_before = _rss_kib(), threading.active_count()
        for n in range(live):
            sid = manager.create_session("bench", {"n": n})
            manager.save_session_state(sid, _HISTORY, {"n": n}, "warm", 1)
        rss_after, threads_after = _rss_kib(), threading.active_count()
        timings = []
        for n in range(samples):
            started = time.perf_counter()
            sid = manager.create_session("bench", {"n": n})
            saved = manager.save_session_state(sid, _HISTORY, {"n": n}, "first", 1)
            timings.append(time.perf_counter() - started)
            if not saved:
                raise RuntimeError(f"save refused with {live} live actors")
        if len(manager.live_sessions()) != live + samples:
            raise RuntimeError("actors were passivated during the run: the figures are off")
    finally:
        manager.close()
    return {
        "live": live,
        "median_ms": statistics.median(timings) * 1000,
        "p90_ms": statistics.quantiles(timings, n=10)[-1] * 1000,
        "rss_kib_per_actor": (rss_after - rss_before) / live if live else 0.0,
        "threads_per_actor": (threads_after - threads_before) / live if live else 0.0,
    }


def main() -> None:
    """Print the figures and the ratio to the smallest ``--live``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--live", default="10,5000", help="comma-separated live actor counts")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="each count this often, in turn")
    parser.add_argument("--url", default=None, help="database URL (default: a SQLite file)")
    args = parser.parse_args()
    counts = [int(part) for part in args.live.split(",")]
    runs: dict[int, list[dict[str, float]]] = {live: [] for live in counts}
    with tempfile.TemporaryDirectory() as tmp:
        # In turn, so that a neighbour's load on a shared machine weighs on every count.
        for round_ in range(args.rounds):
            for live in counts:
                url = args.url or f"sqlite:///{Path(tmp) / f'live_{round_}_{live}.db'}"
                runs[live].append(measure(url, live, args.samples))
    rows = {
        live: {key: statistics.median(run[key] for run in found) for key in found[0]}
        for live, found in runs.items()
    }
    base = rows[counts[0]]["median_ms"]
    print(f"{'live':>6} {'median ms':>10} {'p90 ms':>8} {'ratio':>6} {'KiB/actor':>10}")
    for row in rows.values():
        print(
            f"{row['live']:>6.0f} {row['median_ms']:>10.3f} {row['p90_ms']:>8.3f}"
            f" {row['median_ms'] / base:>6.2f} {row['rss_kib_per_actor']:>10.1f}"
        )
    print(f"ratio {rows[counts[-1]]['median_ms'] / base:.2f}")


if __name__ == "__main__":
    main()
