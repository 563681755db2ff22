"""Every example runs as a user runs it: a fresh process, exit 0, the key lines printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from actors import create_session_manager

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"


def run_example(
    name: str, tmp_path: Path, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python examples/<name> args...`` in ``tmp_path``; the process is killed if it hangs."""
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        process.kill()
        process.wait(5)
    done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert done.returncode == 0, f"{name} exited {done.returncode}\n{out}\n{err}"
    return done


def assert_lines(output: str, *expected: str) -> None:
    """Each expected fragment appears in the output, in this order."""
    position = 0
    for fragment in expected:
        found = output.find(fragment, position)
        assert found >= 0, f"{fragment!r} missing (after position {position}) in:\n{output}"
        position = found + len(fragment)


@pytest.mark.slow
class TestExamples:
    """examples/*.py end to end, each on its own SQLite file."""

    def test_task_executor_survives_kill_9(self, tmp_path: Path) -> None:
        """The worker is SIGKILLed on step 3; a new process resumes there and finishes."""
        url = f"sqlite:///{tmp_path / 'tasks.db'}"
        out = run_example("task_executor.py", tmp_path, "--database-url", url).stdout
        assert_lines(
            out,
            "entered control step 3: checkpoint v5",
            "-- kill -9",
            "exit status -9",
            "resuming from the last phase checkpoint: control step 3 (version 5, 6 messages)",
            "entered control step 4",
            "runtime closed",
            "final: status=completed",
            "every phase done exactly once",
        )
        pids = set(re.findall(r"\[worker (\d+)\]", out))
        assert len(pids) == 2
        session_id = re.search(r"created session (\S+)", out)
        assert session_id is not None
        with create_session_manager(url) as manager:
            state = manager.load(session_id.group(1))
        assert state["status"] == "completed"
        contents = [message["content"] for message in state["conversation_history"]]
        assert len(contents) == len(set(contents)) == 12

    def test_approvals(self, tmp_path: Path) -> None:
        """Every answer is acted on; the unanswered plan expires, the session reacts.

        The late answer to the expired request is refused; the session suspends, resumes
        and asks again; every decision is stored with the session.
        """
        url = f"sqlite:///{tmp_path / 'approvals.db'}"
        out = run_example("approvals.py", tmp_path, "--database-url", url).stdout
        assert_lines(
            out,
            "plan v1 rejected (no web scraping): replanning",
            "plan v2 modified by the human",
            "(arguments edited by the human)",
            "python allowed for the rest of the session",
            "the human chose retry",
            "allowed for this session, no question asked",
            "(allowed once)",
            "the human chose skip",
            "shell denied",
            "publishes the results",
        )
        assert_lines(
            out,
            "session 'quick'",
            "approvals expired: 1",
            "accepted=False, too late",
            "plan v1 got no answer before its deadline: runs nothing",
            "suspended until a human is back (status: suspended)",
            "resumed: asks again",
            "plan v1 approved",
            "the human chose abort",
            "aborts the task",
        )
        with create_session_manager(url) as manager:
            sessions = {row["name"]: row for row in manager.list_sessions()}
            analysis = manager.load(sessions["analysis"]["session_id"])
            quick = manager.load(sessions["quick"]["session_id"])
            for state in (analysis, quick):
                assert manager.list_pending_approvals(state["session_id"]) == []
        assert analysis["status"] == quick["status"] == "completed"
        assert analysis["context_variables"]["tools_allowed_for_session"] == ["python"]
        assert analysis["context_variables"]["decisions"][-1] == "publish approved"
        assert quick["context_variables"]["decisions"] == [
            "plan expired",
            "plan approved",
            "error: abort",
        ]
        assert quick["context_variables"]["outcome"] == "aborted"

    def test_async_service_never_blocks_the_loop(self, tmp_path: Path) -> None:
        """200 concurrent sessions complete; the loop's worst lag stays far below a blockage."""
        out = run_example("async_service.py", tmp_path, "--sessions", "200").stdout
        assert "completed sessions: 200; user-7 sees only its own: 10" in out
        checkpoints = re.search(r"checkpoints: 1000 in [\d.]+ s = (\d+) per second", out)
        assert checkpoints is not None, out
        assert int(checkpoints.group(1)) > 0
        worst = re.search(r"worst lag ([\d.]+) ms", out)
        assert worst is not None, out
        # One blocking database call on the loop would cost a whole checkpoint per session;
        # a generous bound keeps a loaded CI machine from failing a healthy run.
        assert float(worst.group(1)) < 500, out

    def test_async_service_counts_only_its_own_sessions(self, tmp_path: Path) -> None:
        """Run twice on one database, the second run still reports only its own sessions."""
        url = f"sqlite:///{tmp_path / 'service.db'}"
        for _ in range(2):
            out = run_example("async_service.py", tmp_path, "--sessions", "40", "--database-url",
                              url).stdout  # fmt: skip
            assert "completed sessions: 40; user-7 sees only its own: 2" in out
        with create_session_manager(url) as manager:
            assert len(manager.list_sessions(status="completed", limit=1000)) == 80

    def test_crash_resume(self, tmp_path: Path) -> None:
        """The crash reaches the caller; the session comes back from step 3's checkpoint."""
        done = run_example("crash_resume.py", tmp_path)
        assert_lines(
            done.stdout,
            "step 3 done, checkpoint v4",
            "step 4 raises inside the session's actor",
            "[runtime] closed (had 7 messages in memory)",
            "the caller got the error: step 4: parser bug",
            "crashes=1 restarts=1; session back at version 4 (step 3), lease epoch 1 -> 2",
            "from checkpoint v4: steps done [1, 2, 3]",
            "the rebuilt runtime has 6 messages",
            "completed: status=completed, steps [1, 2, 3, 4, 5], 10 messages",
        )
        assert "session.crashed" in done.stderr

    def test_several_workers_hand_sessions_over(self, tmp_path: Path) -> None:
        """Four forked workers, each with its manager from its startup hook; nothing lost."""
        done = run_example("several_workers.py", tmp_path, "--seconds", "3")
        assert_lines(
            done.stdout,
            "created 24 sessions; forking 4 workers",
            "executor: ",
            "hand-offs: ",
            "no acknowledged step lost",
        )
        assert re.search(r"worker-1: \d+ steps", done.stdout)
        assert re.search(r"worker-[234]: .*\d+ writes", done.stdout)

    @pytest.mark.postgres
    def test_several_workers_on_postgresql(self, tmp_path: Path, pg_url: str) -> None:
        """The same on PostgreSQL, where the doorbell is LISTEN/NOTIFY."""
        done = run_example(
            "several_workers.py", tmp_path, "--seconds", "3", "--database-url", pg_url
        )
        assert_lines(done.stdout, "executor: ", "hand-offs: ", "no acknowledged step lost")

    def test_examples_leave_no_files_behind(self, tmp_path: Path) -> None:
        """Without --database-url, an example's SQLite file is temporary and removed."""
        run_example("crash_resume.py", tmp_path)
        assert list(tmp_path.iterdir()) == []


class TestReadme:
    """The README lists every example with what it shows."""

    def test_every_example_is_listed(self) -> None:
        """Each examples/*.py appears in the README's Examples section."""
        readme = (ROOT / "README.md").read_text("utf-8")
        section = readme.split("## Examples", 1)
        assert len(section) == 2, "README has no '## Examples' section"
        listed = section[1].split("\n## ", 1)[0]
        missing = [p.name for p in EXAMPLES.glob("*.py") if f"examples/{p.name}" not in listed]
        assert missing == []
