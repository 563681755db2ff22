"""Checkpoint benchmark: this project next to the seed's naive way, in one run.

Run with ``make bench`` (or ``python -m benchmarks.checkpoint_bench [--quick]``). Every
measurement goes through the seed's API, ``save_session_state(sid, full_history, context,
phase, step)``, with the whole history list as callers pass it, on SQLite files under a
temporary directory. The workload is the one of ``../shared/peer-bench`` (2 new ~500-byte
messages and a 20-key context per step, the phase changes every 25 steps).

It prints the tables and the targets of issue 4 (measured value, target, met or not), and
writes ``benchmarks/results/<date>-<host>-<mode>.md`` and ``.json``. The same run measures
the PostgreSQL rows (benchmarks/_pg.py) unless ``--no-postgres``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from actors import SessionManager, create_session_manager
from benchmarks._naive import NaiveStore
from benchmarks._pg import DEFAULT_ADMIN_URL, run_postgres
from benchmarks._raw import RawAppendStore, RawGroupCommitStore
from benchmarks._report import render
from benchmarks._workload import Workload
from persistence.sqlite import sqlite_datetime

RESULTS = Path(__file__).resolve().parent / "results"
_clock = time.perf_counter


class SeedAPI(Protocol):
    """What both contenders offer: the seed's create and save."""

    def save_session_state(  # noqa: PLR0917, D102
        self,
        session_id: str,
        conversation_history: list[dict[str, Any]],
        context_variables: dict[str, Any],
        current_phase: str,
        current_step: int | None = None,
        plan_data: dict[str, Any] | None = None,
    ) -> bool: ...


@dataclass(frozen=True)
class Mode:
    """Sizes of one run."""

    name: str
    lengths: tuple[int, ...]
    samples: int
    tp_sessions: int
    tp_steps: int
    thread_counts: tuple[int, ...]
    mt_sessions: int
    mt_steps: int
    reap_sessions: int
    live_sessions: int
    load_repeats: int


MODES = {
    "full": Mode("full", (10, 100, 1000, 4000), 40, 200, 20, (1, 4, 16, 64), 256, 20,
                 100_000, 1000, 7),
    "quick": Mode("quick", (10, 100, 1000), 20, 50, 10, (1, 16), 64, 10, 20_000, 200, 3),
    # Only proves the benchmark runs end to end (the test suite uses it); no figures.
    "smoke": Mode("smoke", (10, 40), 3, 4, 3, (1, 4), 8, 3, 500, 10, 1),
}  # fmt: skip


class Durability:
    """The ``synchronous`` level of ours and of the raw floors in this run (``--synchronous``)."""

    synchronous = "NORMAL"


class Contender:
    """One way of saving: ours (the manager) or the naive store, on one file."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self.manager: SessionManager | None = None
        self.naive: NaiveStore | RawAppendStore | None = None
        if kind == "ours":
            self.manager = create_session_manager(
                f"sqlite:///{path}",
                max_live=100_000,
                sqlite_synchronous=Durability.synchronous,  # type: ignore[arg-type]
            )
        elif kind == "raw":
            self.naive = RawAppendStore(str(path), Durability.synchronous)
        elif kind == "raw-group":
            self.naive = RawGroupCommitStore(str(path), Durability.synchronous)
        else:
            self.naive = NaiveStore(str(path))

    @property
    def api(self) -> SeedAPI:
        """The seed API of this contender."""
        api = self.manager if self.manager is not None else self.naive
        assert api is not None  # noqa: S101
        return api

    def create(self) -> str:
        """A new empty session (untimed)."""
        if self.manager is not None:
            return self.manager.create_session("copilot", {"model": "m"})
        assert self.naive is not None  # noqa: S101
        return self.naive.create_session()

    def load(self, session_id: str) -> dict[str, Any] | None:
        """The seed's load."""
        if self.manager is not None:
            return self.manager.load_session_state(session_id)
        assert isinstance(self.naive, NaiveStore)  # noqa: S101 - the floor is never loaded
        return self.naive.load_session_state(session_id)

    def close(self) -> None:
        """Close the manager or the engine."""
        if self.manager is not None:
            self.manager.close()
        if self.naive is not None:
            self.naive.close()


class Session:
    """A session driven step by step, with the full history list a caller keeps."""

    def __init__(self, contender: Contender, workload: Workload, number: int) -> None:
        self.contender = contender
        self.workload = workload
        self.number = number
        self.session_id = contender.create()
        self.history: list[dict[str, Any]] = []
        self.step = 0

    def prepare(self) -> tuple[dict[str, Any], str, int]:
        """Append the next step's messages (untimed); return its context, phase, step."""
        wl, k = self.workload, self.step
        self.history.extend(wl.messages(self.number, k))
        self.step += 1
        return wl.context(self.number, k), wl.phase(k), k

    def save(self, context: dict[str, Any], phase: str, step: int) -> float:
        """The timed call; return its seconds."""
        api = self.contender.api
        started = _clock()
        ok = api.save_session_state(self.session_id, self.history, context, phase, step)
        elapsed = _clock() - started
        if not ok:
            raise RuntimeError(f"{self.contender.kind}: save refused")
        return elapsed

    def advance(self, steps: int) -> list[float]:
        """Run ``steps`` steps; return each save's seconds."""
        return [self.save(*self.prepare()) for _ in range(steps)]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 4)


def _pct(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(fraction * len(ordered) + 0.999) - 1))]


# ---------------------------------------------------------------------------- scenarios


def latency_by_length(kind: str, mode: Mode, workdir: Path, wl: Workload) -> dict[str, Any]:
    """Per-save latency at each history length, and the long session's size and load."""
    result: dict[str, Any] = {"latency": {}}
    short = [length for length in mode.lengths if length < 1000]
    contender = Contender(kind, workdir / f"{kind}-a.db")
    try:
        warm = Session(contender, wl, 99_999)
        warm.advance(50)
        for length in short:
            k = max(1, min(mode.samples, length // 20))
            sessions = -(-mode.samples // k)
            times: list[float] = []
            for s in range(sessions):
                session = Session(contender, wl, 10_000 + length * 100 + s)
                session.advance(length // 2 - k)
                times += session.advance(k)
            result["latency"][str(length)] = _summary(times)
    finally:
        contender.close()
    long_path = workdir / f"{kind}-b.db"
    contender = Contender(kind, long_path)
    try:
        session = Session(contender, wl, 0)
        steps = max(mode.lengths) // 2
        gc.collect()
        per_step = session.advance(steps)
        for length in mode.lengths:
            if length >= 1000:
                end = length // 2
                result["latency"][str(length)] = _summary(per_step[end - mode.samples : end])
        result["long_total_s"] = sum(per_step)
        result["load"] = _load_times(contender, session.session_id, mode.load_repeats)
        result["load"]["messages"] = len(session.history)
    finally:
        contender.close()
    result["bytes_per_message"] = _bytes_per_message(long_path, len(session.history))
    if kind == "ours":
        result["plain_select_ms"] = _plain_select_ms(long_path, session.session_id, mode)
    return result


def _summary(times: list[float]) -> dict[str, float]:
    return {
        "median_ms": _ms(statistics.median(times)),
        "p95_ms": _ms(_pct(times, 0.95)),
        "n": len(times),
    }


def _load_times(contender: Contender, session_id: str, repeats: int) -> dict[str, Any]:
    times = []
    state = contender.load(session_id)  # the first call sets up connections
    for _ in range(repeats):
        gc.collect()
        started = _clock()
        state = contender.load(session_id)
        times.append(_clock() - started)
    assert state is not None  # noqa: S101
    return {"median_ms": _ms(statistics.median(times))}


def _plain_select_ms(path: Path, session_id: str, mode: Mode) -> float:
    """A plain SELECT of the session's message rows on a fresh sqlite3 connection."""
    connection = sqlite3.connect(path)
    try:
        query = (
            "SELECT role, agent, content, timestamp, extra FROM session_messages"
            " WHERE session_id = ? ORDER BY seq"
        )
        connection.execute(query, (session_id,)).fetchall()
        times = []
        for _ in range(mode.load_repeats):
            gc.collect()
            started = _clock()
            connection.execute(query, (session_id,)).fetchall()
            times.append(_clock() - started)
    finally:
        connection.close()
    return _ms(statistics.median(times))


def _bytes_per_message(path: Path, messages: int) -> float:
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return round(size / messages, 1)


def one_thread_throughput(kind: str, mode: Mode, workdir: Path, wl: Workload) -> float:
    """Sessions x steps, round-robin, from one thread: checkpoints per second."""
    contender = Contender(kind, workdir / f"{kind}-d.db")
    try:
        sessions = [Session(contender, wl, 1000 + i) for i in range(mode.tp_sessions)]
        plans = [
            [(wl.messages(s.number, k), wl.context(s.number, k), wl.phase(k), k) for s in sessions]
            for k in range(mode.tp_steps)
        ]
        api = contender.api
        gc.collect()
        started = _clock()
        for round_ in plans:
            for session, (messages, context, phase, step) in zip(sessions, round_, strict=True):
                session.history += messages
                if not api.save_session_state(session.session_id, session.history, context,
                                              phase, step):  # fmt: skip
                    raise RuntimeError("save refused")
        wall = _clock() - started
    finally:
        contender.close()
    return mode.tp_sessions * mode.tp_steps / wall


def many_threads(
    mode: Mode, workdir: Path, wl: Workload, threads: int, kind: str = "ours"
) -> dict[str, float]:
    """``threads`` threads, each saving its own sessions: aggregate checkpoints per second.

    ``kind`` is ``ours`` or ``raw-group`` (the floor: bare sqlite3 behind a group commit).
    """
    contender = Contender(kind, workdir / f"{kind}-mt-{threads}.db")
    try:
        sessions = [Session(contender, wl, 2000 + i) for i in range(mode.mt_sessions)]
        plans = [
            [(wl.messages(s.number, k), wl.context(s.number, k), wl.phase(k), k)
             for k in range(mode.mt_steps)]
            for s in sessions
        ]  # fmt: skip
        before = _commit_counts(contender)
        barrier = threading.Barrier(threads + 1)
        errors: list[BaseException] = []
        api = contender.api

        def work(index: int) -> None:
            mine = range(index, len(sessions), threads)
            barrier.wait()
            try:
                for k in range(mode.mt_steps):
                    for i in mine:
                        messages, context, phase, step = plans[i][k]
                        session = sessions[i]
                        session.history += messages
                        if not api.save_session_state(
                            session.session_id, session.history, context, phase, step
                        ):
                            raise RuntimeError("save refused")  # noqa: TRY301
            except BaseException as error:  # noqa: BLE001 - reported by the main thread
                errors.append(error)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        gc.collect()
        barrier.wait()
        started = _clock()
        for worker in workers:
            worker.join()
        wall = _clock() - started
        if errors:
            raise errors[0]
        after = _commit_counts(contender)
    finally:
        contender.close()
    total = mode.mt_sessions * mode.mt_steps
    result: dict[str, Any] = {
        "threads": threads,
        "ckpt_per_s": round(total / wall),
        "mean_batch": round(total / max(1, after["commits"] - before["commits"]), 1),
    }
    if kind == "ours":
        result |= {"p50_ms": after["p50_ms"], "p99_ms": after["p99_ms"]}
    return result


def _commit_counts(contender: Contender) -> dict[str, Any]:
    """Commits so far (and our latency percentiles) of a contender."""
    if contender.manager is not None:
        stats = contender.manager.stats()
        return {"commits": stats["write_batches"], "p50_ms": stats["checkpoint_p50_ms"],
                "p99_ms": stats["checkpoint_p99_ms"]}  # fmt: skip
    assert isinstance(contender.naive, RawGroupCommitStore)  # noqa: S101
    return {"commits": contender.naive.commits}


def reap_sweep(mode: Mode, workdir: Path) -> dict[str, float]:
    """One sweep over ``reap_sessions`` stored sessions, 10 % of them expired."""
    path = workdir / "reap.db"
    manager = create_session_manager(f"sqlite:///{path}")
    manager.close()  # the schema only
    now = datetime.now(UTC)
    connection = sqlite3.connect(path)
    try:
        rows_sessions, rows_states = [], []
        for i in range(mode.reap_sessions):
            sid = f"00000000-0000-0000-0000-{i:012d}"
            created = sqlite_datetime(now - timedelta(days=2))
            expires = sqlite_datetime(now + (timedelta(hours=-1) if i % 10 == 0 else
                                             timedelta(hours=5)))  # fmt: skip
            rows_sessions.append((sid, None, f"s{i}", created, created, "active", "{}", None))
            rows_states.append((sid, "copilot", "{}", None, "init", None, "active", created,
                                created, expires, 1, 0, None, 1, None))  # fmt: skip
        connection.executemany("INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?)", rows_sessions)
        connection.executemany(
            "INSERT INTO session_states (session_id, mode, context_variables, plan_data,"
            " current_phase, current_step, status, created_at, updated_at, expires_at, version,"
            " message_count, owner, epoch, lease_expires_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows_states,
        )
        connection.commit()
    finally:
        connection.close()
    manager = create_session_manager(f"sqlite:///{path}")
    try:
        started = _clock()
        counts = manager.sweep()
        first = _clock() - started
        started = _clock()
        manager.sweep()
        again = _clock() - started
    finally:
        manager.close()
    return {
        "sessions": mode.reap_sessions,
        "expired": counts["sessions_expired"],
        "sweep_s": round(first, 4),
        "idle_sweep_s": round(again, 4),
    }


def _rss_kib() -> int:
    with Path("/proc/self/status").open() as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def live_actors(mode: Mode, workdir: Path, wl: Workload) -> dict[str, float]:
    """Memory per live session actor, and the time to rehydrate them all after a restart."""
    path = workdir / "live.db"
    count = mode.live_sessions
    manager = create_session_manager(f"sqlite:///{path}", max_live=count * 2)
    history = wl.messages(0, 0) * 5
    try:
        gc.collect()
        before = _rss_kib()
        ids = []
        for i in range(count):
            sid = manager.create_session("copilot", {"n": i})
            manager.save_session_state(sid, history, wl.context(i, 0), "intake", 0)
            ids.append(sid)
        gc.collect()
        per_actor = (_rss_kib() - before) / count
        live = len(manager.live_sessions())
    finally:
        manager.close()
    manager = create_session_manager(f"sqlite:///{path}", max_live=count * 2)
    try:
        started = _clock()
        for sid in ids:
            manager.live(sid)
        rehydrate = _clock() - started
    finally:
        manager.close()
    return {
        "live": live,
        "rss_kib_per_actor": round(per_actor, 1),
        "rehydrate_s": round(rehydrate, 3),
        "rehydrate_ms_each": round(rehydrate / count * 1000, 3),
    }


# ---------------------------------------------------------------------------- report


def _payload_bytes(wl: Workload) -> float:
    sizes = [
        len(json.dumps(m, separators=(",", ":")).encode())
        for k in range(200)
        for m in wl.messages(0, k)
    ]
    return statistics.fmean(sizes)


def run(
    mode: Mode, workdir: Path, progress: Callable[[str], None], pg_url: str | None = None
) -> dict[str, Any]:
    """Every scenario, ours and naive (and PostgreSQL's given ``pg_url``); a JSON-ready dict."""
    wl = Workload()
    started = _clock()
    meta = {
        "mode": mode.name,
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "host": platform.node(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "lengths": list(mode.lengths),
        "tp_sessions": mode.tp_sessions,
        "tp_steps": mode.tp_steps,
        "mt_sessions": mode.mt_sessions,
        "mt_steps": mode.mt_steps,
        "payload_bytes": round(_payload_bytes(wl), 1),
        "synchronous": Durability.synchronous,
    }
    results: dict[str, Any] = {"meta": meta}
    for kind in ("ours", "naive"):
        progress(f"{kind}: latency by history length, long session, load")
        data = latency_by_length(kind, mode, workdir, wl)
        progress(f"{kind}: one-thread throughput")
        data["throughput_1t"] = round(one_thread_throughput(kind, mode, workdir, wl), 1)
        results[kind] = data
    progress("raw SQLite floor: one-thread throughput")
    results["raw"] = {"throughput_1t": round(one_thread_throughput("raw", mode, workdir, wl), 1)}
    results["threads"] = []
    for threads in mode.thread_counts:
        progress(f"ours and the raw group-commit floor: {threads} threads")
        row = many_threads(mode, workdir, wl, threads)
        floor = many_threads(mode, workdir, wl, threads, kind="raw-group")
        row["floor_ckpt_per_s"] = floor["ckpt_per_s"]
        row["floor_mean_batch"] = floor["mean_batch"]
        results["threads"].append(row)
    progress(f"ours: reap sweep over {mode.reap_sessions:,} sessions")
    results["reap"] = reap_sweep(mode, workdir)
    progress(f"ours: {mode.live_sessions} live actors, rehydration")
    results["live"] = live_actors(mode, workdir, wl)
    if pg_url is not None:
        results["postgres"] = run_postgres(mode.name, progress, pg_url)
    meta["wall_s"] = round(_clock() - started, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the report, write the results files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="smaller sizes (~15 s)")
    sizes.add_argument("--smoke", action="store_true", help="tiny sizes: does it run at all?")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument("--workdir", type=Path, default=None, help="where databases go")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL rows")
    parser.add_argument("--pg-url", default=DEFAULT_ADMIN_URL, help="PostgreSQL admin database")
    parser.add_argument(
        "--synchronous",
        type=str.upper,
        choices=("NORMAL", "FULL"),
        default="NORMAL",
        help="SQLite synchronous level of ours and the raw floors (the naive way keeps FULL)",
    )
    args = parser.parse_args(argv)
    Durability.synchronous = args.synchronous
    mode = MODES["quick" if args.quick else "smoke" if args.smoke else "full"]

    def progress(text: str) -> None:
        print(f"  ... {text}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="checkpoint-bench-", dir=args.workdir) as tmp:
        results = run(mode, Path(tmp), progress, None if args.no_postgres else args.pg_url)
    text = render(results)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now(UTC):%Y-%m-%d}-{platform.node() or 'host'}-{mode.name}"
    if args.synchronous != "NORMAL":
        stem += f"-sync-{args.synchronous.lower()}"
    (args.out / f"{stem}.md").write_text(text)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out / stem}.md and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
