"""examples/two_workers.py end to end: two processes on PostgreSQL, one killed with -9."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from actors import create_session_manager

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
@pytest.mark.postgres
class TestTwoWorkers:
    """The survivor picks up the killed worker's sessions and loses nothing."""

    def test_runs_kills_one_worker_and_the_other_carries_on(
        self, pg_url: str, tmp_path: Path
    ) -> None:
        """Exit 0; the output reports the kill, three pick-ups and no lost checkpoint."""
        done = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "two_workers.py"), "--database-url", pg_url],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        out = done.stdout
        assert "killed worker-1 (kill -9)" in out
        picked = re.findall(r"worker-2: picked up session (\w+) from worker-1 at step (\d+)", out)
        assert len(picked) == 3
        acked = re.search(r"its last acknowledged steps: (\{.*\})", out)
        assert acked is not None
        assert "no acknowledged checkpoint lost" in out
        assert "every session was last written by: worker-2" in out
        takeover = re.search(r"3 sessions (\d+\.\d+)s after the kill", out)
        assert takeover is not None
        assert 0 < float(takeover.group(1)) < 6
        with create_session_manager(pg_url) as manager:
            sessions = manager.list_sessions(user_id="demo")
            assert len(sessions) == 6
            for summary in sessions:
                info = manager.info(summary["session_id"])
                assert info["owner"] is None  # worker-2 closed and released everything
                state = manager.load(summary["session_id"])
                steps = [int(m["content"]) for m in state["conversation_history"]]
                assert steps == list(range(1, len(steps) + 1))  # no step lost or repeated
                assert state["context_variables"]["step"] == len(steps)
