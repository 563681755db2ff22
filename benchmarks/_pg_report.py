"""The PostgreSQL section of the ``checkpoint_bench`` report: its table and its targets."""

from __future__ import annotations

from typing import Any

from benchmarks._pg import NOT_AVAILABLE

#: The rows of the table: (key in the results, label, key of the floor it is read against).
ROWS = (
    ("floor_a", "floor A: bare psycopg, 1 checkpoint per transaction", None),
    ("floor_b", "floor B: bare psycopg, 16 checkpoints per pipelined transaction", None),
    ("ours_1t", "ours, 1 thread", "floor_a"),
    ("ours_mt", "ours, 16 threads", "floor_b"),
    ("ours_procs", "ours, 4 processes x 8 threads", "floor_b"),
    ("unprepared_1t", "ours, prepared statements off (PgBouncer mode), 1 thread", "floor_a"),
    ("unprepared_mt", "ours, prepared statements off (PgBouncer mode), 16 threads", "floor_b"),
)
#: The targets: (key of ours, key of the floor, least ratio, label).
TARGETS = (
    ("ours_1t", "floor_a", 0.8, "PG 1 thread / floor A"),
    ("ours_mt", "floor_b", 0.5, "PG 16 threads / floor B"),
)


def _rate(value: Any) -> float | None:
    """The checkpoints per second of a row (a number or a dict), ``None`` if not measured."""
    if isinstance(value, dict):
        value = value.get("ckpt_per_s")
    return float(value) if isinstance(value, int | float) else None


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(widths[i]) for i, h in enumerate(headers)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                          for i, c in enumerate(row)) + " |"
        for row in rows
    ]  # fmt: skip
    return lines


def render_postgres(pg: dict[str, Any]) -> list[str]:
    """The section's markdown lines: a table of rows and one of targets."""
    skipped = pg.get("skipped")
    lines = ["## PostgreSQL", ""]
    if skipped is not None:
        lines += [f"Not measured: {pg.get('error', skipped)}", ""]
    else:
        s = pg["sizes"]
        lines += [
            f"PostgreSQL {pg['server']} (synchronous_commit={pg['synchronous_commit']}), "
            f"throwaway database `{pg['database']}`; 1 thread: {s['sessions']} sessions x "
            f"{s['steps']} steps; {s['threads']} threads: {s['mt_sessions']} x "
            f"{s['mt_steps']}; {s['processes']} processes x {s['proc_threads']} threads: "
            f"{s['proc_sessions']} sessions each x {s['mt_steps']} (rates summed). Floors: "
            "benchmarks/_pg_floor.py (UPDATE guarded by version + INSERT of the messages, "
            "prepared statements, two tables with primary keys only).",
            "",
        ]
    rows = []
    for key, label, floor in ROWS:
        value, base = pg.get(key), _rate(pg.get(floor)) if floor else None
        rate = _rate(value)
        if skipped is not None:
            cells = [f"skipped: {skipped}", "-", "-"]
        elif rate is None:
            cells = [NOT_AVAILABLE, "-", "-"]
        else:
            batch = value.get("mean_batch", "-") if isinstance(value, dict) else "-"
            ratio = f"{rate / base:.2f}x floor {floor[-1].upper()}" if floor and base else "-"
            cells = [f"{rate:,.0f}", str(batch), ratio]
        rows.append([label, *cells])
    lines += _table(["", "ckpt/s", "checkpoints per commit", "ours / floor"], rows)
    targets = []
    for key, floor, least, label in TARGETS:
        rate, base = _rate(pg.get(key)), _rate(pg.get(floor))
        if rate is None or base is None:
            measured = f"skipped: {skipped}" if skipped else NOT_AVAILABLE
            targets.append([label, measured, f">= {least}x", "-"])
        else:
            share = rate / base
            measured = f"{share:.2f}x ({rate:,.0f} / {base:,.0f} ckpt/s)"
            verdict = "met" if share >= least else "NOT met"
            targets.append([label, measured, f">= {least}x", verdict])
    lines += ["", "## Targets (PostgreSQL)", ""]
    lines += _table(["target", "measured", "goal", ""], targets)
    return [*lines, ""]
