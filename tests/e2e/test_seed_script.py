"""The seed's own test script passes, unchanged but for its import line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent / "scripts" / "test_stage_3.py"
ROOT = Path(__file__).parents[2]


class TestSeedScript:
    """The seed's ``test_stage_3.py`` as its authors run it."""

    def test_script_passes_in_a_fresh_process(self, tmp_path: Path) -> None:
        """Run as ``python test_stage_3.py``: sync methods inside ``asyncio.run`` work.

        The script never closes its manager, so a clean exit within the timeout also
        proves the exit hook stops the (non-daemon) actor threads.
        """
        env = {**os.environ, "SESSIONS_DATABASE_URL": f"sqlite:///{tmp_path / 'seed.db'}"}
        env["PYTHONPATH"] = str(ROOT)
        done = subprocess.run(
            [sys.executable, str(SCRIPT)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "All SessionManager tests passed!" in done.stdout
        for step in ("Created", "Saved", "Loaded", "Suspended", "Resumed", "Listed",
                     "Completed", "Deleted"):  # fmt: skip
            assert f"✅ {step}" in done.stdout

    def test_default_database_is_a_file_in_the_working_directory(self, tmp_path: Path) -> None:
        """Without a URL or $SESSIONS_DATABASE_URL the script uses ./sessions.db."""
        env = {k: v for k, v in os.environ.items() if k != "SESSIONS_DATABASE_URL"}
        env["PYTHONPATH"] = str(ROOT)
        done = subprocess.run(
            [sys.executable, str(SCRIPT)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "sessions.db").exists()
