"""A worker process for the multi-process tests: one SessionManager, driven from outside.

The tests start it with ``python worker.py MODE ...`` and read what it did from an events
file, one JSON object a line, each written (and flushed) *after* the action it reports:
an ``ack`` line means the checkpoint is committed, so a ``kill -9`` right after it must
not lose it. Commands arrive on stdin, one a line.

Modes:
    race: wait for ``go``; then several threads each try to take every session (in the
        same order, to collide as much as possible) and, when it is theirs, checkpoint it
        once; report ``took`` / ``refused`` per session, then ``done``; hold the sessions
        until ``quit``.
    own: take every session, polling until each is free (``waiting`` once the first try
        was refused, then ``took`` and ``loaded`` per session); then checkpoint them all
        in a loop (``--continuous``) or one round per ``step typed`` / ``step seed``
        command, reporting ``ack`` / ``refused`` per session and ``live`` after a step;
        ``quit`` closes the manager.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from actors import (
    SessionManager,
    SessionOwnedElsewhere,
    SessionSupervisorError,
    configure_logging,
    create_session_manager,
)

_POLL_SECONDS = 0.02


class Events:
    """The events file: one JSON object a line, flushed as it is written."""

    def __init__(self, path: Path) -> None:
        self._file: TextIO = path.open("a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        """Write one event (after the fact it reports)."""
        line = json.dumps({"event": event, "at": time.time(), **fields})
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


class Conversation:
    """What the worker keeps of one session: its history and step counter."""

    def __init__(self, history: list[dict[str, Any]], step: int) -> None:
        self.history = history
        self.step = step


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["race", "own"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--sessions", required=True, help="a file of session ids, one a line")
    parser.add_argument("--events", required=True, type=Path)
    parser.add_argument("--lease-ttl", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--continuous", action="store_true")
    parser.add_argument("--pace", type=float, default=0.01, help="seconds between rounds")
    parser.add_argument("--take-timeout", type=float, default=20.0)
    # Off by default: these workers show the leases themselves (see test_handoff.py).
    parser.add_argument("--handoff-wait", type=float, default=0.0)
    return parser.parse_args(argv)


def _race(
    manager: SessionManager, instance: str, ids: list[str], events: Events, threads: int
) -> None:
    taken: set[str] = set()
    lock = threading.Lock()

    def attempt(offset: int) -> None:
        for index in range(len(ids)):
            session_id = ids[(index + offset) % len(ids)]
            try:
                epoch = manager.live(session_id).epoch
                version = manager.checkpoint(session_id, [], {"owner": instance}, "race")
            except SessionOwnedElsewhere as error:
                events.emit("refused", sid=session_id, owner=error.owner)
                continue
            except SessionSupervisorError as error:
                events.emit("failed", sid=session_id, error=repr(error))
                continue
            with lock:
                if session_id in taken:
                    continue
                taken.add(session_id)
            events.emit("took", sid=session_id, epoch=epoch, version=version)

    # Threads start at nearby offsets: most sessions are wanted by several at once.
    workers = [threading.Thread(target=attempt, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    events.emit("done", taken=len(taken))


def _take_all(
    manager: SessionManager, ids: list[str], events: Events, timeout: float
) -> dict[str, Conversation]:
    """Take every session as soon as its lease is free; load where its owner left it."""
    owned: dict[str, Conversation] = {}
    waiting_reported = False
    deadline = time.monotonic() + timeout
    while len(owned) < len(ids):
        for session_id in ids:
            if session_id in owned:
                continue
            try:
                live = manager.live(session_id)
            except SessionOwnedElsewhere as error:
                if not waiting_reported:
                    events.emit("waiting", sid=session_id, owner=error.owner)
                    waiting_reported = True
                continue
            except SessionSupervisorError as error:  # e.g. a busy SQLite file: try again
                events.emit("retry", sid=session_id, error=repr(error))
                continue
            state = manager.load(session_id)
            step = int(state["context_variables"].get("step", 0))
            owned[session_id] = Conversation(state["conversation_history"], step)
            events.emit("took", sid=session_id, epoch=live.epoch)
            events.emit("loaded", sid=session_id, step=step, version=state["version"])
        if len(owned) < len(ids):
            if time.monotonic() > deadline:
                events.emit("gave_up", missing=sorted(set(ids) - set(owned)))
                return owned
            time.sleep(_POLL_SECONDS)
    return owned


def _step(
    manager: SessionManager, instance: str, owned: dict[str, Conversation], events: Events, api: str
) -> None:
    """Checkpoint every owned session once, reporting each outcome after it happened."""
    for session_id, talk in owned.items():
        step = talk.step + 1
        history = [*talk.history, {"role": "assistant", "content": f"{instance} step {step}"}]
        context = {"step": step, "writer": instance}
        if api == "seed":
            ok = manager.save_session_state(session_id, history, context, f"step-{step}", step)
            if not ok:
                events.emit("refused", sid=session_id, step=step, api=api, result=ok)
                continue
        else:
            try:
                manager.checkpoint(session_id, history, context, f"step-{step}", step)
            except SessionOwnedElsewhere as error:
                events.emit("refused", sid=session_id, step=step, api=api, owner=error.owner)
                continue
            except SessionSupervisorError as error:
                events.emit("failed", sid=session_id, step=step, error=type(error).__name__)
                continue
        talk.history, talk.step = history, step
        events.emit("ack", sid=session_id, step=step)


def _own(manager: SessionManager, args: argparse.Namespace, ids: list[str], events: Events) -> None:
    owned = _take_all(manager, ids, events, args.take_timeout)
    if args.continuous:
        quit_requested = threading.Event()
        threading.Thread(target=_wait_for_quit, args=(quit_requested,), daemon=True).start()
        while not quit_requested.is_set():
            _step(manager, args.instance, owned, events, "typed")
            time.sleep(args.pace)
        return
    for line in sys.stdin:
        command = line.split()
        if command[:1] == ["quit"]:
            return
        if command[:1] == ["step"]:
            _step(manager, args.instance, owned, events, command[1] if len(command) > 1 else "")
            events.emit("live", sessions=manager.live_sessions())


def _wait_for_quit(requested: threading.Event) -> None:
    for line in sys.stdin:
        if line.strip() == "quit":
            break
    requested.set()


def main(argv: list[str]) -> int:
    """Run one worker until ``quit`` (or end of stdin)."""
    args = _parse(argv)
    # Log events as JSON lines on stderr: the tests look for lease.lost there.
    configure_logging(json=True, level="INFO", stream=sys.stderr)
    ids = Path(args.sessions).read_text(encoding="utf-8").split()
    events = Events(args.events)
    manager = create_session_manager(
        args.url,
        instance_id=args.instance,
        lease_ttl=timedelta(seconds=args.lease_ttl),
        call_timeout=15.0,
        handoff_wait=args.handoff_wait,
    )
    events.emit("ready", instance=args.instance, pid_sessions=len(ids))
    try:
        if args.mode == "race":
            for line in sys.stdin:
                if line.strip() == "go":
                    break
            _race(manager, args.instance, ids, events, args.threads)
            for line in sys.stdin:
                if line.strip() == "quit":
                    break
        else:
            _own(manager, args, ids, events)
    finally:
        manager.close()
        events.emit("closed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
