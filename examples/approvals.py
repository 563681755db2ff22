"""Humans in the loop: plan approval with a deadline, tool approvals, error recovery.

A simulated copilot asks a simulated human (another thread) before it acts:

* plan approval with a deadline: approve / reject (with feedback) / modify (an edited plan);
* tool approval: allow once / allow for the rest of the session / deny / edit the arguments;
* error recovery: retry / skip / abort.

The human answers most requests and walks away from one: time passes (an injected
``ManualClock``, so nothing sleeps), the sweep expires the request, and the session falls
back to a safe default. A late answer to the expired request changes nothing. Every
decision the session acts on is checkpointed with it (``unit_of_work``), so a restarted
process would remember, e.g., the tools allowed for the session. No network, no LLM.

    python examples/approvals.py [--database-url URL]

Without ``--database-url`` it uses a SQLite file in a temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from actors import ManualClock, SessionManager, create_session_manager

PLAN_DEADLINE = 300  # seconds the human has for a plan
PUBLISH_DEADLINE = 120


class Copilot:
    """The session's runtime: a simulated agent that must ask before it acts."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.history: list[dict[str, Any]] = state["conversation_history"]
        self.context: dict[str, Any] = state["context_variables"]
        self.context.setdefault("tools_allowed_for_session", [])
        self.context.setdefault("decisions", [])
        self.phase: str = state["current_phase"]
        self.plan: list[str] = []

    def note(self, text: str, decision: str | None = None) -> None:
        """Say what the session does; remember the decision it acted on."""
        print(f"  [session] {text}")
        self.history.append({"role": "assistant", "content": text})
        if decision is not None:
            self.context["decisions"].append(decision)

    def snapshot(self) -> dict[str, Any]:
        """What each unit of work checkpoints."""
        return {
            "conversation_history": self.history,
            "context_variables": self.context,
            "current_phase": self.phase,
            "plan_data": {"steps": self.plan},
        }


class SimulatedHuman(threading.Thread):
    """Answers the session's pending requests from a script, in order.

    A script entry is ``(approval_type, resolution, result)``, or
    ``(approval_type, "walk away", None)``: time passes until the deadline and the sweep
    expires the request.
    """

    def __init__(
        self,
        manager: SessionManager,
        clock: ManualClock,
        session_id: str,
        script: list[tuple[str, str, Any]],
    ) -> None:
        super().__init__(name=f"human-{session_id[:8]}", daemon=True)
        self.manager, self.clock, self.session_id = manager, clock, session_id
        self.script = deque(script)
        self.failed: str | None = None

    def run(self) -> None:
        """Answer until the script is done (or 20 s passed: something went wrong)."""
        deadline = time.monotonic() + 20
        while self.script and time.monotonic() < deadline:
            pending = self.manager.list_pending_approvals(self.session_id)
            if not pending:
                time.sleep(0.005)
                continue
            request = pending[0]
            kind, resolution, result = self.script.popleft()
            if request["approval_type"] != kind:
                self.failed = f"expected a {kind} request, got {request['approval_type']}"
                return
            if resolution == "walk away":
                deadline_at = datetime.fromisoformat(request["expires_at"])
                print(f"  [human]   is away; the clock passes the deadline ({deadline_at:%X})")
                self.clock.advance(deadline_at - self.clock() + timedelta(seconds=1))
                counts = self.manager.sweep()
                print(f"  [sweep]   approvals expired: {counts['approvals_expired']}")
                late = self.manager.resolve_approval(request["approval_id"], "approved")
                print(f"  [human]   (back) answers anyway: accepted={late}, too late")
                continue
            print(f"  [human]   {kind}: {resolution} {result if result is not None else ''}")
            self.manager.resolve_approval(request["approval_id"], resolution, result)


def ask(
    manager: SessionManager, session_id: str, kind: str, context: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Request an approval and wait (in real time, briefly) until it is no longer pending."""
    approval_id = manager.request_approval(session_id, kind, context, timeout=timeout)
    give_up = time.monotonic() + 20
    while time.monotonic() < give_up:
        approval = manager.get_approval(approval_id)
        if approval is not None and approval["status"] != "pending":
            return approval
        time.sleep(0.005)
    raise SystemExit(f"nobody answered {kind} request {approval_id}")


def agree_on_plan(manager: SessionManager, session_id: str, copilot: Copilot) -> None:
    """Propose plans until the human approves one (as is, or edited)."""
    proposal = ["scrape the web for CMB maps", "estimate the spectrum", "fit", "plot"]
    for version in range(1, 4):
        copilot.note(f"proposes plan v{version}: {proposal}")
        answer = ask(manager, session_id, "plan", {"plan": proposal, "version": version},
                     PLAN_DEADLINE)  # fmt: skip
        if answer["resolution"] == "approved":
            copilot.plan = proposal
            copilot.note(f"plan v{version} approved: running it", "plan approved")
            return
        if answer["resolution"] == "modified":
            copilot.plan = answer["result"]["plan"]
            copilot.note(f"plan v{version} modified by the human: running {copilot.plan}",
                         "plan modified")  # fmt: skip
            return
        feedback = answer["result"]["feedback"]
        copilot.note(f"plan v{version} rejected ({feedback}): replanning", "plan rejected")
        proposal = ["download the Planck maps", *proposal[1:]]
    raise SystemExit("no plan was agreed")


def use_tool(
    manager: SessionManager, session_id: str, copilot: Copilot, tool: str, arguments: Any
) -> None:
    """Run a tool after the human allowed it (or because it is allowed for the session)."""
    if tool in copilot.context["tools_allowed_for_session"]:
        copilot.note(f"runs {tool}{arguments}: allowed for this session, no question asked")
        return
    answer = ask(manager, session_id, "tool", {"tool": tool, "arguments": arguments}, 60)
    resolution, result = answer["resolution"], answer["result"] or {}
    if resolution == "rejected":
        copilot.note(f"{tool} denied: goes on without it", f"tool {tool} denied")
    elif resolution == "modified":
        copilot.note(f"runs {tool}{result['arguments']} (arguments edited by the human)",
                     f"tool {tool} edited")  # fmt: skip
    elif result.get("scope") == "session":
        copilot.context["tools_allowed_for_session"].append(tool)
        copilot.note(f"runs {tool}{arguments}; {tool} allowed for the rest of the session",
                     f"tool {tool} allowed for session")  # fmt: skip
    else:
        copilot.note(f"runs {tool}{arguments} (allowed once)", f"tool {tool} allowed once")


def recover(manager: SessionManager, session_id: str, copilot: Copilot, step: str) -> str:
    """A step failed: ask whether to retry, skip or abort; return the choice."""
    context = {"step": step, "error": "TimeoutError: fit did not converge",
               "options": ["retry", "skip", "abort"]}  # fmt: skip
    answer = ask(manager, session_id, "error_recovery", context, 60)
    choice: str = answer["result"]["choice"]
    copilot.note(f"step '{step}' failed; the human chose {choice}", f"error: {choice}")
    return choice


def analysis_session(manager: SessionManager, clock: ManualClock) -> str:
    """Plan rejected then modified; every tool answer; retry and skip; a deadline missed."""
    session_id = manager.create_session("copilot", {}, user_id="alice", name="analysis")
    human = SimulatedHuman(manager, clock, session_id, [
        ("plan", "rejected", {"feedback": "no web scraping"}),
        ("plan", "modified", {"plan": ["download the Planck maps", "fit", "plot"]}),
        ("tool", "modified", {"arguments": {"url": "https://mirror.example/planck"}}),
        ("tool", "approved", {"scope": "session"}),
        ("error_recovery", "approved", {"choice": "retry"}),
        ("tool", "approved", {"scope": "once"}),
        ("error_recovery", "approved", {"choice": "skip"}),
        ("tool", "rejected", None),
        ("plan", "walk away", None),
    ])  # fmt: skip
    human.start()
    print(f"session 'analysis' {session_id[:8]} (user alice)")
    with manager.unit_of_work(session_id) as work:
        work.runtime.phase = "planning"
        agree_on_plan(manager, session_id, work.runtime)
    with manager.unit_of_work(session_id) as work:
        copilot: Copilot = work.runtime
        copilot.phase = "execution"
        use_tool(manager, session_id, copilot, "http_get", {"url": "https://data.example/cmb"})
        use_tool(manager, session_id, copilot, "python", {"code": "fit()"})
        if recover(manager, session_id, copilot, "fit") == "retry":
            use_tool(manager, session_id, copilot, "python", {"code": "fit(tol=1e-3)"})
            copilot.note("retried 'fit': converged")
        use_tool(manager, session_id, copilot, "write_file", {"path": "spectrum.png"})
        if recover(manager, session_id, copilot, "plot") == "skip":
            copilot.note("skipped 'plot'")
        use_tool(manager, session_id, copilot, "shell", {"cmd": "rm -rf ~/cache"})
    with manager.unit_of_work(session_id) as work:
        copilot = work.runtime
        copilot.phase = "publish"
        copilot.note("asks to publish the results (deadline 120 s)")
        answer = ask(manager, session_id, "plan", {"publish": True}, PUBLISH_DEADLINE)
        if answer["status"] == "expired":
            copilot.note("no answer before the deadline: keeps the results private",
                         "publish expired")  # fmt: skip
    human.join(10)
    if human.failed or human.script:
        raise SystemExit(f"the human's script went wrong: {human.failed}")
    manager.complete_session(session_id)
    return session_id


def quick_session(manager: SessionManager, clock: ManualClock) -> str:
    """Plan approved as is; a failure the human aborts."""
    session_id = manager.create_session("copilot", {}, user_id="bob", name="quick")
    human = SimulatedHuman(manager, clock, session_id, [
        ("plan", "approved", None),
        ("error_recovery", "approved", {"choice": "abort"}),
    ])  # fmt: skip
    human.start()
    print(f"session 'quick' {session_id[:8]} (user bob)")
    with manager.unit_of_work(session_id) as work:
        copilot: Copilot = work.runtime
        copilot.phase = "execution"
        agree_on_plan(manager, session_id, copilot)
        if recover(manager, session_id, copilot, "estimate the spectrum") == "abort":
            copilot.context["aborted"] = True
            copilot.note("aborts the task; the session is closed")
    human.join(10)
    manager.complete_session(session_id)
    return session_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: temp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="approvals-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'sessions.db'}"
        clock = ManualClock()
        with create_session_manager(url, clock=clock, runtime_factory=Copilot) as manager:
            analysis = analysis_session(manager, clock)
            quick = quick_session(manager, clock)
            print("stored decisions:")
            for session_id in (analysis, quick):
                state = manager.load(session_id)
                context = state["context_variables"]
                print(f"  {state['name']}: status={state['status']},"
                      f" decisions={context['decisions']},"
                      f" allowed for session={context['tools_allowed_for_session']}")  # fmt: skip


if __name__ == "__main__":
    main()
