"""``make bench`` works as a user runs it: the benchmark module, end to end, at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from benchmarks._pg import PostgresUnreachableError, run_postgres
from benchmarks._pg_report import render_postgres

ROOT = Path(__file__).parents[2]
#: The server the PostgreSQL rows use (the one the other PostgreSQL tests use).
PG_ADMIN_URL = os.environ.get(
    "SESSIONS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/postgres"  # nothing listens on port 1


@dataclass
class Run:
    """One finished ``checkpoint_bench --smoke`` run."""

    done: subprocess.CompletedProcess[str]
    out: Path

    @property
    def results(self) -> dict[str, Any]:
        """The JSON results it wrote."""
        [report] = self.out.glob("*-smoke.json")
        data: dict[str, Any] = json.loads(report.read_text())
        return data


def _smoke(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    out = tmp / "results"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.checkpoint_bench", "--smoke", "--out", str(out),
         "--workdir", str(tmp), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return Run(done, out)


def _bench_databases() -> set[str] | None:
    """The server's ``ss_bench_*`` databases; ``None`` if it does not answer."""
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            rows = admin.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'ss\\_bench\\_%'"
            ).fetchall()
    except psycopg.Error:
        return None
    return {str(row[0]) for row in rows}


@pytest.fixture(scope="module")
def pg_before() -> set[str] | None:
    """The ``ss_bench_*`` databases before the smoke run (``None``: no server)."""
    return _bench_databases()


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, pg_before: set[str] | None) -> Run:
    """One smoke run with its PostgreSQL rows, shared by the tests that read it."""
    return _smoke(tmp_path_factory.mktemp("smoke"), "--pg-url", PG_ADMIN_URL)


@pytest.mark.slow
class TestCheckpointBench:
    """``python -m benchmarks.checkpoint_bench --smoke``: every scenario runs and reports."""

    def test_smoke_run_prints_the_tables_and_writes_its_results(self, smoke_run: Run) -> None:
        """Exit 0; ours, naive and the raw floor measured in one run; the report files written.

        Sizes are tiny, so only the shape is checked, never a figure.
        """
        stdout = smoke_run.done.stdout
        for heading in ("## Per-save latency", "## Many threads", "## Targets (issue 4)"):
            assert heading in stdout
        assert "naive / ours" in stdout
        assert "The floor on this machine" in stdout
        results = smoke_run.results
        assert {"ours", "naive", "raw", "threads", "reap", "live"} <= results.keys()
        for kind in ("ours", "naive", "raw"):
            assert results[kind]["throughput_1t"] > 0
        assert [row["threads"] for row in results["threads"]] == [1, 4]
        [report] = smoke_run.out.glob("*-smoke.md")
        assert report.read_text() in stdout

    @pytest.mark.postgres
    def test_smoke_run_measures_the_postgresql_rows(
        self, smoke_run: Run, pg_before: set[str] | None
    ) -> None:
        """The same run measured and printed every PostgreSQL row and its targets.

        It ran them on the server and dropped its throwaway database: every row but the
        prepared-statements-off ones (``n/a`` until the option exists) has a rate, and no
        ``ss_bench_*`` database is left behind. Without a server this skips, except with
        ``CI=true``, where it fails.
        """
        if pg_before is None:
            message = f"PostgreSQL is not reachable at {PG_ADMIN_URL}"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message + " (CI must run the PostgreSQL rows)")
            pytest.skip(message)
        stdout = smoke_run.done.stdout
        section = stdout[stdout.index("## PostgreSQL") :]
        for label in ("floor A: bare psycopg", "floor B: bare psycopg", "ours, 1 thread",
                      "ours, 16 threads", "ours, 4 processes x 8 threads",
                      "prepared statements off (PgBouncer mode), 1 thread",
                      "## Targets (PostgreSQL)", "PG 1 thread / floor A",
                      "PG 16 threads / floor B"):  # fmt: skip
            assert label in section
        assert "skipped" not in section
        pg = smoke_run.results["postgres"]
        assert pg["floor_a"] > 0
        assert pg["floor_b"] > 0
        for key in ("ours_1t", "ours_mt", "ours_procs"):
            assert pg[key]["ckpt_per_s"] > 0
        assert len(pg["ours_procs"]["per_process"]) == 4
        for key in ("unprepared_1t", "unprepared_mt"):
            assert pg[key] is None or pg[key]["ckpt_per_s"] > 0
        assert _bench_databases() == pg_before

    def test_no_postgres_prints_no_postgresql_rows(self, tmp_path: Path) -> None:
        """``--no-postgres`` prints no PostgreSQL row and never connects to a server.

        The run is pointed at an unreachable server with ``CI=true``: had it tried to
        connect, it would have failed; its SQLite rows are all there.
        """
        env = {**os.environ, "CI": "true"}
        run = _smoke(tmp_path, "--no-postgres", "--pg-url", UNREACHABLE, env=env)
        assert "PostgreSQL" not in run.done.stdout
        assert "PG " not in run.done.stdout
        assert "postgres" not in run.results
        assert "## Targets (issue 4)" in run.done.stdout
        assert run.results["ours"]["throughput_1t"] > 0


class TestUnreachableServer:
    """The PostgreSQL rows without a server: skipped, unless ``CI=true``."""

    def test_rows_are_skipped_with_the_reason(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Outside CI an unreachable server gives ``skipped: <reason>`` rows, no error."""
        monkeypatch.delenv("CI", raising=False)
        pg = run_postgres("smoke", lambda _: None, UNREACHABLE)
        assert pg["skipped"].startswith("unreachable")
        assert UNREACHABLE in pg["error"]
        rows = [line for line in render_postgres(pg) if line.startswith("| ours")]
        assert len(rows) == 5
        assert all(f"skipped: {pg['skipped']}" in row for row in rows)

    def test_ci_fails_instead_of_skipping(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With ``CI=true`` an unreachable server is an error: CI never skips the PG rows."""
        monkeypatch.setenv("CI", "true")
        with pytest.raises(PostgresUnreachableError, match="CI=true"):
            run_postgres("smoke", lambda _: None, UNREACHABLE)
