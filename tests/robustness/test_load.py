"""Load: 1,000 live sessions saved from 16 threads, with random suspends and resumes.

The threads pick sessions at random, so several of them race on one session: histories are
random-length prefixes of one conversation (an append one time, a truncation the next).
The only errors allowed are the expected refusals (``InvalidTransition``: saving or
suspending a suspended session, resuming an active one). Every call that succeeded returned
the version it wrote; the one with the highest version per session must be exactly what is
stored in the end (its history, context, phase and step, and the status of the latest
transition).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from actors import InvalidTransition, SessionManager
from tests.conftest import ManagerFactory, history

SESSIONS = 1000
THREADS = 16
OPS_PER_THREAD = 300


@dataclass
class Acked:
    """The latest acknowledged save and transition of one session, by version."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    save_version: int = 0
    save: tuple[Any, ...] = ()
    status_version: int = 0
    status: str = "active"

    def saved(self, version: int, payload: tuple[Any, ...]) -> None:
        """A save acknowledged at ``version``."""
        with self.lock:
            if version > self.save_version:
                self.save_version, self.save = version, payload

    def moved(self, version: int, status: str) -> None:
        """A transition to ``status`` acknowledged at ``version``."""
        with self.lock:
            if version > self.status_version:
                self.status_version, self.status = version, status


@dataclass
class Tally:
    """What the threads did."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: dict[str, int] = field(default_factory=dict)
    unexpected: list[BaseException] = field(default_factory=list)

    def add(self, key: str) -> None:
        """Count one outcome."""
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1


def _worker(
    manager: SessionManager, ids: list[str], acked: dict[str, Acked], tally: Tally, seed: int
) -> None:
    rng = random.Random(seed)
    for i in range(OPS_PER_THREAD):
        session_id = rng.choice(ids)
        roll = rng.random()
        try:
            if roll < 0.8:
                payload = (history(rng.randint(1, 12)), {"t": seed, "i": i}, f"phase-{i % 5}", i)
                acked[session_id].saved(manager.checkpoint(session_id, *payload), payload)
                tally.add("saved")
            else:
                action: Callable[[str], int]
                action, status = (
                    (manager.suspend, "suspended") if roll < 0.9 else (manager.resume, "active")
                )
                acked[session_id].moved(action(session_id), status)
                tally.add(status)
        except InvalidTransition:
            tally.add("refused (InvalidTransition)")
        except BaseException as error:  # noqa: BLE001 - collected and reported by the test
            tally.unexpected.append(error)


class TestLoad:
    """1,000 live sessions under 16 threads."""

    @pytest.mark.slow
    def test_thousand_live_sessions_from_sixteen_threads(
        self, make_manager: ManagerFactory
    ) -> None:
        """No error but the expected refusals; every session ends as its last acknowledged save."""
        manager = make_manager(call_timeout=30)
        started = time.perf_counter()
        ids: list[str] = []
        ids_lock = threading.Lock()

        def create(count: int) -> None:
            made = [manager.create_session("load", {}) for _ in range(count)]
            with ids_lock:
                ids.extend(made)

        creators = [
            threading.Thread(target=create, args=(SESSIONS // THREADS + 1,)) for _ in range(THREADS)
        ]
        for thread in creators:
            thread.start()
        for thread in creators:
            thread.join(60)
        ids = ids[:SESSIONS]
        created = time.perf_counter()
        acked = {session_id: Acked() for session_id in ids}
        tally = Tally()
        workers = [
            threading.Thread(target=_worker, args=(manager, ids, acked, tally, seed))
            for seed in range(THREADS)
        ]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(120)
        worked = time.perf_counter()
        assert not tally.unexpected, tally.unexpected[:5]
        assert len(manager.live_sessions()) >= SESSIONS
        mismatched = []
        for session_id, last in acked.items():
            state = manager.load(session_id)
            if last.save:
                saved_history, context, phase, step = last.save
                stored = (
                    state["conversation_history"],
                    state["context_variables"],
                    state["current_phase"],
                    state["current_step"],
                )
                if stored != (saved_history, context, phase, step):
                    mismatched.append(session_id)
            if state["status"] != last.status or state["version"] < max(
                last.save_version, last.status_version
            ):
                mismatched.append(session_id)
        assert not mismatched, f"{len(mismatched)} sessions differ from their last ack"
        total = sum(tally.counts.values())
        print(  # noqa: T201 - the figures of the run, shown with -s
            f"load: {SESSIONS} sessions created in {created - started:.2f}s; {total} calls from"
            f" {THREADS} threads in {worked - created:.2f}s ({total / (worked - created):.0f}/s);"
            f" {tally.counts}; verified in {time.perf_counter() - worked:.2f}s"
        )
