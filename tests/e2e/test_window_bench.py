"""``python -m benchmarks.window_bench`` runs as a user runs it, at tiny sizes, both backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


class TestWindowBench:
    """The sliding-window benchmark prints its rows and its target line for each database."""

    def test_prints_every_row_for_sqlite_and_postgresql(self, pg_server: str) -> None:
        """Every row, on SQLite and on the real PostgreSQL (a throwaway database)."""
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.window_bench", "--saves", "5", "--window", "20",
             "--pg-admin-url", pg_server],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        for database in ("SQLite", "PostgreSQL"):
            section = done.stdout.split(f"\n{database}:", 1)[1]
            for row in ("append (sampled)", "window (sampled)", "window stored whole",
                        "append (full)", "window (full)", "target: a window save"):  # fmt: skip
                assert row in section
