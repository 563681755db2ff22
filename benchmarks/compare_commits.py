"""Compare the SQLite checkpoint throughput of two git revisions, interleaved.

``python -m benchmarks.compare_commits REV_A REV_B [--runs 3] [--quick]`` checks each
revision out into a temporary detached ``git worktree`` and runs that revision's own
``python -m benchmarks.checkpoint_bench`` there (``PYTHONPATH`` = the worktree, this
interpreter), A, B, A, B, ... ``--runs`` times each, without the PostgreSQL rows when the
revision knows ``--no-postgres``. From every run it takes the SQLite throughput rows (ours,
naive and the raw floor from one thread; ours and the group-commit floor from many
threads), read from the JSON results the run writes (``--out`` into a temporary directory)
or, for a revision without ``--out``, from its printed tables. It prints each row's median
for A and B and the ratio B / A, then removes the worktrees.

Runs on a small shared VM spread widely: interleaving spreads the drift over both sides,
and the medians of several runs are what to read, not one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GIT = shutil.which("git") or "git"
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass
class Side:
    """One revision: its worktree, the flags its bench knows, the figures of its runs."""

    name: str
    rev: str
    sha: str
    tree: Path
    flags: set[str] = field(default_factory=set)
    runs: list[dict[str, float]] = field(default_factory=list)
    failures: int = 0


def _git(*args: str) -> str:
    done = subprocess.run(
        [GIT, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    return env


def _bench_flags(python: str, tree: Path) -> set[str]:
    """The options the revision's bench knows, from its ``--help``."""
    done = subprocess.run(
        [python, "-m", "benchmarks.checkpoint_bench", "--help"],
        cwd=tree, env=_env(tree), capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{tree}: the bench does not start:\n{done.stderr[-2000:]}")
    return {flag for flag in ("--quick", "--no-postgres", "--out") if flag in done.stdout}


def _threads(count: Any) -> str:
    return f"threads table, {count} thread{'s' * (count != 1)}"


def rows_from_json(results: dict[str, Any]) -> dict[str, float]:
    """The SQLite throughput rows of a results file: label -> checkpoints per second."""
    rows: dict[str, float] = {}
    for kind, data in results.items():
        if kind != "postgres" and isinstance(data, dict):
            value = data.get("throughput_1t")
            if isinstance(value, int | float):
                rows[f"round-robin, 1 thread: {kind}"] = float(value)
    for row in results.get("threads") or []:
        for key, label in (("ckpt_per_s", "ours"), ("floor_ckpt_per_s", "floor")):
            if isinstance(row.get(key), int | float):
                rows[f"{_threads(row['threads'])}: {label}"] = float(row[key])
    return rows


def _number(text: str) -> float | None:
    match = _NUMBER.match(text.strip())
    return float(match.group().replace(",", "")) if match else None


def rows_from_stdout(text: str) -> dict[str, float]:
    """The same rows read from the printed report (a revision whose bench has no ``--out``).

    Columns named ``... ckpt/s`` of its tables, and the raw floor's sentence; only the
    SQLite part: everything from a ``## PostgreSQL`` heading on is not read.
    """
    text = text.split("## PostgreSQL", 1)[0]
    rows: dict[str, float] = {}
    headers: list[str] = []
    for line in text.splitlines():
        if not line.startswith("|"):
            headers = []
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not headers:
            headers = cells
            continue
        if set(cells[0]) <= set("-") or " / " in cells[0]:
            continue  # the separator line, a ratio row
        for header, cell in zip(headers, cells, strict=False):
            value = _number(cell)
            if "ckpt/s" not in header or value is None:
                continue
            if headers[0] == "threads":
                label = f"{_threads(int(cells[0]))}: {'floor' if 'floor' in header else 'ours'}"
            elif "1 thread" in header:
                label = f"round-robin, 1 thread: {cells[0]}"
            else:
                label = f"{cells[0]}: {header}"
            rows[label] = value
    raw = re.search(r"floor on this machine[^:]*: ([\d,.]+) ckpt/s from one thread", text)
    if raw:
        rows["round-robin, 1 thread: raw"] = float(raw.group(1).replace(",", ""))
    return rows


def run_once(side: Side, python: str, mode: list[str], scratch: Path) -> dict[str, float]:
    """One run of the side's bench; its throughput rows."""
    out = Path(tempfile.mkdtemp(prefix=f"results-{side.name}-", dir=scratch))
    command = [python, "-m", "benchmarks.checkpoint_bench", *mode]
    if "--no-postgres" in side.flags:
        command.append("--no-postgres")
    if "--out" in side.flags:
        command += ["--out", str(out)]
    done = subprocess.run(
        command, cwd=side.tree, env=_env(side.tree), capture_output=True, text=True,
        check=False, timeout=3600,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}:\n{done.stderr[-3000:]}")
    reports = sorted(out.glob("*.json"))
    if reports:
        return rows_from_json(json.loads(reports[-1].read_text()))
    return rows_from_stdout(done.stdout)


def report(a: Side, b: Side) -> str:
    """Per-row medians of A and B and the ratio B / A, as a markdown table."""
    labels: list[str] = []
    for run in (*a.runs, *b.runs):
        labels += [label for label in run if label not in labels]

    def median(side: Side, label: str) -> float | None:
        values = [run[label] for run in side.runs if label in run]
        return statistics.median(values) if values else None

    lines = [
        f"A = {a.rev} ({a.sha[:10]}): {len(a.runs)} runs; "
        f"B = {b.rev} ({b.sha[:10]}): {len(b.runs)} runs; medians in ckpt/s",
        "",
        "| row | A | B | B / A |",
        "|---|---:|---:|---:|",
    ]
    for label in labels:
        ma, mb = median(a, label), median(b, label)
        ratio = f"{mb / ma:.2f}x" if ma and mb is not None else "-"
        cells = [f"{m:,.0f}" if m is not None else "-" for m in (ma, mb)]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Check both revisions out, run them interleaved, print the medians, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev_a")
    parser.add_argument("rev_b")
    parser.add_argument("--runs", type=int, default=3, help="runs of each revision")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="the bench's --quick sizes")
    sizes.add_argument("--smoke", action="store_true", help="tiny sizes: does it run?")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the runs")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="compare-commits-"))
    sides: list[Side] = []
    try:
        for name, rev in (("A", args.rev_a), ("B", args.rev_b)):
            sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
            tree = scratch / name
            _git("worktree", "add", "--detach", "--quiet", str(tree), sha)
            side = Side(name, rev, sha, tree)
            sides.append(side)
            try:
                side.flags = _bench_flags(args.python, tree)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                print(f"{name} = {rev}: {error}", file=sys.stderr)
                return 2
        for i in range(args.runs):
            for side in sides:
                mode = ["--quick"] if args.quick else ["--smoke"] if args.smoke else []
                print(f"run {i + 1}/{args.runs}: {side.name} = {side.rev}", file=sys.stderr)
                try:
                    side.runs.append(run_once(side, args.python, mode, scratch))
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as error:
                    side.failures += 1
                    print(f"  {side.name} failed: {error}", file=sys.stderr)
        print(report(*sides))
    except subprocess.CalledProcessError as error:
        print(f"{' '.join(error.cmd)}: {error.stderr.strip()}", file=sys.stderr)
        return 2
    finally:
        for side in sides:
            subprocess.run([GIT, "worktree", "remove", "--force", str(side.tree)],
                           cwd=ROOT, check=False, capture_output=True)  # fmt: skip
        shutil.rmtree(scratch, ignore_errors=True)
    failures = sum(side.failures for side in sides)
    if failures:
        print(f"{failures} run(s) failed", file=sys.stderr)
    return 1 if failures or not all(side.runs for side in sides) else 0


if __name__ == "__main__":
    sys.exit(main())
