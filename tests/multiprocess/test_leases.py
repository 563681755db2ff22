"""Leases and fencing between two managers, on SQLite and on PostgreSQL.

Two managers on one database behave as two processes do (each has its own store, loop
thread and instance id); they share the injected clock, so lapses are exact and instant.
The real-process versions of these guarantees are in ``test_processes.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url
from structlog.testing import capture_logs

from actors import (
    ManualClock,
    SessionManager,
    SessionNotFound,
    SessionOwnedElsewhere,
    StoreUnavailable,
)
from actors._mailbox import QuickActor
from persistence import Database, StateRecord, encode_message
from persistence._backend import Tx
from persistence._clock import offset
from persistence._statements import TAKE
from persistence._write_ops import HotOp, Phases
from tests.conftest import ManagerFactory, history

LEASE = timedelta(seconds=30)
TIMEOUT = 10


def _renew(manager: SessionManager) -> int:
    """One renewal pass of the manager's supervisor (what its ticker does every ttl/3)."""
    renewed: int = manager._core.supervisor.renew_leases().get(timeout=TIMEOUT)
    return renewed


def _state(database: Database, session_id: str) -> StateRecord:
    state = database.store.state(session_id)
    assert state is not None, session_id
    return state


@pytest.fixture
def pair(any_db_url: str, make_manager: ManagerFactory) -> tuple[SessionManager, SessionManager]:
    """Managers ``a`` and ``b`` on one database (SQLite file or PostgreSQL).

    Neither asks the other for a session (``handoff_wait=0``): these tests are about the
    leases themselves; ``test_handoff.py`` covers the hand-off on demand.
    """
    first = make_manager(database_url=any_db_url, instance_id="a", lease_ttl=LEASE, handoff_wait=0)
    second = make_manager(database_url=any_db_url, instance_id="b", lease_ttl=LEASE, handoff_wait=0)
    return first, second


class TestOwnership:
    """While a lease holds, its owner alone writes; everybody reads."""

    def test_a_second_manager_is_refused_every_write_and_changes_nothing(
        self, pair: tuple[SessionManager, SessionManager]
    ) -> None:
        """Saves and lifecycle changes from the other manager fail; the state stays."""
        a, b = pair
        session_id = a.create_session("copilot", {"model": "m"}, "u1")
        assert a.save_session_state(session_id, history(2), {"k": 1}, "plan", 1)
        with pytest.raises(SessionOwnedElsewhere) as refused:
            b.checkpoint(session_id, history(3), {"k": 2}, "exec", 2)
        assert refused.value.owner == "a"
        assert b.save_session_state(session_id, history(3), {"k": 2}, "exec", 2) is False
        assert b.suspend_session(session_id) is False
        assert b.complete_session(session_id) is False
        assert b.delete_session(session_id) is False
        state = a.load(session_id)
        assert (state["status"], state["version"], state["context_variables"]) == (
            "active", 2, {"k": 1}
        )  # fmt: skip
        assert state["conversation_history"] == history(2)

    def test_reads_work_from_any_manager(self, pair: tuple[SessionManager, SessionManager]) -> None:
        """load, info and list from the non-owner see the owner's acknowledged writes."""
        a, b = pair
        session_id = a.create_session("copilot", {"model": "m"}, "u1", "mine")
        assert a.save_session_state(session_id, history(4), {"n": 4}, "review", 3)
        loaded = b.load_session_state(session_id)
        assert loaded is not None
        assert loaded["conversation_history"] == history(4)
        assert (loaded["current_phase"], loaded["current_step"]) == ("review", 3)
        info = b.get_session_info(session_id)
        assert info is not None
        assert (info["owner"], info["version"], info["config"]) == ("a", 2, {"model": "m"})
        assert [s["session_id"] for s in b.list_sessions(user_id="u1")] == [session_id]
        assert b.live_sessions() == []  # reading took no lease

    def test_renewal_keeps_the_lease_past_its_first_term(
        self, pair: tuple[SessionManager, SessionManager], clock: ManualClock
    ) -> None:
        """A renewing owner keeps its sessions however long it lives."""
        a, b = pair
        session_id = a.create_session("copilot", {})
        for _ in range(3):
            clock.advance(LEASE * 2 / 3)
            assert _renew(a) == 1
        assert b.save_session_state(session_id, history(1), {}, "x") is False
        assert a.save_session_state(session_id, history(1), {}, "x")


class TestActorsThatKeepStopping:
    """A caller that only ever meets stopped actors gets the stored reason, typed."""

    def test_the_refusal_is_named_from_the_stored_row(
        self,
        pair: tuple[SessionManager, SessionManager],
        any_db_url: str,
        make_manager: ManagerFactory,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Owned elsewhere: SessionOwnedElsewhere; unknown: SessionNotFound; else unavailable.

        Threads of one process racing for a session another process owns each spawn an
        actor that stops at once, refused; a thread may then meet only stopped ones.
        """
        a, b = pair
        held = a.create_session("copilot", {})  # a's, with a valid lease
        with make_manager(database_url=any_db_url, instance_id="c") as c:
            free = c.create_session("copilot", {})  # released when c closes
        dead = QuickActor.start()
        dead.stop()
        monkeypatch.setattr(b._core, "_checkout", lambda session_id, timeout: dead)
        with pytest.raises(SessionOwnedElsewhere) as refused:
            b.checkpoint(held, [], {}, "p")
        assert refused.value.owner == "a"
        assert b.save_session_state(held, [], {}, "p") is False
        with pytest.raises(SessionNotFound):
            b.checkpoint("no-such-session", [], {}, "p")
        with pytest.raises(StoreUnavailable, match="kept stopping"):
            b.checkpoint(free, [], {}, "p")


class TestTakeover:
    """A lapsed lease is taken over; the old owner is fenced off."""

    def test_takeover_bumps_the_epoch_and_fences_the_old_owner(
        self, pair: tuple[SessionManager, SessionManager], clock: ManualClock
    ) -> None:
        """The old owner's next write fails, its actor stops, lease.lost is logged."""
        a, b = pair
        session_id = a.create_session("copilot", {})
        assert a.save_session_state(session_id, history(2), {"by": "a"}, "plan")
        old_epoch = a.live(session_id).epoch
        clock.advance(LEASE + timedelta(seconds=1))  # a stopped renewing, as if frozen
        assert b.checkpoint(session_id, history(3), {"by": "b"}, "exec") == 3
        assert b.live(session_id).epoch == old_epoch + 1
        with capture_logs() as logs:
            with pytest.raises(SessionOwnedElsewhere) as refused:
                a.checkpoint(session_id, history(4), {"by": "a"}, "late")
            assert a.save_session_state(session_id, history(4), {"by": "a"}, "late") is False
            assert a.suspend_session(session_id) is False
        assert refused.value.owner == "b"
        assert [e["session_id"] for e in logs if e["event"] == "lease.lost"] == [session_id]
        assert session_id not in a.live_sessions()
        state = b.load(session_id)
        assert (state["context_variables"], state["current_phase"]) == ({"by": "b"}, "exec")
        assert state["conversation_history"] == history(3)
        assert b.info(session_id)["owner"] == "b"

    def test_the_renewal_notices_a_takeover_and_stops_the_actor(
        self, pair: tuple[SessionManager, SessionManager], clock: ManualClock
    ) -> None:
        """Without any write, the next renewal finds the lease gone and logs lease.lost."""
        a, b = pair
        session_id = a.create_session("copilot", {})
        clock.advance(LEASE + timedelta(seconds=1))
        b.live(session_id)
        with capture_logs() as logs:
            assert _renew(a) == 0
        assert [e["session_id"] for e in logs if e["event"] == "lease.lost"] == [session_id]
        assert a.live_sessions() == []
        assert a.stats()["leases_lost"] == 1

    def test_passivation_and_close_hand_sessions_over_at_once(
        self, any_db_url: str, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """Released leases need no lapse: the next manager takes them without a takeover."""
        a = make_manager(
            database_url=any_db_url, instance_id="a", idle_timeout=timedelta(minutes=1)
        )
        b = make_manager(database_url=any_db_url, instance_id="b", handoff_wait=0)
        idle, busy = a.create_session("copilot", {}), a.create_session("copilot", {})
        for _ in range(6):  # two idle minutes, the owner renewing as its ticker does
            clock.advance(seconds=20)
            _renew(a)
        assert a.save_session_state(busy, history(1), {}, "x")
        assert a.sweep()["passivated"] == 1
        assert a.info(idle)["owner"] is None
        assert b.save_session_state(idle, history(1), {}, "mine")
        assert b.save_session_state(busy, history(1), {}, "mine") is False
        a.close()
        assert b.save_session_state(busy, history(2), {}, "mine")
        assert b.stats()["lease_takeovers"] == 0  # handed over, never taken over


class TestTicker:
    """The manager's own tick renews its leases: nobody has to call anything."""

    def test_each_tick_renews_the_leases(
        self, pair: tuple[SessionManager, SessionManager], clock: ManualClock
    ) -> None:
        """Ticks (what the ticker thread runs every lease_ttl / 3) keep a live owner's lease."""
        a, b = pair
        session_id = a.create_session("copilot", {})
        for _ in range(3):  # 60 s: twice the lease
            clock.advance(seconds=20)
            a._core.housekeeping.tick()  # the ask below waits until it is done
            assert a.live_sessions() == [session_id]
        assert b.save_session_state(session_id, history(1), {}, "b") is False
        assert a.save_session_state(session_id, history(1), {}, "a")
        assert a.info(session_id)["owner"] == "a"

    def test_the_ticker_thread_ticks_by_itself(
        self, any_db_url: str, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """With a 0.3 s lease the ticker renews every 0.1 s of real time, unasked."""
        a = make_manager(database_url=any_db_url, instance_id="a", lease_ttl=timedelta(seconds=0.3))
        session_id = a.create_session("copilot", {})
        first = datetime.fromisoformat(a.info(session_id)["lease_expires_at"])
        clock.advance(seconds=0.1)
        renewed_until = first + timedelta(seconds=0.1)
        give_up = time.monotonic() + TIMEOUT
        current = first
        while current < renewed_until and time.monotonic() < give_up:
            time.sleep(0.01)  # waiting for the ticker thread, not for a lease to lapse
            current = datetime.fromisoformat(a.info(session_id)["lease_expires_at"])
        assert current == renewed_until


class TestFencing:
    """The epoch alone refuses a fenced owner's writes, before the new owner wrote anything."""

    def test_the_old_owner_is_refused_though_the_version_still_matches(
        self, pair: tuple[SessionManager, SessionManager], clock: ManualClock
    ) -> None:
        """Manager b only takes the sessions, writes nothing; a's writes fail and change nothing.

        The version a expects is still the stored one, so only ``epoch = :mine`` stands in
        the way of a write that would overwrite the new owner.
        """
        a, b = pair
        saved, suspended = a.create_session("copilot", {}), a.create_session("copilot", {})
        for session_id in (saved, suspended):
            assert a.save_session_state(session_id, history(2), {"by": "a"}, "plan", 1)
        clock.advance(LEASE + timedelta(seconds=1))  # a froze past its lease
        for session_id in (saved, suspended):
            b.live(session_id)
            assert b.info(session_id)["owner"] == "b"
        before = {sid: (b.load(sid), b.info(sid)) for sid in (saved, suspended)}
        assert before[saved][0]["version"] == a.live(saved).version  # the CAS would pass
        with pytest.raises(SessionOwnedElsewhere):
            a.checkpoint(saved, history(3), {"by": "a"}, "late", 2)
        assert a.suspend_session(suspended) is False
        after = {sid: (b.load(sid), b.info(sid)) for sid in (saved, suspended)}
        assert after == before


class TestTakeLease:
    """Rehydration's lease take from a plain thread (prebuilt statements, no loop hop)."""

    @pytest.fixture
    def database(self, any_db_url: str) -> Iterator[Database]:
        """The bare store on the test's database."""
        db = Database.open(any_db_url)
        yield db
        db.close()

    def test_takes_a_released_session_with_its_samples(
        self, any_db_url: str, database: Database, make_manager: ManagerFactory
    ) -> None:
        """The epoch goes up by one, the lease is set, the samples are the stored rows."""
        with make_manager(database_url=any_db_url, instance_id="a") as a:
            session_id = a.create_session("c", {})
            a.checkpoint(session_id, history(9), {}, "p")
        before = _state(database, session_id)
        now = datetime.now(UTC)
        lease = database.store.take_lease(session_id, "b", now, now + timedelta(seconds=30))
        assert lease.taken_from is None  # "a" released it on close
        assert (lease.state.owner, lease.state.epoch) == ("b", before.epoch + 1)
        stored = {i: encode_message(history(9)[i], "", None) for i in (0, 1, 2, 4, 8)}
        assert (lease.samples, lease.base) == (stored, 0)
        assert _state(database, session_id) == lease.state

    def test_refuses_a_live_owner_and_changes_nothing(
        self, any_db_url: str, database: Database, make_manager: ManagerFactory
    ) -> None:
        """Another owner's valid lease: SessionOwnedElsewhere naming it; the row is as it was."""
        with make_manager(database_url=any_db_url, instance_id="a") as a:
            session_id = a.create_session("c", {})
            before = _state(database, session_id)
            now = datetime.now(UTC)
            with pytest.raises(SessionOwnedElsewhere) as refused:
                database.store.take_lease(session_id, "b", now, now + timedelta(seconds=30))
            assert refused.value.owner == "a"
            assert _state(database, session_id) == before

    def test_the_take_statement_itself_refuses_a_live_owner(
        self, any_db_url: str, database: Database, make_manager: ManagerFactory
    ) -> None:
        """Past a stale pre-check (a peer took the row in between), the UPDATE still refuses.

        The statement runs on its own, as it would after an outdated read of the owner:
        its WHERE clause, not the pre-check, keeps a valid lease from being taken.
        """
        with make_manager(database_url=any_db_url, instance_id="a") as a:
            session_id = a.create_session("c", {})
            before = _state(database, session_id)
            now = datetime.now(UTC)

            def take(tx: Tx) -> Phases[Any]:
                params = {"sid": session_id, "owner": "b", "now": tx.time(now),
                          "offset": offset(now),
                          "lease_until": tx.time(now + timedelta(seconds=30))}  # fmt: skip
                taken = tx.execute(TAKE, params)
                yield
                return taken.fetchone()

            assert database.store.write(HotOp(take)) is None
            assert _state(database, session_id) == before
            assert a.save_session_state(session_id, history(1), {}, "still a's")

    def test_unknown_session(self, database: Database) -> None:
        """An id that does not exist: SessionNotFound."""
        now = datetime.now(UTC)
        with pytest.raises(SessionNotFound):
            database.store.take_lease("no-such-session", "b", now, now + timedelta(seconds=30))


class TestStoreRenewal:
    """The store renews exactly the (session, epoch) pairs its caller still serves."""

    @pytest.fixture
    def database(self, any_db_url: str) -> Iterator[Database]:
        """The bare store on the test's database."""
        db = Database.open(any_db_url)
        yield db
        db.close()

    def test_only_the_given_epochs_are_renewed(
        self, any_db_url: str, database: Database, make_manager: ManagerFactory
    ) -> None:
        """A row left owned (a failed release) lapses; a wrong epoch is reported lost."""
        with make_manager(database_url=any_db_url, instance_id="a") as a:
            held, orphan = a.create_session("c", {}), a.create_session("c", {})
            epoch = a.live(held).epoch
            store = database.store
            before = {sid: _state(database, sid) for sid in (held, orphan)}
            held_until = before[held].lease_expires_at
            assert held_until is not None
            later = held_until + timedelta(minutes=1)
            lost = store.renew_leases("a", later, {held: epoch})
            assert lost == set()
            assert _state(database, held).lease_expires_at == later
            orphan_after = _state(database, orphan)
            assert orphan_after.lease_expires_at == before[orphan].lease_expires_at
            assert store.renew_leases("a", later, {held: epoch + 1}) == {held}


@pytest.mark.postgres
class TestPostgresLocks:
    """PostgreSQL specifics: a row another transaction holds is refused, not waited for."""

    def test_a_take_never_waits_for_a_peers_transaction(
        self, pg_url: str, make_manager: ManagerFactory
    ) -> None:
        """While another connection holds the row, taking it fails at once, then works."""
        a = make_manager(database_url=pg_url, instance_id="a")
        session_id = a.create_session("copilot", {})
        a.close()  # released: the session is free, only the row lock stands in the way
        b = make_manager(database_url=pg_url, instance_id="b")
        dsn = make_url(pg_url).set(drivername="postgresql").render_as_string(False)

        with psycopg.connect(dsn) as peer:  # its first statement begins a transaction
            peer.execute(
                "SELECT 1 FROM session_states WHERE session_id = %s FOR UPDATE", (session_id,)
            )
            started = time.monotonic()
            outcome = b.save_session_state(session_id, history(1), {}, "x")
            waited = time.monotonic() - started
            peer.rollback()
        assert outcome is False
        assert waited < 2.0
        assert b.save_session_state(session_id, history(1), {}, "x")

    def test_connections_carry_the_idle_in_transaction_timeout(
        self, pg_url: str, make_manager: ManagerFactory
    ) -> None:
        """A paused process loses its transaction (and locks) after 5 s; each connection is named.

        Checked on the three kinds of connection: the writer's, a hot read's, a Core read's.
        """
        manager = make_manager(database_url=pg_url, instance_id="worker-7")
        store = manager.database.store
        query = (
            "SELECT current_setting('idle_in_transaction_session_timeout'),"
            " current_setting('application_name'), current_setting('TimeZone')"
        )
        expected = ("5s", "session-supervisor/worker-7", "UTC")

        def on_writer(connection: Any) -> Any:
            return tuple(connection.exec_driver_sql(query).one())

        assert store.write(on_writer) == expected
        assert store.reads.read(lambda driver: driver.execute(query).fetchone()) == expected
        assert store.read(on_writer) == expected
