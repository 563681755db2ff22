"""The PostgreSQL rows of ``checkpoint_bench``: ours next to the bare-psycopg floors.

Every save of ours goes through the seed's ``save_session_state(sid, full_history,
context, phase, step)`` on a manager made by ``create_session_manager(url)``, with the
workload of the SQLite rows, on a throwaway database (``ss_bench_<random>``) created on
the server for this run and dropped at its end. Measured: floor A and ours from one
thread, floor B and ours from 16 threads, ours from 4 processes x 8 threads (summed), and
ours with prepared statements off (PgBouncer mode) from 1 and 16 threads.

An unreachable server skips the rows (``skipped: <reason>``), except with ``CI=true``,
where it is an error: CI must measure PostgreSQL, never skip it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import psycopg

from actors import SessionManager, create_session_manager
from benchmarks._pg_floor import GROUP, floor_a, floor_b
from benchmarks._workload import Workload

#: The server's admin database, used only to create and drop the run's database.
DEFAULT_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
NOT_AVAILABLE = "n/a (option not available)"
ROOT = Path(__file__).resolve().parents[1]


class PostgresUnreachableError(RuntimeError):
    """The server does not answer and ``CI=true``: the PostgreSQL rows must not be skipped."""


@dataclass(frozen=True)
class PgSizes:
    """Sizes of the PostgreSQL rows in one mode."""

    sessions: int  # x steps: one thread (ours, floor A)
    steps: int
    mt_sessions: int  # x mt_steps: 16 threads (ours, floor B)
    mt_steps: int
    proc_sessions: int  # per process, x mt_steps
    threads: int = GROUP
    processes: int = 4
    proc_threads: int = 8


SIZES = {
    "full": PgSizes(200, 20, 256, 20, 64),
    "quick": PgSizes(50, 10, 64, 10, 32),
    "smoke": PgSizes(4, 3, 16, 3, 8),
}


def database_url(admin_url: str, name: str) -> str:
    """``admin_url`` with its database replaced by ``name``."""
    return urlsplit(admin_url)._replace(path=f"/{name}").geturl()


@contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    """A new empty database on the server for this run; its URL. Dropped afterwards."""
    name = f"ss_bench_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_facts(admin_url: str) -> dict[str, str]:
    """The server's version and ``synchronous_commit``; raises if it does not answer."""
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        version = admin.execute("SHOW server_version").fetchone()
        sync = admin.execute("SHOW synchronous_commit").fetchone()
    return {
        "server": str(version[0]) if version else "?",
        "synchronous_commit": str(sync[0]) if sync else "?",
    }


def drive(
    manager: SessionManager,
    wl: Workload,
    numbers: range,
    steps: int,
    threads: int,
    *,
    ready: Callable[[], None] | None = None,
) -> tuple[int, float]:
    """Save ``steps`` steps of each session ``numbers`` from ``threads`` threads.

    Sessions are created and the step data built before the clock starts; each thread
    saves its own sessions, round-robin, the whole history list every time. ``ready`` is
    called once all is set up, just before the clock starts.

    Returns:
        The checkpoints saved and the wall-clock seconds they took.
    """
    ids = [manager.create_session("copilot", {"model": "m"}) for _ in numbers]
    plans = [[(wl.messages(n, k), wl.context(n, k), wl.phase(k), k) for k in range(steps)]
             for n in numbers]  # fmt: skip
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1) if threads > 1 else None

    def work(index: int) -> None:
        mine = range(index, len(ids), threads)
        histories: list[list[dict[str, Any]]] = [[] for _ in mine]
        if barrier is not None:
            barrier.wait()
        try:
            for k in range(steps):
                for slot, i in enumerate(mine):
                    messages, context, phase, step = plans[i][k]
                    history = histories[slot]
                    history += messages
                    if not manager.save_session_state(ids[i], history, context, phase, step):
                        raise RuntimeError("save refused")  # noqa: TRY301
        except BaseException as error:  # noqa: BLE001 - reported by the calling thread
            errors.append(error)

    if ready is not None:
        ready()
    if barrier is None:
        started = time.perf_counter()
        work(0)
    else:
        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        barrier.wait()
        started = time.perf_counter()
        for worker in workers:
            worker.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    return len(ids) * steps, wall


def ours(
    url: str, wl: Workload, numbers: range, steps: int, threads: int, **options: Any
) -> dict[str, Any] | None:
    """Ours on ``url`` from ``threads`` threads; ``None`` if ``options`` are not accepted.

    Returns:
        ``ckpt_per_s`` and, when the manager reports it, ``mean_batch`` (checkpoints per
        commit).
    """
    try:
        manager = create_session_manager(url, max_live=100_000, **options)
    except TypeError:
        if not options:
            raise
        return None  # an option this revision does not know yet
    before: list[object] = []
    try:
        saved, wall = drive(
            manager,
            wl,
            numbers,
            steps,
            threads,
            ready=lambda: before.append(manager.stats().get("write_batches")),
        )
        after = manager.stats().get("write_batches")
    finally:
        manager.close()
    result: dict[str, Any] = {"threads": threads, "ckpt_per_s": round(saved / wall, 1)}
    if isinstance(before[0], int) and isinstance(after, int) and after > before[0]:
        result["mean_batch"] = round(saved / (after - before[0]), 1)
    return result


def processes(url: str, sizes: PgSizes, first: int) -> dict[str, Any]:
    """Ours from ``sizes.processes`` processes x ``sizes.proc_threads`` threads, summed.

    Each process (``python -m benchmarks._pg_procs``) has its own manager on ``url`` and
    its own ``sizes.proc_sessions`` sessions; all start saving together once every one of
    them is set up, and each reports its own checkpoints per second.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    workers: list[tuple[subprocess.Popen[str], IO[bytes]]] = []
    try:
        for p in range(sizes.processes):
            log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
            command = [sys.executable, "-m", "benchmarks._pg_procs", url,
                       str(first + p * sizes.proc_sessions), str(sizes.proc_sessions),
                       str(sizes.mt_steps), str(sizes.proc_threads)]  # fmt: skip
            worker = subprocess.Popen(
                command, cwd=ROOT, env=env, text=True, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log,
            )  # fmt: skip
            workers.append((worker, log))
        for worker, log in workers:
            assert worker.stdout is not None  # noqa: S101
            if not _await_ready(worker.stdout):
                raise RuntimeError(f"a bench process failed to start: {_tail(worker, log)}")
        for worker, _ in workers:
            assert worker.stdin is not None  # noqa: S101
            worker.stdin.write("go\n")
            worker.stdin.flush()
        rates = []
        for worker, log in workers:
            out, _ = worker.communicate(timeout=600)
            if worker.returncode != 0:
                raise RuntimeError(f"a bench process failed: {_tail(worker, log)}")
            report = json.loads(out.strip().splitlines()[-1])
            rates.append(report["saved"] / report["wall"])
    finally:
        for worker, log in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            log.close()
    return {
        "processes": sizes.processes,
        "threads": sizes.proc_threads,
        "ckpt_per_s": round(sum(rates), 1),
        "per_process": [round(rate, 1) for rate in rates],
    }


def _await_ready(stdout: IO[str]) -> bool:
    """Read the worker's output up to its ``ready`` line; false if it ended first."""
    return any(line.strip() == "ready" for line in stdout)


def _tail(worker: subprocess.Popen[str], log: IO[bytes]) -> str:
    if worker.poll() is None:
        worker.kill()
    worker.wait()
    log.seek(0)
    return log.read().decode(errors="replace")[-2000:]


def _unreachable(admin_url: str, error: Exception) -> dict[str, Any]:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    message = f"PostgreSQL unreachable at {admin_url}: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        raise PostgresUnreachableError(message + " (CI=true: the PostgreSQL rows must run)")
    short = reason.rsplit(" failed: ", 1)[-1].strip()  # "Connection refused", "FATAL: ..."
    return {"skipped": f"unreachable ({short})", "error": message}


def run_postgres(
    mode: str, progress: Callable[[str], None], admin_url: str = DEFAULT_ADMIN_URL
) -> dict[str, Any]:
    """Every PostgreSQL row of one run, or ``{"skipped": reason}`` without a server.

    Raises:
        PostgresUnreachableError: the server does not answer and ``CI=true``.
    """
    sizes, wl = SIZES[mode], Workload()
    try:
        result: dict[str, Any] = server_facts(admin_url)
    except psycopg.Error as error:
        return _unreachable(admin_url, error)
    t = sizes.threads
    one, many = range(1000, 1000 + sizes.sessions), range(2000, 2000 + sizes.mt_sessions)
    unprepared = {"pg_prepared_statements": False}
    with throwaway_database(admin_url) as url:
        result["database"] = urlsplit(url).path.lstrip("/")
        progress("PostgreSQL: floor A (bare psycopg, one checkpoint per transaction)")
        result["floor_a"] = round(floor_a(url, wl, sizes.sessions, sizes.steps), 1)
        progress("PostgreSQL: ours, 1 thread")
        result["ours_1t"] = ours(url, wl, one, sizes.steps, 1)
        progress(f"PostgreSQL: floor B (bare psycopg, {GROUP} checkpoints per pipeline)")
        result["floor_b"] = round(floor_b(url, wl, sizes.mt_sessions, sizes.mt_steps), 1)
        progress(f"PostgreSQL: ours, {t} threads")
        result["ours_mt"] = ours(url, wl, many, sizes.mt_steps, t)
        progress(f"PostgreSQL: ours, {sizes.processes} processes x {sizes.proc_threads} threads")
        result["ours_procs"] = processes(url, sizes, first=10_000)
        progress("PostgreSQL: ours, prepared statements off, 1 and 16 threads")
        result["unprepared_1t"] = ours(url, wl, range(5000, 5000 + sizes.sessions),
                                       sizes.steps, 1, **unprepared)  # fmt: skip
        result["unprepared_mt"] = ours(url, wl, range(6000, 6000 + sizes.mt_sessions),
                                       sizes.mt_steps, t, **unprepared)  # fmt: skip
    result["sizes"] = {
        "sessions": sizes.sessions, "steps": sizes.steps, "mt_sessions": sizes.mt_sessions,
        "mt_steps": sizes.mt_steps, "threads": t, "processes": sizes.processes,
        "proc_threads": sizes.proc_threads, "proc_sessions": sizes.proc_sessions,
    }  # fmt: skip
    return result
