"""A worker of the fleet test: an executor or a REST front end, on a shared database.

``python fleet_worker.py ROLE --url URL --instance NAME --sessions FILE --out FILE``; it
prints ``ready`` once its manager is open, waits for ``go`` on stdin, works for
``--seconds``, then writes what it saw as one JSON document to ``--out`` and exits.

Roles:
    executor: ``--threads`` threads, each saving a session of its own share every
        ``--pace`` seconds, the history growing by one message per acknowledged save.
        It records each acknowledged version, and the history it last had acknowledged.
    rest: ``--threads`` threads, each picking sessions at random: a read (``load``), or a
        ``suspend`` followed by a ``resume``. It records each acknowledged version and,
        for the writes on a session another process owned a moment before, their latency
        (the hand-off's).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

from actors import (
    InvalidTransition,
    SessionManager,
    SessionOwnedElsewhere,
    SessionSupervisorError,
    configure_logging,
    create_session_manager,
)


class Record:
    """What one worker saw, shared by its threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: list[tuple[str, int]] = []  # (session, version) of every acknowledged write
        self.handoffs: list[float] = []  # seconds, writes that needed a hand-off
        self.histories: dict[str, list[dict[str, Any]]] = {}
        self.counts: dict[str, int] = {}

    def count(self, what: str) -> None:
        """Count one outcome."""
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def ack(self, session_id: str, version: int, handoff: float | None = None) -> None:
        """Record an acknowledged write (and its latency, if it needed a hand-off)."""
        with self.lock:
            self.acked.append((session_id, version))
            if handoff is not None:
                self.handoffs.append(handoff)


def _owned_elsewhere(manager: SessionManager, session_id: str, me: str) -> bool:
    info = manager.info(session_id)
    return info["owner"] not in (None, me)


def _executor(
    manager: SessionManager, share: list[str], record: Record, stop: threading.Event, pace: float
) -> None:
    me = manager.instance_id
    histories = {sid: manager.load(sid)["conversation_history"] for sid in share}
    while not stop.is_set():
        for session_id in share:
            if stop.is_set():
                break
            history = [
                *histories[session_id],
                {"role": "assistant", "content": f"{me}:{time.time()}"},
            ]
            elsewhere = _owned_elsewhere(manager, session_id, me)
            started = time.monotonic()
            try:
                version = manager.checkpoint(session_id, history, {"by": me}, "run")
            except InvalidTransition:
                record.count("save_refused_suspended")  # a REST call suspended it meanwhile
            except SessionOwnedElsewhere:
                record.count("save_refused_owned")
            except SessionSupervisorError as error:
                record.count(f"save_failed_{type(error).__name__}")
                # Outcome unknown: start again from what the store holds.
                histories[session_id] = manager.load(session_id)["conversation_history"]
            else:
                took = time.monotonic() - started
                histories[session_id] = history
                record.ack(session_id, version, took if elsewhere else None)
                record.count("saves")
            stop.wait(pace)
    with record.lock:
        record.histories.update(histories)


def _rest(
    manager: SessionManager, ids: list[str], record: Record, stop: threading.Event, seed: str
) -> None:
    me = manager.instance_id
    pick = random.Random(seed)
    while not stop.is_set():
        session_id = pick.choice(ids)
        if pick.random() < 0.4:
            manager.load(session_id)
            record.count("reads")
            continue
        for action in ("suspend", "resume"):
            elsewhere = _owned_elsewhere(manager, session_id, me)
            started = time.monotonic()
            try:
                version = getattr(manager, action)(session_id)
            except InvalidTransition:
                record.count(f"{action}_not_applicable")
            except SessionOwnedElsewhere:
                record.count(f"{action}_refused_owned")
            except SessionSupervisorError as error:
                record.count(f"{action}_failed_{type(error).__name__}")
            else:
                took = time.monotonic() - started
                record.ack(session_id, version, took if elsewhere else None)
                record.count(action)
        stop.wait(0.05)


def main(argv: list[str]) -> int:
    """Run one worker: ready, go, work, report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["executor", "rest"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--sessions", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--pace", type=float, default=0.1)
    args = parser.parse_args(argv)
    configure_logging(level="WARNING", stream=sys.stderr)
    ids = args.sessions.read_text(encoding="utf-8").split()
    manager = create_session_manager(
        args.url, instance_id=args.instance, call_timeout=10.0, handoff_wait=2.0
    )
    record = Record()
    stop = threading.Event()
    if args.role == "executor":
        shares = [ids[n :: args.threads] for n in range(args.threads)]
        threads = [
            threading.Thread(target=_executor, args=(manager, share, record, stop, args.pace))
            for share in shares
        ]
    else:
        threads = [
            threading.Thread(
                target=_rest, args=(manager, ids, record, stop, f"{args.instance}/{n}")
            )
            for n in range(args.threads)
        ]
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()  # "go"
    for thread in threads:
        thread.start()
    time.sleep(args.seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    stats = manager.stats()
    manager.close()
    report = {
        "acked": record.acked,
        "handoffs": record.handoffs,
        "histories": record.histories,
        "counts": record.counts,
        "handed_over": stats["handoffs"],
        "refused_handoffs": stats["handoffs_refused"],
    }
    args.out.write_text(json.dumps(report), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
