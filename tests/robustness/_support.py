"""Helpers shared by the robustness tests: snapshots, live actors, child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pykka

from actors import SessionActor, SessionManager

ROOT = Path(__file__).parents[2]
SCRIPTS = Path(__file__).parent / "scripts"
TIMEOUT = 10.0


def snapshot(manager: SessionManager, session_id: str) -> dict[str, Any]:
    """Everything stored about a session (its full loaded state and summary)."""
    return {"state": manager.load(session_id), "info": manager.info(session_id)}


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            msg = f"condition not met within {timeout}s"
            raise AssertionError(msg)
        time.sleep(0.005)


def live_refs(session_id: str) -> list[pykka.ActorRef[SessionActor]]:
    """The running actors of a session (at most one, unless something is wrong)."""
    found = []
    for ref in pykka.ActorRegistry.get_by_class(SessionActor):
        try:
            if ref.is_alive() and ref.proxy().session_id.get(timeout=TIMEOUT) == session_id:
                found.append(ref)
        except pykka.ActorDeadError:
            continue
    return found


def live_ref(session_id: str) -> pykka.ActorRef[SessionActor]:
    """The one running actor of a session."""
    refs = live_refs(session_id)
    assert len(refs) == 1, f"{len(refs)} live actors for {session_id}"
    return refs[0]


def crash(session_id: str) -> pykka.ActorRef[SessionActor]:
    """Make the session's live actor fail (an exception inside it) and wait until it stopped."""
    victim = live_ref(session_id)
    victim.tell(object())  # a message no session actor understands: it raises
    assert victim.actor_stopped.wait(TIMEOUT)
    return victim


def child_env(database_url: str | None = None) -> dict[str, str]:
    """The environment of a child Python process that imports this project."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    if database_url is not None:
        env["SESSIONS_DATABASE_URL"] = database_url
    return env


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    """Start ``python args...`` with this project importable."""
    return subprocess.Popen([sys.executable, *args], text=True, **kwargs)


def stop(process: subprocess.Popen[str]) -> None:
    """Kill a child process (if it still runs) and reap it."""
    if process.poll() is None:
        process.kill()
    process.wait(TIMEOUT)
