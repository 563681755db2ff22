"""Quickstart: a simulated multi-phase copilot session that survives a restart.

A copilot session goes through planning, several control steps and completion. Each
phase change is checkpointed (only the new messages are written). Midway the manager is
closed and a new one is opened on the same database, as a restarted process would; the
session is resumed from its last checkpoint and finished. No network, no LLM.

    python examples/quickstart.py [--database-url URL] [--steps N]

The default database is $SESSIONS_DATABASE_URL, else ./sessions.db (SQLite, WAL).
"""

from __future__ import annotations

import argparse
import random
from typing import Any

from actors import SessionManager, create_session_manager

PLAN = ["load the CMB maps", "estimate the power spectrum", "fit the cosmological model"]


def agent_reply(step: str, rng: random.Random) -> str:
    """A stand-in for the LLM: a deterministic, plausible answer."""
    verbs = ["checked", "computed", "compared", "summarised", "validated"]
    return f"Step '{step}': {rng.choice(verbs)} the intermediate results; all good."


def checkpoint(manager: SessionManager, session_id: str, session: dict[str, Any]) -> None:
    """Save the session and print what the checkpoint wrote."""
    before = manager.info(session_id)["message_count"]
    ok = manager.save_session_state(
        session_id,
        session["history"],
        session["context"],
        session["phase"],
        session["step"],
        session.get("plan"),
    )
    if not ok:
        raise SystemExit(f"checkpoint of {session_id} was refused; see the log above")
    info = manager.info(session_id)
    step = "-" if session["step"] is None else session["step"]
    print(
        f"  checkpoint v{info['version']:<3} phase={session['phase']:<10} step={step:<2}"
        f" messages={info['message_count']:<3} (+{info['message_count'] - before} new)"
    )


def run_phase(session: dict[str, Any], phase: str, step: int | None, text: str) -> None:
    """Simulate one exchange of the conversation."""
    rng = random.Random(f"{phase}-{step}")
    session["history"].append({"role": "user", "content": text})
    session["history"].append({"role": "assistant", "content": agent_reply(text, rng)})
    session["phase"], session["step"] = phase, step
    session["context"]["last_phase"] = phase
    session["context"]["completed_steps"] = [] if step is None else list(range(1, step + 1))


def first_half(database_url: str | None, steps_before_restart: int) -> str:
    """Create the session, plan, and run the first control steps; then 'crash'."""
    manager = create_session_manager(database_url)
    print(f"database: {manager.database.url}")
    session_id = manager.create_session(
        mode="copilot", config={"model": "simulated", "temperature": 0}, name="CMB analysis"
    )
    print(f"[1/4] created session {session_id} (mode=copilot)")
    session: dict[str, Any] = {
        "history": [], "context": {"task": "analyse the CMB"}, "phase": "init", "step": None,
    }  # fmt: skip
    print("[2/4] planning")
    run_phase(session, "planning", None, "Plan the analysis of the CMB maps.")
    session["plan"] = {"steps": PLAN}
    checkpoint(manager, session_id, session)
    print("[3/4] control steps")
    for step in range(1, steps_before_restart + 1):
        run_phase(session, "control", step, PLAN[(step - 1) % len(PLAN)])
        checkpoint(manager, session_id, session)
    print("  -- closing the manager, as if the process restarted --")
    manager.close()
    return session_id


def second_half(database_url: str | None, session_id: str, total_steps: int) -> None:
    """A new manager resumes the session from its last checkpoint and finishes it."""
    manager = create_session_manager(database_url)
    try:
        state = manager.load_session_state(session_id)
        if state is None:
            raise SystemExit(f"session {session_id} cannot be resumed")
        print(
            f"  -- new manager resumed {session_id[:8]}: version {state['version']},"
            f" phase={state['current_phase']}, step={state['current_step']},"
            f" {len(state['conversation_history'])} messages --"
        )
        session: dict[str, Any] = {
            "history": state["conversation_history"],
            "context": state["context_variables"],
            "phase": state["current_phase"],
            "step": state["current_step"],
            "plan": state["plan_data"],
        }
        for step in range(state["current_step"] + 1, total_steps + 1):
            run_phase(session, "control", step, PLAN[(step - 1) % len(PLAN)])
            checkpoint(manager, session_id, session)
        run_phase(session, "summary", None, "Summarise the results.")
        checkpoint(manager, session_id, session)
        manager.complete_session(session_id)
        info = manager.info(session_id)
        print(
            f"[4/4] completed: status={info['status']}, version {info['version']},"
            f" {info['message_count']} messages stored once each"
        )
    finally:
        manager.close()


def main() -> None:
    """Parse arguments and run the two halves."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: SQLite)")
    parser.add_argument("--steps", type=int, default=6, help="control steps (default 6)")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2")
    session_id = first_half(args.database_url, args.steps // 2)
    second_half(args.database_url, session_id, args.steps)


if __name__ == "__main__":
    main()
