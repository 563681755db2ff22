"""Actor-level tests: the pykka SessionSupervisor and SessionActor without the façade."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors import (
    InvalidTransition,
    LiveState,
    ManualClock,
    SessionActor,
    SessionNotFound,
    SessionOwnedElsewhere,
    SessionSupervisor,
)
from actors._messages import ActorGone, Describe, Save, Transition
from actors._settings import Settings
from persistence import Database, NewSession
from tests.conftest import history

TIMEOUT = 10


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    """An open store on a fresh SQLite file."""
    db = Database.open(f"sqlite:///{tmp_path / 'actors.db'}")
    yield db
    db.close()


def _settings(db: Database, clock: ManualClock, instance: str = "me", **kw: Any) -> Settings:
    options: dict[str, Any] = {
        "db": db,
        "instance_id": instance,
        "clock": clock,
        "session_ttl": timedelta(hours=24),
        "lease_ttl": timedelta(seconds=30),
        "idle_timeout": timedelta(minutes=10),
        "max_live": 100,
        "max_message_bytes": 1 << 20,
        "max_state_bytes": 1 << 20,
        "call_timeout": TIMEOUT,
        "max_restarts": 3,
        "restart_window": timedelta(minutes=1),
    }
    options.update(kw)
    return Settings(**options)


@pytest.fixture
def supervisor(database: Database, clock: ManualClock) -> Iterator[pykka.ActorProxy[Any]]:
    """A running supervisor; it and every actor are stopped after the test."""
    ref = SessionSupervisor.start(_settings(database, clock))
    yield ref.proxy()
    ref.proxy().shutdown(TIMEOUT).get(timeout=TIMEOUT)
    ref.stop(timeout=TIMEOUT)


def _create(db: Database, clock: ManualClock, owner: str | None = None) -> str:
    import uuid  # noqa: PLC0415

    session_id = str(uuid.uuid4())
    now = clock()
    db.store.create_session(
        NewSession(
            session_id=session_id,
            user_id=None,
            name="n",
            mode="copilot",
            config_json="{}",
            now=now,
            expires_at=now + timedelta(days=1),
            owner=owner,
            lease_until=now + timedelta(seconds=30) if owner else None,
        )
    )
    return session_id


def _save(steps: int, phase: str = "p") -> Save:
    return Save(history(steps), "{}", phase, steps, None, False)


class TestSessionActor:
    """One actor owns one session's state; every change is a message to it."""

    def test_lazy_rehydration_takes_the_lease(
        self, supervisor: pykka.ActorProxy[Any], database: Database, clock: ManualClock
    ) -> None:
        """A checked-out actor loads its state on its first message and owns the lease."""
        session_id = _create(database, clock)
        ref = supervisor.checkout(session_id).get(timeout=TIMEOUT)
        state = ref.ask(Describe(), timeout=TIMEOUT)
        assert isinstance(state, LiveState)
        assert (state.status, state.version, state.epoch) == ("active", 1, 2)
        row = database.store.state(session_id)
        assert row is not None
        assert row.owner == "me"

    def test_saves_are_serialised_and_versioned(
        self, supervisor: pykka.ActorProxy[Any], database: Database, clock: ManualClock
    ) -> None:
        """Concurrent asks are handled one at a time; each save bumps the version by one."""
        session_id = _create(database, clock)
        ref = supervisor.checkout(session_id).get(timeout=TIMEOUT)
        futures = [ref.ask(_save(2 * n), block=False) for n in range(1, 11)]
        versions = [future.get(timeout=TIMEOUT) for future in futures]
        assert versions == list(range(2, 12))
        assert ref.ask(Describe(), timeout=TIMEOUT).message_count == 20

    def test_unknown_session_fails_and_the_actor_leaves(
        self, supervisor: pykka.ActorProxy[Any]
    ) -> None:
        """Checking out a missing id spawns an actor that answers SessionNotFound and stops."""
        ref = supervisor.checkout("missing").get(timeout=TIMEOUT)
        with pytest.raises(SessionNotFound):
            ref.ask(Describe(), timeout=TIMEOUT)
        ref.actor_stopped.wait(TIMEOUT)
        assert not ref.is_alive()
        assert supervisor.live_sessions().get(timeout=TIMEOUT) == []

    def test_refused_transition_keeps_the_actor(
        self, supervisor: pykka.ActorProxy[Any], database: Database, clock: ManualClock
    ) -> None:
        """A typed error goes back to the caller; the actor keeps serving."""
        session_id = _create(database, clock)
        ref = supervisor.checkout(session_id).get(timeout=TIMEOUT)
        with pytest.raises(InvalidTransition):
            ref.ask(Transition("resume"), timeout=TIMEOUT)
        assert ref.is_alive()
        assert ref.ask(Transition("suspend"), timeout=TIMEOUT) == 2

    def test_completion_stops_the_actor(
        self, supervisor: pykka.ActorProxy[Any], database: Database, clock: ManualClock
    ) -> None:
        """A finished session needs no actor: it releases the lease and stops."""
        session_id = _create(database, clock)
        ref = supervisor.checkout(session_id).get(timeout=TIMEOUT)
        ref.ask(Transition("complete"), timeout=TIMEOUT)
        ref.actor_stopped.wait(TIMEOUT)
        assert not ref.is_alive()
        with pytest.raises((ActorGone, pykka.ActorDeadError)):
            ref.ask(Describe(), timeout=TIMEOUT)
        row = database.store.state(session_id)
        assert row is not None
        assert (row.status, row.owner) == ("completed", None)


class TestFencing:
    """Two supervisors (two processes' worth) never both own a session."""

    def test_second_owner_is_refused_while_the_lease_holds(
        self, database: Database, clock: ManualClock
    ) -> None:
        """The lease of a live owner keeps others out until it lapses."""
        first = SessionSupervisor.start(_settings(database, clock, "first")).proxy()
        second = SessionSupervisor.start(_settings(database, clock, "second")).proxy()
        try:
            session_id = _create(database, clock)
            ref1 = first.checkout(session_id).get(timeout=TIMEOUT)
            assert ref1.ask(_save(2), timeout=TIMEOUT) == 2
            ref2 = second.checkout(session_id).get(timeout=TIMEOUT)
            with pytest.raises(SessionOwnedElsewhere):
                ref2.ask(_save(4), timeout=TIMEOUT)
            clock.advance(seconds=31)
            ref2 = second.checkout(session_id).get(timeout=TIMEOUT)
            assert ref2.ask(_save(4), timeout=TIMEOUT) == 3
            with pytest.raises(SessionOwnedElsewhere):
                ref1.ask(_save(6), timeout=TIMEOUT)
            ref1.actor_stopped.wait(TIMEOUT)
            assert not ref1.is_alive()
            row = database.store.state(session_id)
            assert row is not None
            assert (row.owner, row.version, row.message_count) == ("second", 3, 4)
        finally:
            for proxy in (first, second):
                proxy.shutdown(TIMEOUT).get(timeout=TIMEOUT)
                proxy.actor_ref.stop(timeout=TIMEOUT)


class TestSupervisorRegistry:
    """The supervisor is the only registry of live sessions."""

    def test_checkout_returns_the_same_live_actor(
        self, supervisor: pykka.ActorProxy[Any], database: Database, clock: ManualClock
    ) -> None:
        """One live actor per session, however often it is asked for."""
        session_id = _create(database, clock)
        refs = {supervisor.checkout(session_id).get(timeout=TIMEOUT) for _ in range(5)}
        assert len(refs) == 1
        assert len(pykka.ActorRegistry.get_by_class(SessionActor)) == 1

    def test_renew_leases_extends_every_loaded_session(
        self, supervisor: pykka.ActorProxy[Any], database: Database, clock: ManualClock
    ) -> None:
        """The tick's renewal pushes lease_expires_at forward by lease_ttl."""
        ids = [_create(database, clock) for _ in range(3)]
        for session_id in ids:
            supervisor.checkout(session_id).get(timeout=TIMEOUT).ask(Describe(), timeout=TIMEOUT)
        clock.advance(seconds=20)
        assert supervisor.renew_leases().get(timeout=TIMEOUT) == 3
        for session_id in ids:
            row = database.store.state(session_id)
            assert row is not None
            assert row.lease_expires_at == clock() + timedelta(seconds=30)

    def test_shutdown_stops_every_actor(
        self, supervisor: pykka.ActorProxy[Any], database: Database, clock: ManualClock
    ) -> None:
        """After shutdown no session actor thread is left."""
        for _ in range(5):
            supervisor.checkout(_create(database, clock)).get(timeout=TIMEOUT)
        supervisor.shutdown(TIMEOUT).get(timeout=TIMEOUT)
        assert pykka.ActorRegistry.get_by_class(SessionActor) == []


class TestManualClock:
    """The injected clock used by tests and simulations."""

    def test_clock_must_be_aware(self) -> None:
        """A naive start time is refused: every stored time is UTC."""
        with pytest.raises(ValueError, match="aware"):
            ManualClock(datetime(2030, 1, 1))  # noqa: DTZ001
        clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
        assert clock.advance(minutes=5) == datetime(2030, 1, 1, 0, 5, tzinfo=UTC)
