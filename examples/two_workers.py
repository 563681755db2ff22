"""Two worker processes share sessions on PostgreSQL; one is killed, the other carries on.

Run it (PostgreSQL on 127.0.0.1:5432, user ``postgres``)::

    python examples/two_workers.py
    python examples/two_workers.py --database-url postgresql://user@host/db

Without ``--database-url`` (or ``$SESSIONS_DATABASE_URL``) it creates a fresh database
``session_supervisor_two_workers`` on the local server.

What happens:

1. Six sessions are created. ``worker-1`` and ``worker-2`` (separate processes, the same
   script) each take three and checkpoint them a step at a time. Each also keeps trying
   to take the other's sessions: the lease of a live owner refuses it.
2. ``worker-1`` is killed with SIGKILL (``kill -9``): no goodbye, no release.
3. Once its leases lapse (``lease_ttl``, 2 s here), ``worker-2`` takes its sessions over
   and continues each from its last acknowledged checkpoint.
4. The parent checks that no step ``worker-1`` acknowledged was lost.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any

from actors import SessionOwnedElsewhere, create_session_manager

LEASE_TTL = timedelta(seconds=2)
DEMO_DATABASE = "session_supervisor_two_workers"
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432"
ROUND_SECONDS = 0.2
ACK = re.compile(r"^(worker-\d): checkpointed (.*)$")
PICKED = re.compile(r"^(worker-\d): picked up session (\w+) from (\S+) at step (\d+)")


# --------------------------------------------------------------------------- worker


def _short(session_id: str) -> str:
    return session_id[:8]


def run_worker(name: str, url: str, mine: list[str], everyone: list[str]) -> int:
    """Checkpoint the sessions this worker owns; take over any whose owner went away."""
    stop = threading.Event()

    def wait_for_end_of_stdin() -> None:  # the parent closes our stdin to stop us
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_end_of_stdin, daemon=True).start()
    # No hand-off on demand (handoff_wait=0): this demo shows what leases alone do when a
    # worker dies; examples/several_workers.py shows live workers handing sessions over.
    manager = create_session_manager(url, instance_id=name, lease_ttl=LEASE_TTL, handoff_wait=0)
    steps: dict[str, int] = {}
    histories: dict[str, list[dict[str, Any]]] = {}

    def take(session_id: str, *, orphans_only: bool = False) -> bool:
        previous = manager.info(session_id)["owner"]
        if orphans_only and previous is None:
            return False  # nobody's yet: left for the worker it was given to
        try:
            manager.live(session_id)  # takes the lease, or is refused while another holds it
        except SessionOwnedElsewhere:
            return False
        state = manager.load(session_id)
        steps[session_id] = int(state["context_variables"].get("step", 0))
        histories[session_id] = state["conversation_history"]
        if previous not in (None, name):
            print(
                f"{name}: picked up session {_short(session_id)} from {previous}"
                f" at step {steps[session_id]} (its last checkpoint)",
                flush=True,
            )
        return True

    try:
        for session_id in mine:
            take(session_id)
        print(f"{name}: owns {', '.join(_short(s) for s in steps)}", flush=True)
        while not stop.is_set():
            done = []
            for session_id in list(steps):
                step = steps[session_id] + 1
                history = [*histories[session_id], {"role": "assistant", "content": f"{step}"}]
                context = {"step": step, "writer": name}
                if manager.save_session_state(session_id, history, context, f"step-{step}"):
                    steps[session_id], histories[session_id] = step, history
                    done.append(f"{_short(session_id)}@{step}")
                else:  # taken over (we were paused too long): not ours any more
                    print(f"{name}: lost session {_short(session_id)}", flush=True)
                    del steps[session_id], histories[session_id]
            print(f"{name}: checkpointed {' '.join(done)}", flush=True)
            for session_id in everyone:  # a session whose owner went away is ours to carry on
                if session_id not in steps:
                    take(session_id, orphans_only=True)
            stop.wait(ROUND_SECONDS)
    finally:
        manager.close()
    print(f"{name}: closed, its leases released", flush=True)
    return 0


# --------------------------------------------------------------------------- parent


def _demo_database() -> str:
    """Create a fresh demo database on the local server; return its URL."""
    import psycopg  # noqa: PLC0415 - only for the default

    with psycopg.connect(f"{LOCAL_SERVER}/postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
    return f"postgresql://postgres@127.0.0.1:5432/{DEMO_DATABASE}"


class Worker:
    """A worker process whose output the parent relays and keeps track of."""

    def __init__(self, name: str, url: str, mine: list[str], everyone: list[str]) -> None:
        self.name = name
        self.acked: dict[str, int] = {}  # short id -> last step acknowledged
        self.picked: dict[str, tuple[str, int, float]] = {}  # short id -> (from, step, when)
        self.lock = threading.Lock()
        command = [
            sys.executable, __file__, "--worker", name, "--database-url", url,
            "--mine", ",".join(mine), "--everyone", ",".join(everyone),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.relay = threading.Thread(target=self._relay, daemon=True)
        self.relay.start()

    def _relay(self) -> None:
        for line in self.process.stdout or ():
            print(f"  {line.rstrip()}", flush=True)
            with self.lock:
                if match := ACK.match(line.strip()):
                    for item in match.group(2).split():
                        short, step = item.split("@")
                        self.acked[short] = int(step)
                elif match := PICKED.match(line.strip()):
                    when = time.monotonic()
                    self.picked[match.group(2)] = (match.group(3), int(match.group(4)), when)

    def wait(self, ready: Any, timeout: float, what: str) -> None:
        """Poll until ``ready(self)`` (or fail after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if ready(self):
                    return
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"{self.name}: no {what} within {timeout}s")
            time.sleep(0.05)


def run_demo(url: str) -> int:
    """Start two workers, kill one, and check that the other lost nothing."""
    with create_session_manager(url, instance_id="setup") as manager:
        sessions = [manager.create_session("worker-demo", {}, "demo") for _ in range(6)]
    where = url.rsplit("@", maxsplit=1)[-1]
    print(f"created 6 sessions on {where}; lease_ttl={LEASE_TTL.total_seconds()}s")
    one = Worker("worker-1", url, sessions[:3], sessions)
    two = Worker("worker-2", url, sessions[3:], sessions)
    workers = [one, two]
    try:
        for worker in workers:
            worker.wait(lambda w: min(w.acked.values(), default=0) >= 3, 60, "three steps")
        victims = [_short(s) for s in sessions[:3]]
        one.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        one.process.wait(10)
        one.relay.join(10)  # it reads the dead worker's pipe to its end: every ack it wrote
        with one.lock:
            acked = {short: one.acked[short] for short in victims}
        print(f"killed worker-1 (kill -9); its last acknowledged steps: {acked}")
        print("worker-2 waits for worker-1's leases to lapse ...")
        two.wait(lambda w: set(victims) <= set(w.picked), 30, "takeover of worker-1's sessions")
        with two.lock:
            picked = dict(two.picked)
        takeover = max(when for _, _, when in picked.values()) - killed_at
        lost = {s: acked[s] - picked[s][1] for s in victims if picked[s][1] < acked[s]}
        two.wait(
            lambda w: all(w.acked.get(s, 0) >= picked[s][1] + 2 for s in victims),
            30,
            "progress on the sessions it picked up",
        )
        two.process.stdin.close()  # type: ignore[union-attr]
        if two.process.wait(30) != 0:
            return 1
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait(10)
    with create_session_manager(url, instance_id="audit") as manager:
        writers = {manager.load(s)["context_variables"]["writer"] for s in sessions}
    print(f"worker-2 picked up worker-1's 3 sessions {takeover:.2f}s after the kill")
    print(f"every session was last written by: {', '.join(sorted(writers))}")
    if lost:
        print(f"LOST acknowledged checkpoints: {lost}")
        return 1
    print("no acknowledged checkpoint lost: each session resumed at its last acknowledged step")
    return 0


def main(argv: list[str]) -> int:
    """Run the demo (or, with ``--worker``, one of its workers)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("SESSIONS_DATABASE_URL"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--mine", default="", help=argparse.SUPPRESS)
    parser.add_argument("--everyone", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        everyone = args.everyone.split(",")
        return run_worker(args.worker, args.database_url, args.mine.split(","), everyone)
    return run_demo(args.database_url or _demo_database())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
