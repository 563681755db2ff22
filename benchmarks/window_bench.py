"""Sliding-window saves next to append saves, and the cost of ``history_check="full"``.

Run with ``python -m benchmarks.window_bench [--saves N] [--window W] [--no-postgres]``.
A task executor saves ``buffer[-100:]`` after every step of two ~500-byte messages (the
workload of ``checkpoint_bench``). Once the window slides, such a save deletes the two
rows that fell out and appends the two new ones; this prints its median cost next to an
append save (the same history growing by two messages, without a window) and next to the
whole window stored again (``history_rewritten=True``: what every such save cost before),
each with the default sampled detection and with ``history_check="full"``, on a SQLite
file and on PostgreSQL (a throwaway database, dropped at the end).

Target (issue 16): a sliding-window save costs at most 1.5x an append save.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors import SessionManager, create_session_manager
from benchmarks._pg import DEFAULT_ADMIN_URL, throwaway_database
from benchmarks._workload import Workload

TARGET = 1.5
History = list[dict[str, Any]]


def _median_us(
    manager: SessionManager, save: Callable[[str, list[dict[str, Any]]], Any], shape: str,
    saves: int, window: int,
) -> float:  # fmt: skip
    """Median microseconds of ``saves`` saves of one session, after a warm-up."""
    workload = Workload()
    session_id = manager.create_session("copilot", {})
    buffer: list[dict[str, Any]] = []
    # Warm-up: the window is full (and has slid) before the timed saves start.
    steps = window // 2 + 10
    timings: list[float] = []
    for step in range(steps + saves):
        buffer += workload.messages(0, step)
        sent = buffer[-window:] if shape != "append" else buffer
        started = time.perf_counter()
        save(session_id, sent)
        if step >= steps:
            timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1e6


def measure(url: str, saves: int, window: int) -> dict[str, float]:
    """The medians of one database, in microseconds, by row name."""
    rows: dict[str, float] = {}
    for check in ("sampled", "full"):
        with create_session_manager(url, history_check=check) as manager:

            def plain(sid: str, history: History, m: SessionManager = manager) -> Any:
                return m.checkpoint(sid, history, {"k": 1}, "execution")

            def rewrite(sid: str, history: History, m: SessionManager = manager) -> Any:
                return m.checkpoint(sid, history, {"k": 1}, "execution", history_rewritten=True)

            gc.collect()
            rows[f"append ({check})"] = _median_us(manager, plain, "append", saves, window)
            rows[f"window ({check})"] = _median_us(manager, plain, "window", saves, window)
            if check == "sampled":
                rows["window stored whole"] = _median_us(manager, rewrite, "window", saves, window)
    return rows


def report(name: str, rows: dict[str, float], window: int, saves: int) -> None:
    """Print one database's table and the target."""
    base = rows["append (sampled)"]
    grown = (window // 2 + 10) * 2
    print(f"\n{name}: window {window} messages; the append rows' history grows from")
    print(f"{grown} to {grown + 2 * saves} messages; median of {saves} saves")
    print(f"  {'save':<24}{'us':>10}{'x append':>10}")
    for row, value in rows.items():
        print(f"  {row:<24}{value:>10.0f}{value / base:>10.2f}")
    ratio = rows["window (sampled)"] / base
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(f"  target: a window save <= {TARGET}x an append save: {ratio:.2f}x, {verdict}")


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saves", type=int, default=300, help="timed saves per row")
    parser.add_argument("--window", type=int, default=100, help="messages in the window")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--pg-admin-url", default=DEFAULT_ADMIN_URL)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'window.db'}"
        report("SQLite", measure(url, args.saves, args.window), args.window, args.saves)
    if not args.no_postgres:
        with throwaway_database(args.pg_admin_url) as url:
            rows = measure(url, args.saves, args.window)
            report("PostgreSQL", rows, args.window, args.saves)


if __name__ == "__main__":
    main()
