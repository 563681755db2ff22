"""The markdown report of ``checkpoint_bench``: its tables and the targets of issue 4."""

from __future__ import annotations

from typing import Any

from benchmarks._pg_report import render_postgres


def _table(headers: list[str], rows: list[list[str]]) -> str:
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
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def render(results: dict[str, Any]) -> str:
    """The markdown report: tables and targets."""
    meta, ours, naive = results["meta"], results["ours"], results["naive"]
    lengths = [str(x) for x in meta["lengths"]]
    lines = [
        f"# checkpoint_bench ({meta['mode']} mode)",
        "",
        f"- {meta['started']} on {meta['host']} ({meta['cores']} cores), Python "
        f"{meta['python']}, SQLite {meta['sqlite']}",
        "- every save is the seed's `save_session_state(sid, full_history, context, phase, "
        "step)`; workload of ../shared/peer-bench (2 x ~500-byte messages + 20-key context per "
        "step); times are wall clock of that call",
        f"- ours: SQLite WAL, synchronous={meta.get('synchronous', 'NORMAL')}, acknowledged"
        " after commit; naive: the seed's "
        "way (SQLAlchemy ORM, whole history rewritten per save, engine defaults: rollback "
        "journal, synchronous=FULL)",
        "",
        "## Per-save latency vs history length (median / p95 ms)",
        "",
    ]
    first, last = lengths[0], lengths[-1]
    rows = []
    for name, data in (("ours", ours), ("naive", naive)):
        lat = data["latency"]
        row = [name] + [f"{lat[x]['median_ms']:.3f} / {lat[x]['p95_ms']:.3f}" for x in lengths]
        row.append(f"{lat[last]['median_ms'] / lat[first]['median_ms']:.2f}x")
        rows.append(row)
    ratio_row = ["naive / ours"] + [
        f"{naive['latency'][x]['median_ms'] / ours['latency'][x]['median_ms']:.1f}x"
        for x in lengths
    ] + ["-"]  # fmt: skip
    rows.append(ratio_row)
    lines += [_table(["", *[f"L={x}" for x in lengths], f"L{last}/L{first}"], rows), ""]
    payload = meta["payload_bytes"]
    rows = [
        [
            name,
            f"{data['long_total_s']:.2f}",
            f"{data['throughput_1t']:,.0f}",
            f"{data['bytes_per_message']:.0f} ({data['bytes_per_message'] / payload:.2f}x)",
            f"{data['load']['median_ms']:.2f}",
        ]
        for name, data in (("ours", ours), ("naive", naive))
    ]
    rows.append([
        "naive / ours",
        f"{naive['long_total_s'] / ours['long_total_s']:.1f}x",
        f"{ours['throughput_1t'] / naive['throughput_1t']:.1f}x (ours / naive)",
        f"{naive['bytes_per_message'] / ours['bytes_per_message']:.1f}x",
        f"{naive['load']['median_ms'] / ours['load']['median_ms']:.1f}x",
    ])  # fmt: skip
    long_messages = ours["load"]["messages"]
    raw_1t = results["raw"]["throughput_1t"]
    lines += [
        f"## Long session ({long_messages} messages), one-thread throughput "
        f"({meta['tp_sessions']} sessions x {meta['tp_steps']} steps), size, load",
        "",
        _table(
            [
                "",
                "long session total s",
                "1 thread ckpt/s",
                "DB bytes/msg (x payload)",
                f"load {long_messages} msgs ms",
            ],
            rows,
        ),
        "",
        f"JSON payload of one message: {payload:.0f} bytes; a plain SELECT of the "
        f"{long_messages} rows: {ours['plain_select_ms']:.2f} ms.",
        "",
        f"The floor on this machine (bare sqlite3, append-only, no actor, no validation, no "
        f"fencing; benchmarks/_raw.py): {raw_1t:,.0f} ckpt/s from one thread, "
        f"{raw_1t / naive['throughput_1t']:.1f}x naive; ours runs at "
        f"{ours['throughput_1t'] / raw_1t:.0%} of it.",
        "",
        f"## Many threads, each saving its own sessions ({meta['mt_sessions']} sessions x "
        f"{meta['mt_steps']} steps)",
        "",
    ]
    rows = [
        [str(r["threads"]), f"{r['ckpt_per_s']:,}", f"{r['mean_batch']}",
         f"{r['p50_ms']}", f"{r['p99_ms']}", f"{r['floor_ckpt_per_s']:,}",
         f"{r['floor_mean_batch']}", f"{r['ckpt_per_s'] / r['floor_ckpt_per_s']:.0%}"]
        for r in results["threads"]
    ]  # fmt: skip
    headers = ["threads", "ckpt/s", "checkpoints per commit", "p50 ms", "p99 ms",
               "floor ckpt/s", "floor per commit", "ours / floor"]  # fmt: skip
    lines += [
        _table(headers, rows),
        "",
        "The floor: the same threads on bare sqlite3 behind one group-commit thread "
        "(benchmarks/_raw.py: rows encoded in the caller's thread, acknowledged after the "
        "commit; no actor, no validation, no fencing).",
        "",
    ]
    reap, live = results["reap"], results["live"]
    best_mt = max(r["ckpt_per_s"] for r in results["threads"])
    best_floor = max(r["floor_ckpt_per_s"] for r in results["threads"])
    growth = ours["latency"][last]["median_ms"] / ours["latency"][first]["median_ms"]
    speedup = ours["throughput_1t"] / naive["throughput_1t"]
    bytes_ratio = ours["bytes_per_message"] / payload
    load_ratio = ours["load"]["median_ms"] / ours["plain_select_ms"]
    targets = [
        [f"per-save median L={last} / L={first}", f"{growth:.2f}x", "<= 1.3x",
         _verdict(growth <= 1.3)],
        ["1 thread, vs naive", f"{speedup:.1f}x (floor: {raw_1t / naive['throughput_1t']:.1f}x)",
         ">= 20x", _verdict(speedup >= 20)],
        ["1 thread, vs LangGraph saver.put", f"{ours['throughput_1t']:,.0f} ckpt/s",
         "> saver.put (peer-bench: ~2,900)", "see peer-bench"],
        ["many threads, aggregate", f"{best_mt:,} ckpt/s (floor: {best_floor:,})", ">= 10,000",
         _verdict(best_mt >= 10_000)],
        ["DB bytes per message / JSON payload", f"{bytes_ratio:.2f}x", "<= 1.5x",
         _verdict(bytes_ratio <= 1.5)],
        [f"load {long_messages} msgs / plain SELECT", f"{load_ratio:.2f}x", "<= 1.5x",
         _verdict(load_ratio <= 1.5)],
        [f"reap sweep over {reap['sessions']:,} sessions ({reap['expired']:,} expire)",
         f"{reap['sweep_s']:.3f} s (idle sweep {reap['idle_sweep_s']:.3f} s)", "< 1 s",
         _verdict(reap["sweep_s"] < 1)],
        [f"memory per live actor ({live['live']} live)",
         f"{live['rss_kib_per_actor']:.0f} KiB RSS", "report", "-"],
        [f"rehydrate {live['live']} sessions (one thread)",
         f"{live['rehydrate_s']:.2f} s ({live['rehydrate_ms_each']:.2f} ms each)", "report",
         "-"],
    ]  # fmt: skip
    lines += ["## Targets (issue 4)", "", _table(["target", "measured", "goal", ""], targets)]
    lines.append("")
    if "postgres" in results:
        lines += render_postgres(results["postgres"])
    lines += [f"total wall time: {meta['wall_s']:.0f} s", ""]
    return "\n".join(lines)
