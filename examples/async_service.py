"""An asyncio service serving many concurrent sessions through the async twins.

Each simulated client opens a session, has a few turns with its runtime (an async
"LLM call" per turn, then a checkpoint of the runtime's snapshot), and completes it; all
clients run at once. The manager's ``a``-prefixed twins (``acreate_session``,
``aunit_of_work``, ``acomplete_session`` ...) wait for the actors and the database off the
event loop, so the loop never blocks: a heartbeat task measures the loop's worst lag (how
late a 5 ms sleep wakes up) and prints it with the throughput. No network, no LLM.

    python examples/async_service.py [--sessions 200] [--turns 5] [--database-url URL]
                                     [--runs 3] [--noop-baseline]

Without ``--database-url`` it uses a SQLite file in a temporary directory, removed at the end.
With ``--runs N`` it serves N times and prints the median lags; ``--noop-baseline`` runs the
same clients against a manager that stores nothing (each call one thread hop), so the lag
the library adds reads beside the lag of the workload itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from actors import SessionManager, create_session_manager

HEARTBEAT = 0.005  # seconds between heartbeats
LLM_LATENCY = 0.01  # seconds a simulated model call takes (awaited, like real I/O)


class ChatRuntime:
    """A session's live chat: built by its actor from the last checkpoint."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.history: list[dict[str, Any]] = state["conversation_history"]
        self.turns = len(self.history) // 2

    async def answer(self, question: str) -> str:
        """One turn: the (simulated) model call, awaited on the service's loop."""
        await asyncio.sleep(LLM_LATENCY)  # the model call: real I/O would be awaited too
        reply = f"answer {self.turns + 1} to {question!r}"
        self.history += [{"role": "user", "content": question},
                         {"role": "assistant", "content": reply}]  # fmt: skip
        self.turns += 1
        return reply

    def snapshot(self) -> dict[str, Any]:
        """What ``aunit_of_work`` checkpoints when a turn is done."""
        return {
            "conversation_history": self.history,
            "context_variables": {"turns": self.turns},
            "current_phase": "chat",
            "current_step": self.turns,
        }


class LoopLag:
    """Measures how late the event loop wakes a task that sleeps ``HEARTBEAT`` seconds."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.beats = 0
        self.total = 0.0

    async def run(self) -> None:
        """Beat until cancelled."""
        loop = asyncio.get_running_loop()
        self.lags: list[float] = []
        while True:
            started = loop.time()
            await asyncio.sleep(HEARTBEAT)
            lag = loop.time() - started - HEARTBEAT
            self.worst = max(self.worst, lag)
            self.total += lag
            self.beats += 1
            self.lags.append(lag)

    def p99(self) -> float:
        """The 99th percentile of the lags, in seconds."""
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


async def client(manager: SessionManager, number: int, turns: int) -> tuple[str, int]:
    """One client: open a session, chat, complete it; return its id and turns checkpointed."""
    user = manager.for_user(f"user-{number % 20}")
    session_id = await user.acreate_session("chat", {"client": number})
    for turn in range(turns):
        async with manager.aunit_of_work(session_id) as work:
            await work.runtime.answer(f"question {turn + 1} from client {number}")
    info = await manager.aget_session_info(session_id)
    if info is None or info["current_step"] != turns:
        raise RuntimeError(f"session {session_id} did not checkpoint every turn: {info}")
    if not await manager.acomplete_session(session_id):
        raise RuntimeError(f"session {session_id} could not be completed")
    return session_id, turns


async def serve(database_url: str, sessions: int, turns: int) -> tuple[float, float]:
    lag = LoopLag()
    heartbeat = asyncio.create_task(lag.run())
    await asyncio.sleep(0.05)  # a baseline before the load starts
    # Opening the store (and migrating it) is blocking work: do it off the loop too.
    manager = await asyncio.to_thread(
        create_session_manager, database_url, runtime_factory=ChatRuntime
    )
    # A latency-sensitive service: what was allocated at start-up (imports, the engine)
    # lives forever, so keep the cyclic GC from scanning it again in every full pass.
    gc.freeze()
    async with manager:
        print(f"serving {sessions} concurrent sessions x {turns} turns on {manager.database.url}")
        started = time.perf_counter()
        done = await asyncio.gather(*(client(manager, n, turns) for n in range(sessions)))
        elapsed = time.perf_counter() - started
        stats = await asyncio.to_thread(manager.stats)
        # Count this run's sessions only: the database may hold earlier runs' too.
        owner = {session_id: f"user-{n % 20}" for n, (session_id, _) in enumerate(done)}
        infos = await asyncio.gather(*(manager.aget_session_info(sid) for sid in owner))
        completed = [i for i in infos if i is not None and i["status"] == "completed"]
        seen = await manager.for_user("user-7").alist_sessions(limit=1_000_000)
        mine = [row for row in seen if row["session_id"] in owner]
    heartbeat.cancel()
    checkpoints = sum(turns for _, turns in done)
    if any(owner[row["session_id"]] != "user-7" for row in mine):
        raise SystemExit("user-7's view listed another user's session")
    if len(mine) != sum(1 for user in owner.values() if user == "user-7"):
        raise SystemExit(f"user-7's view lists {len(mine)} of its sessions")
    print(f"completed sessions: {len(completed)}; user-7 sees only its own: {len(mine)}")
    print(f"checkpoints: {checkpoints} in {elapsed:.2f} s = {checkpoints / elapsed:.0f} per second"
          f" ({sessions / elapsed:.0f} sessions per second)")  # fmt: skip
    print(
        f"checkpoint latency: p50 {stats['checkpoint_p50_ms']} ms,"
        f" p99 {stats['checkpoint_p99_ms']} ms; crashes {stats['crashes']}"
    )
    mean = lag.total / max(lag.beats, 1) * 1000
    print(
        f"event loop: {lag.beats} heartbeats, mean lag {mean:.1f} ms,"
        f" p99 lag {lag.p99() * 1000:.1f} ms, worst lag {lag.worst * 1000:.1f} ms"
    )
    if len(completed) != sessions:
        raise SystemExit(f"only {len(completed)} of {sessions} sessions completed")
    return lag.p99() * 1000, lag.worst * 1000


class _NoopWork:
    def __init__(self, runtime: ChatRuntime) -> None:
        self.runtime = runtime


class NoopManager:
    """The calls ``client`` makes, storing nothing: each is one hop to a thread and back.

    The baseline for the loop's lag: what the workload itself costs the loop (its sleeps,
    its thread hops, its garbage) without the library's actors and database.
    """

    def __init__(self) -> None:
        self.runtimes: dict[str, ChatRuntime] = {}

    def for_user(self, _user_id: str) -> NoopManager:
        """No users to tell apart: the manager itself."""
        return self

    async def acreate_session(self, _mode: str, _config: dict[str, Any]) -> str:
        """A new id and an empty runtime."""
        session_id = await asyncio.to_thread(lambda: str(uuid.uuid4()))
        self.runtimes[session_id] = ChatRuntime({"conversation_history": []})
        return session_id

    @contextlib.asynccontextmanager
    async def aunit_of_work(self, session_id: str) -> AsyncIterator[_NoopWork]:
        """A hop to take the (absent) lock, the turn, a hop to snapshot."""
        runtime = self.runtimes[session_id]
        await asyncio.to_thread(lambda: None)
        yield _NoopWork(runtime)
        await asyncio.to_thread(runtime.snapshot)

    async def aget_session_info(self, session_id: str) -> dict[str, Any]:
        """What ``client`` checks: the turns taken."""
        return await asyncio.to_thread(
            lambda: {"current_step": self.runtimes[session_id].turns, "status": "active"}
        )

    async def acomplete_session(self, _session_id: str) -> bool:
        """Done, after a hop."""
        return await asyncio.to_thread(lambda: True)


async def serve_noop(sessions: int, turns: int) -> tuple[float, float]:
    """The same clients against :class:`NoopManager`; return the loop's p99 and worst lag."""
    lag = LoopLag()
    heartbeat = asyncio.create_task(lag.run())
    await asyncio.sleep(0.05)
    noop: Any = NoopManager()
    await asyncio.gather(*(client(noop, n, turns) for n in range(sessions)))
    heartbeat.cancel()
    return lag.p99() * 1000, lag.worst * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: temp)")
    parser.add_argument("--runs", type=int, default=1, help="serve N times; print median lags")
    parser.add_argument(
        "--noop-baseline", action="store_true", help="also run against a manager storing nothing"
    )
    args = parser.parse_args()
    if args.sessions < 1 or args.turns < 1 or args.runs < 1:
        parser.error("--sessions, --turns and --runs must be at least 1")
    ours: list[tuple[float, float]] = []
    noop: list[tuple[float, float]] = []
    for run in range(args.runs):
        if args.runs > 1:
            print(f"--- run {run + 1} of {args.runs}")
        with tempfile.TemporaryDirectory(prefix="async-service-") as tmp:
            url = args.database_url or f"sqlite:///{Path(tmp) / 'sessions.db'}"
            ours.append(asyncio.run(serve(url, args.sessions, args.turns)))
        if args.noop_baseline:
            noop.append(asyncio.run(serve_noop(args.sessions, args.turns)))
    if args.runs > 1 or args.noop_baseline:
        print(f"loop lag, median of {args.runs} run(s):")
        for label, figures in (("session-supervisor", ours), ("no-op store", noop)):
            if figures:
                p99 = statistics.median(p for p, _ in figures)
                worst = statistics.median(w for _, w in figures)
                print(f"  {label:<19} p99 {p99:5.1f} ms   worst {worst:5.1f} ms")


if __name__ == "__main__":
    main()
