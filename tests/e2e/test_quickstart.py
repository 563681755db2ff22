"""The quickstart runs as a user runs it and leaves a completed, whole session."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from actors import create_session_manager

ROOT = Path(__file__).parents[2]


class TestQuickstart:
    """``python examples/quickstart.py`` end to end, in a fresh process."""

    def test_runs_restarts_and_completes(self, tmp_path: Path) -> None:
        """Exit 0; the output shows each checkpoint, the restart and the completion."""
        url = f"sqlite:///{tmp_path / 'quick.db'}"
        done = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--database-url", url],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert out.count("checkpoint v") == 8
        assert "closing the manager, as if the process restarted" in out
        assert "new manager resumed" in out
        assert "[4/4] completed: status=completed" in out
        session_id = re.search(r"created session (\S+)", out)
        assert session_id is not None
        with create_session_manager(url) as manager:
            state = manager.load(session_id.group(1))
        assert state["status"] == "completed"
        assert len(state["conversation_history"]) == 16
        assert state["plan_data"] == {"steps": [
            "load the CMB maps", "estimate the power spectrum", "fit the cosmological model",
        ]}  # fmt: skip
