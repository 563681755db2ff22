"""Settings are checked when the manager is made (issue 16, item 4).

Every duration takes seconds (an int or a float) or a timedelta. A value that means
nothing (NaN, negative, zero or infinite where that is meaningless, a bool, out of range)
is refused with ``InvalidArgument`` before anything is created, not even the SQLite file;
a value that does mean something works, never an OverflowError on the first
``create_session``, never a busy-looping ticker.
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors import (
    InvalidArgument,
    ManualClock,
    SessionManager,
    create_session_manager,
)
from actors._clock import NEVER
from actors._settings import MIN_TICK_SECONDS
from persistence import Database
from tests.conftest import ManagerFactory, history
from tests.robustness._support import TIMEOUT, crash

YEARS_100 = 100 * 365 * 24 * 3600
CENTURY = timedelta(seconds=YEARS_100)

DURATIONS = (
    "session_ttl",
    "cleanup_interval",
    "lease_ttl",
    "idle_timeout",
    "call_timeout",
    "restart_window",
    "restart_backoff",
    "restart_backoff_max",
    "sqlite_busy_timeout",
    "handoff_wait",
)
#: Durations for which zero means something ("no delay", "never ask for a hand-off").
ZERO_OK = ("restart_backoff", "restart_backoff_max", "handoff_wait")
#: Durations for which infinity means something ("never").
NEVER_OK = ("session_ttl", "idle_timeout")


def _refused() -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = []
    for name in DURATIONS:
        for value in (math.nan, -1, -0.5, timedelta(seconds=-1), True, False, "5", None, [1]):
            cases.append((name, value))
        if name not in ZERO_OK:
            cases += [(name, 0), (name, 0.0), (name, timedelta(0))]
        if name not in NEVER_OK:
            cases += [(name, math.inf), (name, timedelta.max), (name, 10**400)]
    cases += [
        ("session_ttl", 1e-7),  # less than a microsecond: a zero timedelta
        ("cleanup_interval", 0.001),  # a tick every millisecond is a busy loop
        ("cleanup_interval", 1e-9),
        ("lease_ttl", 0.01),  # renewed every third of it: a busy loop too
        ("lease_ttl", timedelta(microseconds=1)),
        ("call_timeout", YEARS_100 + 1),
        ("restart_window", timedelta(days=365 * 101)),
        ("restart_backoff_max", -math.inf),
        ("sqlite_busy_timeout", 86_401),
        ("instance_id", ""),
        ("instance_id", "w" * 65),
        ("instance_id", "worker\n7"),
        ("instance_id", "tab\there"),
        ("instance_id", "nul\x00"),
        ("instance_id", "lone\ud800"),
        ("instance_id", 42),
        ("instance_id", b"worker"),
        ("clock", "now"),
        ("sqlite_synchronous", "FAST"),
        ("runtime_factory", 42),
    ]
    for name in ("max_live", "max_restarts"):
        cases += [(name, v) for v in (0, -1, True, 1.5, "10", None)]
    for name in ("max_message_bytes", "max_state_bytes"):
        cases += [(name, v) for v in (0, -1, True, 2.0, "1")]
    return cases


def _accepted() -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = []
    for name in DURATIONS:
        cases += [(name, 2), (name, 2.5), (name, timedelta(seconds=2))]
    for name in NEVER_OK:
        cases += [(name, math.inf), (name, timedelta.max), (name, 10**400), (name, 2 * CENTURY)]
    cases += [
        ("cleanup_interval", MIN_TICK_SECONDS),
        ("cleanup_interval", YEARS_100),
        ("lease_ttl", 3 * MIN_TICK_SECONDS),
        ("lease_ttl", CENTURY),
        ("call_timeout", YEARS_100),
        ("restart_window", CENTURY),
        ("restart_backoff", 0),
        ("restart_backoff", CENTURY),
        ("restart_backoff_max", timedelta(0)),
        ("restart_backoff_max", CENTURY),
        ("handoff_wait", 0),
        ("sqlite_busy_timeout", 86_400),
        ("instance_id", "w" * 64),
        ("instance_id", "worker 7 / zürich"),
        ("max_message_bytes", None),
        ("max_state_bytes", None),
        ("max_live", 1),
        ("max_restarts", 10**9),
    ]
    return cases


def _ids(cases: list[tuple[str, Any]]) -> list[str]:
    return [f"{name}={value!r}"[:60] for name, value in cases]


class TestRefused:
    """A meaningless setting is refused at construction, and leaves nothing behind."""

    @pytest.mark.parametrize(("name", "value"), _refused(), ids=_ids(_refused()))
    def test_invalid_argument_and_no_file(self, tmp_path: Path, name: str, value: Any) -> None:
        """InvalidArgument names the setting; the SQLite file and no thread were created."""
        path = tmp_path / "never.db"
        threads = threading.active_count()
        with pytest.raises(InvalidArgument, match=name):
            create_session_manager(f"sqlite:///{path}", **{name: value})
        assert not path.exists()
        assert list(tmp_path.iterdir()) == []
        assert threading.active_count() <= threads

    def test_the_manager_class_checks_them_too(self, tmp_path: Path) -> None:
        """SessionManager(db, ...) made directly refuses the same values, before any thread."""
        db = Database.open(f"sqlite:///{tmp_path / 's.db'}")
        try:
            threads = threading.active_count()
            refused: list[tuple[str, Any]] = [
                ("session_ttl", math.nan),
                ("cleanup_interval", math.nan),
                ("instance_id", "x" * 70),
                ("lease_ttl", "30"),
            ]
            for name, value in refused:
                with pytest.raises(InvalidArgument, match=name):
                    SessionManager(db, **{name: value})
            assert threading.active_count() <= threads
        finally:
            db.close()

    def test_instance_id_too_wide_for_the_owner_column_on_postgresql(self, pg_url: str) -> None:
        """70 characters used to open fine and fail every create; now refused at once."""
        with pytest.raises(InvalidArgument, match="instance_id"):
            create_session_manager(pg_url, instance_id="w" * 70)


class TestAccepted:
    """A meaningful setting works: no OverflowError, no busy loop, from the first call."""

    @pytest.mark.parametrize(("name", "value"), _accepted(), ids=_ids(_accepted()))
    def test_sessions_live_through_their_lifecycle(
        self, tmp_path: Path, clock: ManualClock, name: str, value: Any
    ) -> None:
        """Create, save, suspend, resume, a sweep a year later, load: all work."""
        with create_session_manager(
            f"sqlite:///{tmp_path / 's.db'}", clock=clock, **{name: value}
        ) as manager:
            assert manager._core.housekeeping.ticker.interval >= MIN_TICK_SECONDS
            sid = manager.create_session("copilot", {})
            assert manager.save_session_state(sid, history(2), {"k": 1}, "planning", 1)
            assert manager.suspend_session(sid)
            assert manager.resume_session(sid)
            assert manager.save_session_state(sid, history(3), {"k": 2}, "execution", 2)
            clock.advance(days=365)
            manager.sweep()
            state = manager.load_session_state(sid, include_completed=True)
            assert state is not None
            assert state["conversation_history"] == history(3)

    @pytest.mark.parametrize("ttl", [60, 60.0, timedelta(seconds=60)], ids=["int", "float", "td"])
    def test_seconds_and_timedelta_mean_the_same(
        self, make_manager: ManagerFactory, clock: ManualClock, ttl: Any
    ) -> None:
        """session_ttl=60 (a raw TypeError before) expires an idle session after 60 s."""
        manager = make_manager(session_ttl=ttl, lease_ttl=30)
        sid = manager.create_session("copilot", {})
        lease = manager.info(sid)["lease_expires_at"]
        assert datetime.fromisoformat(lease) == clock() + timedelta(seconds=30)
        clock.advance(seconds=59)
        assert manager.sweep()["sessions_expired"] == 0
        clock.advance(seconds=2)
        assert manager.sweep()["sessions_expired"] == 1
        assert manager.info(sid)["status"] == "expired"

    def test_smallest_intervals_do_not_busy_loop(self, make_manager: ManagerFactory) -> None:
        """The fastest ticker accepted ticks every 10 ms, not in a tight loop."""
        manager = make_manager(cleanup_interval=MIN_TICK_SECONDS, lease_ttl=3 * MIN_TICK_SECONDS)
        assert manager._core.housekeeping.ticker.interval == pytest.approx(MIN_TICK_SECONDS)


class TestNever:
    """``timedelta.max`` (or infinity) as "never" works on both backends."""

    @pytest.mark.parametrize("ttl", [timedelta.max, math.inf], ids=["timedelta.max", "inf"])
    def test_session_ttl_never_expires(
        self, any_db_url: str, make_manager: ManagerFactory, clock: ManualClock, ttl: Any
    ) -> None:
        """No OverflowError on create/save/resume; stored as a far date; never reaped."""
        manager = make_manager(database_url=any_db_url, session_ttl=ttl)
        sid = manager.create_session("copilot", {})
        assert manager.save_session_state(sid, history(2), {}, "planning")
        assert manager.suspend_session(sid)
        assert manager.resume_session(sid)
        stored = manager.database.store.state(sid)
        assert stored is not None
        assert stored.expires_at == NEVER
        clock.advance(days=365 * 200)
        assert manager.sweep()["sessions_expired"] == 0
        assert manager.save_session_state(sid, history(3), {}, "execution")
        assert manager.info(sid)["status"] == "active"

    def test_finite_ttl_still_stored_exactly(
        self, any_db_url: str, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """A long finite TTL is not rounded to "never": it expires when it says."""
        manager = make_manager(database_url=any_db_url, session_ttl=timedelta(days=3650))
        sid = manager.create_session("copilot", {})
        stored = manager.database.store.state(sid)
        assert stored is not None
        assert stored.expires_at == clock() + timedelta(days=3650)
        clock.advance(days=3651)
        assert manager.sweep()["sessions_expired"] == 1

    def test_idle_timeout_never_passivates(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """An idle actor stays live for ever (max_live still bounds them); the sweep works."""
        manager = make_manager(idle_timeout=timedelta.max, session_ttl=math.inf)
        sid = manager.create_session("copilot", {})
        clock.advance(days=365 * 50)
        assert manager.sweep()["passivated"] == 0
        assert sid in manager.live_sessions()


class TestBackoff:
    """A long restart backoff doubled many times is capped, not overflowed."""

    def test_many_crashes_with_a_century_of_backoff(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """The 20th crash in the window schedules its restart at the ceiling."""
        manager = make_manager(
            max_restarts=100, restart_backoff=CENTURY, restart_backoff_max=CENTURY
        )
        sid = manager.create_session("copilot", {})
        for _ in range(20):
            manager.live(sid)  # a use restarts a crashed session at once
            crash(sid)
        failures = manager._core.supervisor.failures(sid).get(timeout=TIMEOUT)
        assert failures["recent_crashes"] == 20
        assert failures["restart_at"] == clock() + CENTURY
        assert manager.live(sid).status == "active"


def test_never_is_a_plain_date() -> None:
    """NEVER is aware UTC and far from datetime.max, so no time zone conversion overflows."""
    assert NEVER.tzinfo is UTC
    assert NEVER.astimezone(UTC) + timedelta(days=300) < datetime.max.replace(tzinfo=UTC)
