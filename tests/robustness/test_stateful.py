"""A hypothesis state machine drives the manager against a simple model of the sessions.

Random sequences of create, save (appends, truncations, rewrites), suspend, resume,
complete, delete (and every call on a deleted id), sweep after advancing the injected
clock, close-and-reopen (a restart) and a takeover by a second manager once the first's
leases lapsed (the first, still open, is then refused) run on a real SQLite file and on a
PostgreSQL database, with ``max_live=3`` so actors are also passivated and rehydrated all
the time. After every step each session's stored status, version, history, context, phase and
step must be exactly what the model says; the seed façade's True/False must be what the
lifecycle allows.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from actors import ManualClock, SessionManager, SessionNotFound, create_session_manager
from tests.conftest import PG_ADMIN_DSN, _pg_admin

TTL = timedelta(hours=2)
LEASE = timedelta(seconds=30)

# action -> (statuses it may start from, status it leads to)
LIFECYCLE = {
    "suspend": (("active",), "suspended"),
    "resume": (("suspended",), "active"),
    "complete": (("active", "suspended"), "completed"),
}


@dataclass
class Model:
    """What one session should be."""

    status: str = "active"
    version: int = 1
    history: list[dict[str, Any]] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    phase: str = "init"
    step: int | None = None
    expires_at: Any = None


class SessionsMachine(RuleBasedStateMachine):
    """The manager and its model, step by step."""

    sessions = Bundle("sessions")
    deleted_sessions = Bundle("deleted_sessions")

    backend = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="stateful-"))
        self.url = f"sqlite+aiosqlite:///{self.directory / 'sessions.db'}"
        self.pg_name: str | None = None
        if self.backend == "postgresql":
            self.pg_name = f"ss_stateful_{uuid.uuid4().hex[:12]}"
            _pg_admin(f'CREATE DATABASE "{self.pg_name}"')
            host = PG_ADMIN_DSN.split("@", 1)[1].rsplit("/", 1)[0]
            self.url = f"postgresql://postgres@{host}/{self.pg_name}"
        self.clock = ManualClock()
        self.manager = self._open()
        self.model: dict[str, Model] = {}
        self.deleted: list[str] = []
        self.counter = 0

    def _open(self) -> SessionManager:
        # No housekeeping thread: leases are renewed only by use, so they lapse exactly
        # when the test advances the clock past LEASE. No hand-off on demand: a manager
        # takes a session only once its lease lapsed (test_handoff.py covers hand-offs).
        return create_session_manager(
            self.url, clock=self.clock, session_ttl=TTL, max_live=3, call_timeout=10,
            lease_ttl=LEASE, autostart=False, handoff_wait=0,
        )  # fmt: skip

    def teardown(self) -> None:
        """Close the manager and remove its database."""
        self.manager.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        if self.pg_name is not None:
            _pg_admin(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')

    # ------------------------------------------------------------------ rules

    @rule(target=sessions, mode=st.sampled_from(["copilot", "autonomous"]))
    def create(self, mode: str) -> str:
        """A new session is active at version 1 with an empty state."""
        session_id = self.manager.create_session(mode, {"mode": mode})
        self.model[session_id] = Model(expires_at=self.clock() + TTL)
        return session_id

    @rule(
        session_id=sessions,
        keep=st.floats(min_value=0, max_value=1),
        extra=st.integers(min_value=0, max_value=4),
        step=st.one_of(st.none(), st.integers(min_value=0, max_value=99)),
        phase=st.sampled_from(["planning", "execution", "review", ""]),
    )
    def save(self, session_id: str, keep: float, extra: int, step: int | None, phase: str) -> None:
        """Keep a prefix of the history and add new, unique messages: append or rewrite."""
        model = self.model.get(session_id)
        old = model.history if model is not None else []
        new_history = old[: round(keep * len(old))]
        for _ in range(extra):
            self.counter += 1
            new_history.append({"role": "user", "content": f"m{self.counter}"})
        context = {"counter": self.counter, "step": step}
        ok = self.manager.save_session_state(session_id, new_history, context, phase, step)
        allowed = model is not None and model.status == "active"
        assert ok == allowed, (ok, model)
        if model is not None and ok:
            model.history, model.context, model.phase, model.step = (
                new_history, context, phase, step,
            )  # fmt: skip
            model.version += 1
            model.expires_at = self.clock() + TTL

    @rule(session_id=sessions, action=st.sampled_from(sorted(LIFECYCLE)))
    def transition(self, session_id: str, action: str) -> None:
        """Suspend, resume or complete succeed exactly when the lifecycle allows them."""
        model = self.model.get(session_id)
        ok = getattr(self.manager, f"{action}_session")(session_id)
        sources, target = LIFECYCLE[action]
        allowed = model is not None and model.status in sources
        assert ok == allowed, (action, ok, model)
        if model is not None and ok:
            model.status = target
            model.version += 1
            model.expires_at = self.clock() + TTL if target == "active" else None

    @rule(target=deleted_sessions, session_id=consumes(sessions))
    def delete(self, session_id: str) -> str:
        """Delete removes a session (whatever its status) and nothing else."""
        ok = self.manager.delete_session(session_id)
        assert ok == (session_id in self.model)
        self.model.pop(session_id, None)
        self.deleted.append(session_id)
        return session_id

    @rule(
        session_id=deleted_sessions,
        action=st.sampled_from(["save", "load", "info", *sorted(LIFECYCLE), "delete"]),
    )
    def use_deleted(self, session_id: str, action: str) -> None:
        """Every seed call on a deleted session is refused (False / None) and changes nothing."""
        result: bool | dict[str, Any] | None
        if action == "save":
            result = self.manager.save_session_state(session_id, [], {}, "p", 1)
        elif action == "load":
            result = self.manager.load_session_state(session_id)
        elif action == "info":
            result = self.manager.get_session_info(session_id)
        else:
            result = getattr(self.manager, f"{action}_session")(session_id)
        assert result in (False, None), (action, result)

    @rule(minutes=st.integers(min_value=1, max_value=180))
    def sweep(self, minutes: int) -> None:
        """Advancing the clock and sweeping expires exactly the idle active sessions."""
        now = self.clock.advance(minutes=minutes)
        due = [
            model
            for model in self.model.values()
            if model.status == "active" and model.expires_at < now
        ]
        result = self.manager.sweep()
        assert result["sessions_expired"] == len(due)
        for model in due:
            model.status = "expired"
            model.version += 1

    @precondition(lambda self: self.model)
    @rule()
    def close_and_reopen(self) -> None:
        """A new manager on the same file (a restarted process) carries on."""
        self.manager.close()
        self.manager = self._open()

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def takeover(self, data: st.DataObject) -> None:
        """Once the leases lapsed, a second manager takes the sessions; the first is refused.

        The first manager stays open (a paused process) while the second uses every live
        session, taking its lease; a save through the first to a session the second holds
        is then refused (its epoch is fenced, or the lease is held elsewhere) and changes
        nothing.
        """
        self.clock.advance(LEASE + timedelta(seconds=1))
        old, self.manager = self.manager, self._open()
        try:
            live = ("active", "suspended")
            held = [sid for sid, model in self.model.items() if model.status in live]
            for session_id in held:
                assert self.manager.live(session_id).session_id == session_id
            # Those the second one still holds (max_live=3 may have passivated others,
            # releasing their leases: the first manager could then take them, rightly).
            held = [sid for sid in self.manager.live_sessions() if sid in held]
            if held:
                victim = data.draw(st.sampled_from(held))
                assert not old.save_session_state(victim, [], {"stale": True}, "stale", 0)
        finally:
            old.close()

    # ------------------------------------------------------------------ invariants

    @invariant()
    def stored_state_matches_the_model(self) -> None:
        """Every session is stored exactly as the model says; deleted ones are gone."""
        for session_id, model in self.model.items():
            state = self.manager.load(session_id)
            stored = (
                state["status"],
                state["version"],
                state["conversation_history"],
                state["context_variables"],
                state["current_phase"],
                state["current_step"],
            )
            expected = (
                model.status,
                model.version,
                model.history,
                model.context,
                model.phase,
                model.step,
            )
            assert stored == expected, session_id
        for session_id in self.deleted[-3:]:
            with pytest.raises(SessionNotFound):
                self.manager.load(session_id)
        assert len(self.manager.list_sessions(limit=1000)) == len(self.model)


SessionsMachine.TestCase.settings = settings(
    max_examples=20,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class TestSessionsMachine(SessionsMachine.TestCase):  # type: ignore[valid-type,misc]
    """Random operation sequences never make the manager diverge from the model."""


class PostgresSessionsMachine(SessionsMachine):
    """The same machine on a PostgreSQL database (one per example)."""

    backend = "postgresql"


# Fewer examples: each creates a database, and PostgreSQL's round trips cost more.
PostgresSessionsMachine.TestCase.settings = settings(
    max_examples=10,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.usefixtures("pg_server")
class TestPostgresSessionsMachine(PostgresSessionsMachine.TestCase):  # type: ignore[valid-type,misc]
    """On PostgreSQL too, with restarts and takeovers, the manager never leaves the model."""
