"""Task executor (the seed's Task 4): a multi-step task killed with -9 midway, then resumed.

The task's live object (``TaskRun``) is the session's *runtime*: the session actor builds it
from the last checkpoint (``runtime_factory``), instead of a module-level
``_active_sessions`` dict. Its ``on_phase_change`` is ``manager.phase_hook(...)``, so every
phase change is a checkpoint.

This script is the parent. It creates the session, starts a worker process that runs the
task, and kills it (SIGKILL) while it works on a step. Then a new worker process resumes
the task from the last phase checkpoint and finishes it; the parent checks that every
phase's work is in the history exactly once. No network, no LLM; a few seconds.

    python examples/task_executor.py [--database-url URL]

Without ``--database-url`` it uses a SQLite file in a temporary directory, removed at the
end; with one, the session stays there.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from actors import create_session_manager

# The phases the executor goes through: (phase, step number).
PHASES: list[tuple[str, int | None]] = [
    ("planning", None),
    ("control", 1),
    ("control", 2),
    ("control", 3),
    ("control", 4),
    ("summary", None),
]
KILL_WHEN_ENTERING = ("control", 3)
PHASE_WORK_SECONDS = 0.25
# Both workers present the same identity, as a restarted pod or service would: the new
# process may reclaim the sessions the killed one held at once, without waiting for its
# lease to lapse.
WORKER_ID = "task-worker-1"


def phase_name(phase: str, step: int | None) -> str:
    return phase if step is None else f"{phase} step {step}"


class TaskRun:
    """The live task: what the seed kept in ``_active_sessions``; built from a checkpoint."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.session_id: str = state["session_id"]
        self.history: list[dict[str, Any]] = state["conversation_history"]
        self.context: dict[str, Any] = state["context_variables"]
        self.plan: dict[str, Any] | None = state["plan_data"]
        current = (state["current_phase"], state["current_step"])
        # Re-enter the phase of the last checkpoint: its work had not been saved yet.
        self.next_phase = PHASES.index(current) if current in PHASES else 0
        self.resumed_from = None if state["current_phase"] == "init" else current
        self.version = state["version"]

    # The callbacks the seed's Task 4 says the executor needs.
    def get_conversation_history(self) -> list[dict[str, Any]]:
        """The messages so far."""
        return self.history

    def get_context_variables(self) -> dict[str, Any]:
        """The context so far."""
        return self.context

    def get_plan(self) -> dict[str, Any] | None:
        """The plan, once made."""
        return self.plan

    def work(self, phase: str, step: int | None) -> None:
        """Simulate the agents working on one phase."""
        time.sleep(PHASE_WORK_SECONDS)
        name = phase_name(phase, step)
        if phase == "planning":
            self.plan = {"steps": ["fetch data", "clean it", "fit the model", "plot"]}
        self.history.append({"role": "user", "content": f"do: {name}"})
        self.history.append({"role": "assistant", "content": f"done: {name}", "agent": phase})
        self.context.setdefault("phases_done", []).append(name)

    def close(self) -> None:
        """Called by the session actor when it stops (completion, passivation, close)."""
        print(f"  [worker {os.getpid()}] runtime closed", flush=True)


def worker(database_url: str, session_id: str) -> None:
    """Run (or resume) the task of ``session_id`` until it is completed."""
    pid = os.getpid()
    manager = create_session_manager(database_url, instance_id=WORKER_ID, runtime_factory=TaskRun)
    with manager:
        run: TaskRun = manager.runtime(session_id)
        if run.resumed_from is None:
            print(f"  [worker {pid}] starting the task", flush=True)
        else:
            print(
                f"  [worker {pid}] resuming from the last phase checkpoint:"
                f" {phase_name(*run.resumed_from)} (version {run.version},"
                f" {len(run.history)} messages)",
                flush=True,
            )
        on_phase_change = manager.phase_hook(
            session_id, run.get_conversation_history, run.get_context_variables, run.get_plan
        )
        for phase, step in PHASES[run.next_phase :]:
            if not on_phase_change(phase, step):
                raise SystemExit(f"checkpoint of {session_id} refused; see the log")
            version = manager.info(session_id)["version"]
            print(
                f"  [worker {pid}] entered {phase_name(phase, step)}:"
                f" checkpoint v{version}, {len(run.history)} messages",
                flush=True,
            )
            run.work(phase, step)
        manager.save_session_state(session_id, run.history, run.context, "done", None, run.plan)
        manager.complete_session(session_id)
        print(f"  [worker {pid}] task finished; session completed", flush=True)


def start_worker(database_url: str, session_id: str) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "--database-url", database_url, "--worker", session_id]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1)


def run_until_killed(database_url: str, session_id: str) -> None:
    """Start a worker; SIGKILL it as soon as it enters the phase ``KILL_WHEN_ENTERING``."""
    process = start_worker(database_url, session_id)
    target = phase_name(*KILL_WHEN_ENTERING)
    watchdog = threading.Timer(30, process.kill)
    watchdog.start()
    try:
        for line in process.stdout or ():
            print(line, end="")
            if f"entered {target}:" in line:
                process.send_signal(signal.SIGKILL)
                print(f"-- kill -9 {process.pid} while it works on {target}")
                break
        process.wait(10)
    finally:
        watchdog.cancel()
        process.kill()
    print(f"-- worker {process.pid} is dead (exit status {process.returncode})")


def run_to_completion(database_url: str, session_id: str) -> None:
    process = start_worker(database_url, session_id)
    try:
        out, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    print(out, end="")
    if process.returncode != 0:
        raise SystemExit(f"the resuming worker failed with exit status {process.returncode}")


def check(database_url: str, session_id: str) -> None:
    """Every phase's work is in the history exactly once, in order."""
    with create_session_manager(database_url) as manager:
        state = manager.load(session_id)
    expected = [phase_name(phase, step) for phase, step in PHASES]
    done = [m["content"][len("done: ") :] for m in state["conversation_history"]
            if m["role"] == "assistant"]  # fmt: skip
    if state["status"] != "completed" or done != expected:
        raise SystemExit(f"unexpected final state: {state['status']}, {done}")
    print(
        f"final: status={state['status']}, version {state['version']},"
        f" {len(state['conversation_history'])} messages; every phase done exactly once"
        " (the killed worker's unsaved step was redone, not duplicated)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: temp)")
    parser.add_argument("--worker", metavar="SESSION_ID", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.database_url, args.worker)
        return
    with tempfile.TemporaryDirectory(prefix="task-executor-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'sessions.db'}"
        print(f"database: {url}")
        with create_session_manager(url) as manager:
            session_id = manager.create_session(
                mode="planning-control", config={"task": "fit the model"}, name="task"
            )
        print(f"created session {session_id}")
        print("-- worker 1 runs the task")
        run_until_killed(url, session_id)
        print("-- worker 2 (a new process) resumes it")
        run_to_completion(url, session_id)
        check(url, session_id)


if __name__ == "__main__":
    main()
