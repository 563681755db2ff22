"""``make bench`` works as a user runs it: the benchmark module, end to end, at tiny sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
class TestCheckpointBench:
    """``python -m benchmarks.checkpoint_bench --smoke``: every scenario runs and reports."""

    def test_smoke_run_prints_the_tables_and_writes_its_results(self, tmp_path: Path) -> None:
        """Exit 0; ours, naive and the raw floor measured in one run; the report files written.

        Sizes are tiny, so only the shape is checked, never a figure.
        """
        out = tmp_path / "results"
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.checkpoint_bench", "--smoke", "--out", str(out),
             "--workdir", str(tmp_path)],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        for heading in ("## Per-save latency", "## Many threads", "## Targets (issue 4)"):
            assert heading in done.stdout
        assert "naive / ours" in done.stdout
        assert "The floor on this machine" in done.stdout
        [report] = out.glob("*-smoke.json")
        results = json.loads(report.read_text())
        assert {"ours", "naive", "raw", "threads", "reap", "live"} <= results.keys()
        for kind in ("ours", "naive", "raw"):
            assert results[kind]["throughput_1t"] > 0
        assert [row["threads"] for row in results["threads"]] == [1, 4]
        assert report.with_suffix(".md").read_text() in done.stdout
