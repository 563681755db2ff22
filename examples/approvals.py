"""Humans in the loop: plan approval with a deadline, tool approvals, error recovery.

A simulated copilot asks a simulated human (another thread) before it acts:

* plan approval with a deadline: approve / reject (with feedback) / modify (an edited plan);
* tool approval: allow once / allow for the rest of the session / deny / edit the arguments;
* error recovery: retry / skip / abort.

The human answers most requests and walks away from a plan approval: time passes (an
injected ``ManualClock``, so nothing sleeps), the sweep expires the request at its
deadline, and the session reacts as it does to every unanswered request: it does not act
(an unanswered plan runs nothing, an unanswered tool is not run, an unanswered error
aborts). Here it suspends itself until the human is back, resumes and asks again. A late
answer to the expired request changes nothing. Every
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
        # Held while the human deals with one request, so that the session, which waits
        # for the request's outcome, speaks after the human (the output reads in order).
        self.turn = threading.Lock()

    def run(self) -> None:
        """Answer until the script is done (or 20 s passed: something went wrong)."""
        deadline = time.monotonic() + 20
        while self.script and time.monotonic() < deadline:
            pending = self.manager.list_pending_approvals(self.session_id)
            if not pending:
                time.sleep(0.005)
                continue
            with self.turn:
                self._answer(pending[0])

    def _answer(self, request: dict[str, Any]) -> None:
        kind, resolution, result = self.script.popleft()
        if request["approval_type"] != kind:
            self.failed = f"expected a {kind} request, got {request['approval_type']}"
            self.script.clear()
            return
        if resolution == "walk away":
            deadline_at = datetime.fromisoformat(request["expires_at"])
            print(f"  [human]   is away; the clock passes the deadline ({deadline_at:%X})")
            self.clock.advance(deadline_at - self.clock() + timedelta(seconds=1))
            counts = self.manager.sweep()
            print(f"  [sweep]   approvals expired: {counts['approvals_expired']}")
            late = self.manager.resolve_approval(request["approval_id"], "approved")
            print(f"  [human]   (back) answers anyway: accepted={late}, too late")
            return
        detail = f" {result}" if result is not None else ""
        print(f"  [human]   {kind}: {resolution}{detail}")
        self.manager.resolve_approval(request["approval_id"], resolution, result)


class Desk:
    """Where a session asks its human, and waits for the answer (or the deadline)."""

    def __init__(self, manager: SessionManager, session_id: str, human: SimulatedHuman) -> None:
        self.manager, self.session_id, self.human = manager, session_id, human

    def ask(self, kind: str, context: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Request an approval; return it once it is resolved or expired."""
        approval_id = self.manager.request_approval(self.session_id, kind, context, timeout)
        give_up = time.monotonic() + 20
        while time.monotonic() < give_up:
            approval = self.manager.get_approval(approval_id)
            if approval is not None and approval["status"] != "pending":
                with self.human.turn:  # let the human finish what it says about it
                    return approval
            time.sleep(0.005)
        raise SystemExit(f"nobody answered {kind} request {approval_id}")


def agree_on_plan(desk: Desk, copilot: Copilot) -> bool:
    """Propose plans until the human approves one (as is, or edited); ``False`` if unanswered."""
    proposal = ["scrape the web for CMB maps", "estimate the spectrum", "fit", "plot"]
    for version in range(1, 4):
        copilot.note(f"proposes plan v{version}: {proposal} (deadline {PLAN_DEADLINE} s)")
        answer = desk.ask("plan", {"plan": proposal, "version": version}, PLAN_DEADLINE)
        if answer["status"] == "expired":
            copilot.note(f"plan v{version} got no answer before its deadline: runs nothing",
                         "plan expired")  # fmt: skip
            return False
        if answer["resolution"] == "approved":
            copilot.plan = proposal
            copilot.note(f"plan v{version} approved: running it", "plan approved")
            return True
        if answer["resolution"] == "modified":
            copilot.plan = answer["result"]["plan"]
            copilot.note(f"plan v{version} modified by the human: running {copilot.plan}",
                         "plan modified")  # fmt: skip
            return True
        feedback = answer["result"]["feedback"]
        copilot.note(f"plan v{version} rejected ({feedback}): replanning", "plan rejected")
        proposal = ["download the Planck maps", *proposal[1:]]
    raise SystemExit("no plan was agreed")


def use_tool(desk: Desk, copilot: Copilot, tool: str, arguments: Any) -> None:
    """Run a tool after the human allowed it (or because it is allowed for the session)."""
    if tool in copilot.context["tools_allowed_for_session"]:
        copilot.note(f"runs {tool}{arguments}: allowed for this session, no question asked")
        return
    answer = desk.ask("tool", {"tool": tool, "arguments": arguments}, 60)
    resolution, result = answer["resolution"], answer["result"] or {}
    if answer["status"] == "expired":  # an unanswered tool request is a no
        copilot.note(f"{tool}: no answer before the deadline, not run", f"tool {tool} expired")
    elif resolution == "rejected":
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


def recover(desk: Desk, copilot: Copilot, step: str) -> str:
    """A step failed: ask whether to retry, skip or abort; return the choice."""
    context = {"step": step, "error": "TimeoutError: fit did not converge",
               "options": ["retry", "skip", "abort"]}  # fmt: skip
    answer = desk.ask("error_recovery", context, 60)
    if answer["status"] == "expired":  # nobody to decide: stop rather than guess
        copilot.note(f"step '{step}' failed and nobody answered: aborts", "error: abort")
        return "abort"
    choice: str = answer["result"]["choice"]
    copilot.note(f"step '{step}' failed; the human chose {choice}", f"error: {choice}")
    return choice


def analysis_session(manager: SessionManager, clock: ManualClock) -> str:
    """Plan rejected then modified; every tool answer; retry and skip; publishing approved."""
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
        ("publish", "approved", None),
    ])  # fmt: skip
    desk = Desk(manager, session_id, human)
    human.start()
    print(f"session 'analysis' {session_id[:8]} (user alice)")
    with manager.unit_of_work(session_id) as work:
        work.runtime.phase = "planning"
        agree_on_plan(desk, work.runtime)
    with manager.unit_of_work(session_id) as work:
        copilot: Copilot = work.runtime
        copilot.phase = "execution"
        use_tool(desk, copilot, "http_get", {"url": "https://data.example/cmb"})
        use_tool(desk, copilot, "python", {"code": "fit()"})
        if recover(desk, copilot, "fit") == "retry":
            use_tool(desk, copilot, "python", {"code": "fit(tol=1e-3)"})
            copilot.note("retried 'fit': converged")
        use_tool(desk, copilot, "write_file", {"path": "spectrum.png"})
        if recover(desk, copilot, "plot") == "skip":
            copilot.note("skipped 'plot'")
        use_tool(desk, copilot, "shell", {"cmd": "rm -rf ~/cache"})
    with manager.unit_of_work(session_id) as work:
        copilot = work.runtime
        copilot.phase = "publish"
        copilot.note(f"asks to publish the results (deadline {PUBLISH_DEADLINE} s)")
        answer = desk.ask("publish", {"results": "spectrum.png"}, PUBLISH_DEADLINE)
        if answer["status"] == "expired":
            copilot.note("no answer before the deadline: keeps the results private",
                         "publish expired")  # fmt: skip
        else:
            copilot.note("publishes the results", "publish approved")
    finish(human, manager, session_id)
    return session_id


def quick_session(manager: SessionManager, clock: ManualClock) -> str:
    """The plan's deadline passes (suspended, resumed, asked again); a failure is aborted."""
    session_id = manager.create_session("copilot", {}, user_id="bob", name="quick")
    human = SimulatedHuman(manager, clock, session_id, [
        ("plan", "walk away", None),
        ("plan", "approved", None),
        ("error_recovery", "approved", {"choice": "abort"}),
    ])  # fmt: skip
    desk = Desk(manager, session_id, human)
    human.start()
    print(f"session 'quick' {session_id[:8]} (user bob)")
    with manager.unit_of_work(session_id) as work:
        work.runtime.phase = "planning"
        agreed = agree_on_plan(desk, work.runtime)
    if not agreed:  # checkpointed with its decision; wait for the human, suspended
        manager.suspend_session(session_id)
        status = manager.load(session_id)["status"]
        print(f"  [session] suspended until a human is back (status: {status})")
        manager.resume_session(session_id)
        print("  [session] resumed: asks again")
        with manager.unit_of_work(session_id) as work:
            agreed = agree_on_plan(desk, work.runtime)
    with manager.unit_of_work(session_id) as work:
        copilot: Copilot = work.runtime
        copilot.phase = "execution"
        if recover(desk, copilot, "estimate the spectrum") == "abort":
            copilot.context["outcome"] = "aborted"
            copilot.note("aborts the task; the session is closed")
    finish(human, manager, session_id)
    return session_id


def finish(human: SimulatedHuman, manager: SessionManager, session_id: str) -> None:
    """Check the human's script ran to its end; complete the session."""
    human.join(10)
    if human.failed or human.script:
        raise SystemExit(f"the human's script went wrong: {human.failed or human.script}")
    manager.complete_session(session_id)


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
                      f" outcome={context.get('outcome', 'done')},"
                      f" decisions={context['decisions']},"
                      f" allowed for session={context['tools_allowed_for_session']}")  # fmt: skip


if __name__ == "__main__":
    main()
