"""Real worker processes (``worker.py``) on one database, and the tools to watch them.

Every process a test starts is killed in the fixture's teardown, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actors import create_session_manager

WORKER = Path(__file__).with_name("worker.py")
POLL_SECONDS = 0.02

Event = dict[str, Any]


def _json_lines(path: Path) -> list[Event]:
    """The complete JSON lines of a file that another process is still appending to."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    return [json.loads(line) for line in lines if line.endswith("\n") and line.startswith("{")]


class Worker:
    """One worker process: its events, its log and the signals a test sends it."""

    def __init__(self, name: str, process: subprocess.Popen[str], events: Path, log: Path) -> None:
        self.name = name
        self.process = process
        self.events_path = events
        self.log_path = log

    def events(self, kind: str | None = None) -> list[Event]:
        """What the worker reported so far (only ``kind`` events if given)."""
        found = _json_lines(self.events_path)
        return found if kind is None else [e for e in found if e["event"] == kind]

    def logs(self, event: str) -> list[Event]:
        """The structlog events named ``event`` the worker logged on stderr."""
        return [e for e in _json_lines(self.log_path) if e.get("event") == event]

    def wait_for(
        self, ready: Callable[[list[Event]], bool], timeout: float, what: str
    ) -> list[Event]:
        """Poll the events until ``ready(events)``; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events()
            if ready(found):
                return found
            if self.process.poll() is not None and not ready(self.events()):
                pytest.fail(
                    f"{self.name} exited ({self.process.returncode}) before {what}:"
                    f" {self.log_path.read_text(encoding='utf-8')[-3000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: no {what} within {timeout}s; events: {found[-10:]}")
            time.sleep(POLL_SECONDS)

    def wait_for_log(self, event: str, session_ids: set[str], timeout: float) -> list[Event]:
        """Poll the worker's log until it logged ``event`` for each of ``session_ids``."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.logs(event)
            if session_ids <= {e.get("session_id") for e in found}:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} did not log {event} for {session_ids} in {timeout}s")
            time.sleep(POLL_SECONDS)

    def send(self, command: str) -> None:
        """Send one command line on the worker's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def signal(self, signum: signal.Signals) -> None:
        """Send a signal (SIGKILL, SIGSTOP, SIGCONT ...)."""
        self.process.send_signal(signum)

    def kill(self) -> float:
        """``kill -9`` the worker; return the time of the kill."""
        self.process.kill()
        killed_at = time.time()
        self.process.wait(timeout=10)
        return killed_at

    def quit(self, timeout: float = 20.0) -> int:
        """Ask the worker to close its manager and exit; return its exit code."""
        self.send("quit")
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(timeout=timeout)


WorkerFactory = Callable[..., Worker]


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start worker processes; each is killed (and reaped) after the test."""
    started: list[Worker] = []

    def start(mode: str, name: str, url: str, ids: list[str], *options: str) -> Worker:
        sessions = tmp_path / f"{name}.ids"
        sessions.write_text("\n".join(ids), encoding="utf-8")
        events, log = tmp_path / f"{name}.events", tmp_path / f"{name}.log"
        command = [
            sys.executable, str(WORKER), mode, "--url", url, "--instance", name,
            "--sessions", str(sessions), "--events", str(events), *options,
        ]  # fmt: skip
        with log.open("w", encoding="utf-8") as stderr:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
                cwd=tmp_path,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        worker = Worker(name, process, events, log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()  # SIGKILL ends a stopped (SIGSTOP) process too
        worker.process.wait(timeout=10)
        if worker.process.stdin is not None:
            worker.process.stdin.close()


def create_sessions(url: str, count: int) -> list[str]:
    """``count`` fresh sessions, created by a manager that closes (releasing its leases)."""
    with create_session_manager(url, instance_id="creator") as manager:
        return [manager.create_session("worker", {"n": n}, "u1") for n in range(count)]
