"""Crash a running session's actor and watch it come back from its last checkpoint.

A pipeline session runs its steps in its actor (``run_in_actor``), each checkpointed. Step
4 hits a bug and raises *inside the actor*: the actor crashes, its runtime is closed, and
the supervisor restarts the session from its last checkpoint (a new actor, a new lease
epoch). The half-done work of step 4 was never checkpointed, so it is gone; the rebuilt
runtime starts from step 3's checkpoint, step 4 is retried (the bug "fixed") and the
session completes. No network, no LLM.

    python examples/crash_resume.py [--database-url URL]

The library logs the crash as a ``session.crashed`` error with its traceback on stderr:
that is expected. Without ``--database-url`` it uses a SQLite file in a temporary
directory, removed at the end.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path
from typing import Any

from actors import SessionManager, create_session_manager

STEPS = 5


class Pipeline:
    """The session's runtime: a data pipeline holding its progress in memory."""

    buggy = True  # step 4 fails until the "fix" is deployed

    def __init__(self, state: dict[str, Any]) -> None:
        self.history: list[dict[str, Any]] = state["conversation_history"]
        self.done: list[int] = state["context_variables"].get("steps_done", [])
        print(
            f"  [factory] runtime built in {threading.current_thread().name} from checkpoint"
            f" v{state['version']}: steps done {self.done}"
        )

    def run_step(self, step: int) -> int:
        """Do one step; its result goes into the history. Returns the step."""
        self.history.append({"role": "user", "content": f"run step {step}"})
        if step == 4 and Pipeline.buggy:
            raise RuntimeError("step 4: parser bug (KeyError 'units')")
        self.history.append({"role": "assistant", "content": f"step {step} ok"})
        self.done.append(step)
        return step

    def snapshot(self) -> dict[str, Any]:
        """The state a checkpoint saves."""
        return {
            "conversation_history": self.history,
            "context_variables": {"steps_done": self.done},
            "current_phase": "pipeline",
            "current_step": self.done[-1] if self.done else None,
        }

    def close(self) -> None:
        """Called by the actor when it stops (here: when it crashes, and at the end)."""
        print(f"  [runtime] closed (had {len(self.history)} messages in memory)")


def step_and_checkpoint(runtime: Pipeline, step: int) -> dict[str, Any]:
    """Runs in the session's actor: do the step, return the snapshot to checkpoint."""
    runtime.run_step(step)
    return runtime.snapshot()


def run(manager: SessionManager, session_id: str, step: int) -> None:
    snapshot = manager.run_in_actor(session_id, step_and_checkpoint, step)
    version = manager.checkpoint(session_id, **snapshot)
    print(f"  step {step} done, checkpoint v{version}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: temp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crash-resume-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'sessions.db'}"
        with create_session_manager(url, runtime_factory=Pipeline) as manager:
            session_id = manager.create_session("pipeline", {}, name="pipeline")
            print(f"session {session_id}")
            for step in (1, 2, 3):
                run(manager, session_id, step)
            before = manager.live(session_id)
            print("step 4 raises inside the session's actor:")
            try:
                run(manager, session_id, 4)
            except RuntimeError as error:
                print(f"  the caller got the error: {error}")
            after = manager.live(session_id)
            stats = manager.stats()
            print(
                f"  supervisor: crashes={stats['crashes']} restarts={stats['restarts']};"
                f" session back at version {after.version} (step {after.current_step}),"
                f" lease epoch {before.epoch} -> {after.epoch}"
            )
            runtime: Pipeline = manager.runtime(session_id)
            print(f"  the rebuilt runtime has {len(runtime.history)} messages (step 4's are gone)")
            Pipeline.buggy = False
            print("the fix is deployed; retrying step 4:")
            for step in (4, 5):
                run(manager, session_id, step)
            manager.complete_session(session_id)
            state = manager.load(session_id)
            steps = state["context_variables"]["steps_done"]
            print(
                f"completed: status={state['status']}, steps {steps},"
                f" {len(state['conversation_history'])} messages, crash recovered"
            )
            if steps != list(range(1, STEPS + 1)) or stats["restarts"] != 1:
                raise SystemExit("unexpected final state")


if __name__ == "__main__":
    main()
