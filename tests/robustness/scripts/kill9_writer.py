"""A writer process for the kill -9 test, and the state it writes.

``python kill9_writer.py URL SEED`` waits for a line on stdin, opens a manager on URL, then
writes forever from several threads: it creates sessions and continues the ones earlier
writers left, saving step after step. After each acknowledged call it writes a line to
stdout and flushes it (``created SID`` or ``ack SID STEP``), so the test knows exactly what
was acknowledged when it kills the process.

Each step's state is a pure function of (session id, step), see :func:`expected_state`, so
a loaded session can be checked to be one whole checkpoint: history, context, plan, phase
and step all from the same save. Every fifth step rewrites (summarises) the history.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from datetime import timedelta
from typing import Any

MODE = "kill9"
THREADS = 4
CONTINUED_PER_THREAD = 3
SUMMARY_EVERY = 5


def message(session_id: str, index: int) -> dict[str, Any]:
    """The ``index``-th message of a session (the same whichever save writes it)."""
    role = "user" if index % 2 == 0 else "assistant"
    return {"role": role, "content": f"{session_id}:{index}", "n": index}


def expected_state(session_id: str, step: int) -> dict[str, Any]:
    """History, context, plan and phase of a session's save number ``step``."""
    if step == 0:
        return {"history": [], "context": {}, "plan": None, "phase": "init", "step": None}
    summarised_at = step // SUMMARY_EVERY * SUMMARY_EVERY
    if summarised_at:
        summary = {"role": "system", "content": f"{session_id} summary@{summarised_at}"}
        history = [summary] + [message(session_id, i) for i in range(2 * summarised_at, 2 * step)]
    else:
        history = [message(session_id, i) for i in range(2 * step)]
    return {
        "history": history,
        "context": {"step": step, "session": session_id, "pad": "x" * (step % 7 * 50)},
        "plan": {"step": step, "todo": list(range(step % 4))},
        "phase": f"phase-{step}",
        "step": step,
    }


class Output:
    """Acknowledgements, one flushed line each, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        """Write and flush one line before the caller goes on."""
        with self._lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()


def _continue(manager: Any, output: Output, sessions: dict[str, int], rng: random.Random) -> None:
    ids = list(sessions)
    while True:
        session_id = rng.choice(ids)
        step = sessions[session_id] + 1
        state = expected_state(session_id, step)
        saved = manager.save_session_state(
            session_id, state["history"], state["context"], state["phase"], step, state["plan"]
        )
        if saved:
            sessions[session_id] = step
            output.line(f"ack {session_id} {step}")
        else:
            # Still leased by the killed writer (until its lease lapses) or refused: retry
            # from the stored step, which an unacknowledged commit may have moved on.
            stored = manager.load_session_state(session_id)
            if stored is not None:
                sessions[session_id] = stored["current_step"] or 0
            time.sleep(0.01)


def _thread(manager: Any, output: Output, left: list[str], seed: int) -> None:
    rng = random.Random(seed)
    sessions: dict[str, int] = {}
    for session_id in left:
        stored = manager.load_session_state(session_id)
        if stored is not None:
            sessions[session_id] = stored["current_step"] or 0
    session_id = manager.create_session(MODE, {"seed": seed})
    output.line(f"created {session_id}")
    sessions[session_id] = 0
    _continue(manager, output, sessions, rng)


def verify(url: str) -> None:
    """Load every session in this (new) process; compare with the acks read from stdin.

    Prints ``verified SESSIONS LOST INCONSISTENT``; exits 1 if anything was lost or torn.
    """
    from actors import create_session_manager  # noqa: PLC0415 - the writer imports it late too

    acked: dict[str, int] = json.loads(sys.stdin.read())
    manager = create_session_manager(url)
    lost = inconsistent = 0
    stored = {row["session_id"] for row in manager.list_sessions(mode=MODE, limit=100_000)}
    lost += len(set(acked) - stored)
    for session_id in stored:
        state = manager.load(session_id)
        step = state["current_step"] or 0
        lost += step < acked.get(session_id, 0)
        loaded = {
            "history": state["conversation_history"],
            "context": state["context_variables"],
            "plan": state["plan_data"],
            "phase": state["current_phase"],
            "step": state["current_step"],
        }
        inconsistent += loaded != expected_state(session_id, step)
    manager.close()
    sys.stdout.write(f"verified {len(stored)} {lost} {inconsistent}\n")
    sys.exit(1 if lost or inconsistent else 0)


def main() -> None:
    """Write until killed (or, with ``verify URL``, check what the writers left)."""
    from actors import create_session_manager  # noqa: PLC0415 - after the argv check

    if sys.argv[1] == "verify":
        verify(sys.argv[2])
        return
    url, seed = sys.argv[1], int(sys.argv[2])
    sys.stdin.readline()  # imported and waiting: the test says when to start
    manager = create_session_manager(url, lease_ttl=timedelta(milliseconds=250))
    rng = random.Random(seed)
    earlier = [row["session_id"] for row in manager.list_sessions(mode=MODE, limit=1000)]
    rng.shuffle(earlier)
    output = Output()
    output.line("ready")
    threads = [
        threading.Thread(
            target=_thread,
            args=(manager, output, earlier[i::THREADS][:CONTINUED_PER_THREAD], seed * 100 + i),
            daemon=True,
        )
        for i in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
