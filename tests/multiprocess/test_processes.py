"""One owner per session across real processes: races, kill -9, and a paused zombie.

Each test runs on a fresh SQLite file and on a fresh PostgreSQL database (``any_db_url``),
with worker processes (``worker.py``) that report every acknowledged write to a file
*after* it was committed. Leases are short (1 s) so takeovers are quick; every wait polls
with a timeout.
"""

from __future__ import annotations

import signal
import sqlite3
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from actors import create_session_manager
from tests.multiprocess.conftest import Event, Worker, WorkerFactory, create_sessions

pytestmark = pytest.mark.slow

LEASE = "1.0"
START_TIMEOUT = 30.0  # a cold interpreter importing SQLAlchemy on a loaded CI machine


def _count(kind: str, at_least: int, **match: Any) -> Callable[[list[Event]], bool]:
    def ready(events: list[Event]) -> bool:
        found = [
            e for e in events
            if e["event"] == kind and all(e.get(k) == v for k, v in match.items())
        ]  # fmt: skip
        return len(found) >= at_least

    return ready


def _acked_each(ids: list[str], steps: int) -> Callable[[list[Event]], bool]:
    def ready(events: list[Event]) -> bool:
        best: dict[str, int] = {}
        for event in events:
            if event["event"] == "ack":
                best[event["sid"]] = max(best.get(event["sid"], 0), event["step"])
        return all(best.get(sid, 0) >= steps for sid in ids)

    return ready


def _holds_a_transaction(url: str) -> bool:
    """Whether a paused process still holds the database's write lock or a transaction."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        connection = sqlite3.connect(str(parsed.database), timeout=0.5, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
        except sqlite3.OperationalError:
            return True
        finally:
            connection.close()
        return False

    time.sleep(0.3)
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as server:
        row = server.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%%'"
            " AND now() - state_change > interval '200 milliseconds'"
        ).fetchone()
    return row is not None and int(row[0]) > 0


def _pause_between_transactions(worker: Worker, url: str) -> None:
    """SIGSTOP the worker at a moment it holds no lock (else resume it and try again).

    A process paused inside its own transaction would keep its row lock (PostgreSQL, until
    the server's idle-in-transaction timeout) or the file lock (SQLite); this test is about
    the lease and fencing, so it pauses the zombie between its transactions.
    """
    for _ in range(20):
        worker.signal(signal.SIGSTOP)
        if not _holds_a_transaction(url):
            return
        worker.signal(signal.SIGCONT)
        time.sleep(0.05)
    pytest.fail("could not pause the worker outside a transaction")


class TestRace:
    """Two processes grabbing the same 200 sessions at the same moment."""

    def test_two_processes_racing_for_200_sessions_never_both_own_one(
        self, any_db_url: str, start_worker: WorkerFactory, record_property: Any
    ) -> None:
        """Every session ends with exactly one owner, the one that wrote it; none has two."""
        ids = create_sessions(any_db_url, 200)
        # A long lease: no session may lapse during the race, so two takers would be two owners.
        options = ("--lease-ttl", "30", "--threads", "4")
        racers = [start_worker("race", name, any_db_url, ids, *options) for name in ("a", "b")]
        for racer in racers:
            racer.wait_for(_count("ready", 1), START_TIMEOUT, "ready")
        for racer in racers:
            racer.send("go")
        for racer in racers:
            racer.wait_for(_count("done", 1), 60, "the end of its race")
        took = {racer.name: {e["sid"] for e in racer.events("took")} for racer in racers}
        double_owners = took["a"] & took["b"]
        record_property("double_owners", len(double_owners))
        record_property("taken", {name: len(sids) for name, sids in took.items()})
        assert double_owners == set()
        assert took["a"] | took["b"] == set(ids)
        assert [e for racer in racers for e in racer.events("failed")] == []
        # Each process tried every session: it was refused each one the other one took.
        for racer, other in (racers, racers[::-1]):
            assert {e["sid"] for e in racer.events("refused")} >= took[other.name]
        with create_session_manager(any_db_url, instance_id="auditor") as auditor:
            for name, sids in took.items():
                for session_id in sids:
                    state = auditor.load(session_id)
                    assert auditor.info(session_id)["owner"] == name
                    assert state["context_variables"] == {"owner": name}
        assert [racer.quit() for racer in racers] == [0, 0]


class TestKillNine:
    """The owner dies mid-run; the other process carries on from its last checkpoint."""

    def test_the_survivor_takes_over_once_the_lease_lapses_and_loses_nothing(
        self, any_db_url: str, start_worker: WorkerFactory, record_property: Any
    ) -> None:
        """A live owner keeps its sessions; once killed, nothing acknowledged is lost.

        The takeover comes within a lease of the kill, not before the lease lapsed.
        """
        ids = create_sessions(any_db_url, 4)
        owner = start_worker(
            "own", "owner", any_db_url, ids, "--lease-ttl", LEASE, "--continuous", "--pace", "0"
        )
        owner.wait_for(_count("took", len(ids)), START_TIMEOUT, "taking every session")
        survivor = start_worker("own", "survivor", any_db_url, ids, "--lease-ttl", LEASE)
        survivor.wait_for(_count("waiting", 1), START_TIMEOUT, "a refused first attempt")
        owner.wait_for(_acked_each(ids, 5), 20, "five checkpoints of each session")
        # A live owner keeps its sessions for several lease terms: only its ticker renews
        # the leases (checkpoints do not), so wait until a lease was pushed two terms past
        # its first end, with the survivor still refused.
        with create_session_manager(any_db_url, instance_id="auditor") as auditor:

            def lease_end() -> float:
                return datetime.fromisoformat(auditor.info(ids[0])["lease_expires_at"]).timestamp()

            first_end = lease_end()
            deadline = time.monotonic() + 10 * float(LEASE)
            while lease_end() < first_end + 2 * float(LEASE):
                assert time.monotonic() < deadline, "the owner's leases were not renewed"
                time.sleep(0.05)
        assert survivor.events("took") == []
        killed_at = owner.kill()
        acked: dict[str, int] = {}
        for event in owner.events("ack"):
            acked[event["sid"]] = max(acked.get(event["sid"], 0), event["step"])

        took = survivor.wait_for(_count("took", len(ids)), 15, "the takeover")
        takeovers = [e["at"] - killed_at for e in took if e["event"] == "took"]
        loaded = {e["sid"]: e["step"] for e in survivor.events("loaded")}
        lost = {sid: acked[sid] - loaded[sid] for sid in ids if loaded[sid] < acked[sid]}
        record_property("takeover_seconds", takeovers)
        record_property("lost_checkpoints", sum(lost.values()))
        record_property("acknowledged_before_kill", sum(acked.values()))
        assert lost == {}
        # Renewed at most lease/3 before the kill, the lease outlives the owner by 2/3 of it.
        assert all(float(LEASE) / 2 < s < float(LEASE) + 3.0 for s in takeovers), takeovers
        assert statistics.median(takeovers) <= float(LEASE) + 1.0, takeovers

        # The survivor continues from there, with the owner's history intact.
        survivor.send("step typed")
        survivor.wait_for(_count("ack", len(ids)), 15, "its first checkpoints")
        with create_session_manager(any_db_url, instance_id="auditor") as auditor:
            for session_id in ids:
                state = auditor.load(session_id)
                step = loaded[session_id] + 1
                assert state["context_variables"] == {"step": step, "writer": "survivor"}
                contents = [m["content"] for m in state["conversation_history"]]
                assert contents == [
                    *(f"owner step {n}" for n in range(1, step)),
                    f"survivor step {step}",
                ]
        assert survivor.quit() == 0


class TestPausedZombie:
    """SIGSTOP the owner past its lease, let another take over, then SIGCONT it."""

    def test_a_resumed_zombie_cannot_overwrite_the_new_owner(
        self, any_db_url: str, start_worker: WorkerFactory
    ) -> None:
        """Its writes are refused (typed error / False), its actors stop, lease.lost is logged."""
        ids = create_sessions(any_db_url, 2)
        zombie = start_worker("own", "zombie", any_db_url, ids, "--lease-ttl", LEASE)
        zombie.wait_for(_count("took", len(ids)), START_TIMEOUT, "taking every session")
        zombie.send("step typed")
        zombie.wait_for(_acked_each(ids, 1), 15, "its first checkpoints")
        heir = start_worker("own", "heir", any_db_url, ids, "--lease-ttl", LEASE)
        heir.wait_for(_count("waiting", 1), START_TIMEOUT, "a refused first attempt")

        _pause_between_transactions(zombie, any_db_url)
        heir.wait_for(_count("took", len(ids)), 15, "the takeover")
        assert {e["sid"]: e["step"] for e in heir.events("loaded")} == dict.fromkeys(ids, 1)
        heir.send("step typed")
        heir.wait_for(_acked_each(ids, 2), 15, "its checkpoints")
        zombie.signal(signal.SIGCONT)

        zombie.send("step typed")
        zombie.wait_for(_count("live", 2), 15, "its typed attempt")
        zombie.send("step seed")
        events = zombie.wait_for(_count("live", 3), 15, "its seed-API attempt")
        refused = [e for e in events if e["event"] == "refused"]
        assert [(e["api"], e["sid"]) for e in refused] == [
            *(("typed", sid) for sid in ids),
            *(("seed", sid) for sid in ids),
        ]
        assert {e["owner"] for e in refused if e["api"] == "typed"} == {"heir"}
        assert {e["result"] for e in refused if e["api"] == "seed"} == {False}
        assert [e for e in events if e["event"] == "ack" and e["step"] > 1] == []
        # Live after its own first step; after the takeover its actors are gone.
        assert [sorted(e["sessions"]) for e in events if e["event"] == "live"] == [
            sorted(ids),
            [],
            [],
        ]
        logged = zombie.wait_for_log("lease.lost", set(ids), 10)
        assert {e["level"] for e in logged} == {"warning"}

        # The new owner's state is intact, and it carries on undisturbed.
        with create_session_manager(any_db_url, instance_id="auditor") as auditor:
            for session_id in ids:
                state = auditor.load(session_id)
                assert state["context_variables"] == {"step": 2, "writer": "heir"}
                contents = [m["content"] for m in state["conversation_history"]]
                assert contents == ["zombie step 1", "heir step 2"]
                assert auditor.info(session_id)["owner"] == "heir"
        heir.send("step typed")
        heir.wait_for(_acked_each(ids, 3), 15, "its next checkpoints")
        assert [zombie.quit(), heir.quit()] == [0, 0]
