"""Several worker processes serve the same sessions; any of them may be asked about any.

Run it::

    python examples/several_workers.py                       # a temporary SQLite file
    python examples/several_workers.py --database-url postgresql://user@host/db

The processes are started the way ``gunicorn --preload`` (or ``uvicorn --workers``) starts
them: this module is imported once, then the workers are forked, and each creates its
manager in its *startup hook*, after the fork (a manager made before it would refuse every
call with ``CreatedBeforeFork``); its shutdown hook closes it.

What happens:

1. The parent creates the sessions (with a manager it closes before forking).
2. ``worker-1`` is a task executor: it checkpoints a step of one session every 100 ms.
3. ``worker-2`` .. ``worker-4`` are REST front ends: they read sessions, and suspend and
   resume them. Each such write on a session another worker owns asks that worker to
   hand it over (hand-off on demand): it does at once, and the call goes on.
4. Every second each worker prints its progress; at the end the parent checks that every
   session holds the step the executor last had acknowledged, and prints the hand-off
   latencies.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from actors import (
    InvalidTransition,
    SessionManager,
    SessionSupervisorError,
    create_session_manager,
)

PACE = 0.1  # the executor's seconds between two checkpoints


# --------------------------------------------------------------------------- one worker


def startup(name: str, url: str) -> SessionManager:
    """The worker's startup hook: its own manager, created after the fork."""
    return create_session_manager(url, instance_id=name)


def shutdown(manager: SessionManager) -> None:
    """The worker's shutdown hook: release its sessions to the others, close the store."""
    manager.close()


def _progress(name: str, started: float, counts: dict[str, int], latencies: list[float]) -> str:
    parts = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
    middle = f", hand-off p50 {1000 * statistics.median(latencies):.0f} ms" if latencies else ""
    return f"[{time.monotonic() - started:4.1f}s] {name}: {parts or 'idle'}{middle}"


def _owned_by_another(manager: SessionManager, session_id: str) -> bool:
    return manager.info(session_id)["owner"] not in (None, manager.instance_id)


def _execute(manager: SessionManager, ids: list[str], seconds: float, report: Any) -> None:
    """Advance each session a step at a time, round robin, one checkpoint every PACE."""
    name = manager.instance_id
    steps = dict.fromkeys(ids, 0)
    counts: dict[str, int] = {}
    latencies: list[float] = []
    started = time.monotonic()
    next_print = started + 1
    turn = 0
    while time.monotonic() - started < seconds:
        session_id = ids[turn % len(ids)]
        turn += 1
        step = steps[session_id] + 1
        history = [{"role": "assistant", "content": f"step {n}"} for n in range(1, step + 1)]
        elsewhere = _owned_by_another(manager, session_id)
        began = time.monotonic()
        try:
            manager.checkpoint(session_id, history, {"step": step}, "execution", step)
        except InvalidTransition:  # a front end suspended it: its next turn goes on
            counts["skipped (suspended)"] = counts.get("skipped (suspended)", 0) + 1
        except SessionSupervisorError as error:
            print(f"{name}: step {step} of {session_id[:8]} refused: {error}", flush=True)
        else:
            steps[session_id] = step
            counts["steps"] = counts.get("steps", 0) + 1
            if elsewhere:
                latencies.append(time.monotonic() - began)
        if time.monotonic() >= next_print:
            print(_progress(name, started, counts, latencies), flush=True)
            next_print += 1
        time.sleep(PACE)
    report.put({"name": name, "steps": steps, "latencies": latencies})


def _serve(manager: SessionManager, ids: list[str], seconds: float, report: Any) -> None:
    """Answer "requests": read a session, or suspend and resume it."""
    name = manager.instance_id
    pick = random.Random(name)
    counts: dict[str, int] = {}
    latencies: list[float] = []
    started = time.monotonic()
    next_print = started + 1
    while time.monotonic() - started < seconds:
        session_id = pick.choice(ids)
        if pick.random() < 0.5:
            manager.load(session_id)
            counts["reads"] = counts.get("reads", 0) + 1
        else:
            for action in (manager.suspend, manager.resume):
                elsewhere = _owned_by_another(manager, session_id)
                began = time.monotonic()
                try:
                    action(session_id)
                except InvalidTransition:  # another front end got there first
                    continue
                counts["writes"] = counts.get("writes", 0) + 1
                if elsewhere:
                    latencies.append(time.monotonic() - began)
        if time.monotonic() >= next_print:
            print(_progress(name, started, counts, latencies), flush=True)
            next_print += 1
        time.sleep(0.05)
    report.put({"name": name, "steps": {}, "latencies": latencies})


def worker_main(name: str, url: str, ids: list[str], seconds: float, report: Any) -> None:
    """One worker process: startup hook, work, shutdown hook."""
    manager = startup(name, url)
    try:
        if name == "worker-1":
            _execute(manager, ids, seconds, report)
        else:
            _serve(manager, ids, seconds, report)
    finally:
        shutdown(manager)


# --------------------------------------------------------------------------- the parent


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(url: str, workers: int, sessions: int, seconds: float) -> int:
    """Create the sessions, fork the workers, check what they acknowledged."""
    with create_session_manager(url, instance_id="setup") as manager:
        ids = [manager.create_session("executor", {"n": n}) for n in range(sessions)]
    print(f"created {len(ids)} sessions; forking {workers} workers", flush=True)
    context = multiprocessing.get_context("fork")  # as gunicorn --preload does
    report = context.Queue()
    processes = [
        context.Process(target=worker_main, args=(f"worker-{n}", url, ids, seconds, report))
        for n in range(1, workers + 1)
    ]
    for process in processes:
        process.start()
    reports = [report.get(timeout=seconds + 60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    failed = [p.name for p in processes if p.exitcode != 0]
    steps = next(r["steps"] for r in reports if r["name"] == "worker-1")
    latencies = [x for r in reports for x in r["latencies"]]
    with create_session_manager(url, instance_id="auditor") as auditor:
        # A session the executor never reached still has no step (None).
        lost = [
            sid
            for sid, step in steps.items()
            if auditor.load(sid)["current_step"] != (step or None)
        ]
    print(f"executor: {sum(steps.values())} steps acknowledged", flush=True)
    if latencies:
        print(
            f"hand-offs: {len(latencies)}, p50 {1000 * statistics.median(latencies):.0f} ms,"
            f" p99 {1000 * _percentile(latencies, 0.99):.0f} ms",
            flush=True,
        )
    if failed or lost:
        print(f"FAILED: workers {failed}, sessions behind their last step {lost}", flush=True)
        return 1
    print("no acknowledged step lost", flush=True)
    return 0


def main() -> int:
    """Parse the arguments; use a temporary SQLite file unless a database is given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    if args.database_url is not None:
        return run(args.database_url, args.workers, args.sessions, args.seconds)
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'sessions.db'}"
        return run(url, args.workers, args.sessions, args.seconds)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
