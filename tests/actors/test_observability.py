"""manager.stats() counters and checkpoint latency; structlog events and their format."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from actors import ManualClock, SessionManager, configure_logging
from actors._metrics import CheckpointTimings, percentile
from tests.conftest import ManagerFactory, history

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Tests here reconfigure structlog; give the next tests theirs back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


class TestPercentiles:
    """The ring buffer behind checkpoint_p50_ms / checkpoint_p99_ms."""

    def test_nearest_rank(self) -> None:
        """p50 and p99 by nearest rank; None without samples."""
        samples = [float(i) for i in range(1, 101)]
        assert percentile(samples, 0.50) == 50.0
        assert percentile(samples, 0.99) == 99.0
        assert percentile([7.0], 0.99) == 7.0
        assert percentile([], 0.5) is None

    def test_ring_is_bounded(self) -> None:
        """Only the latest samples count for the percentiles; the count keeps growing."""
        timings = CheckpointTimings(size=4)
        for seconds in (10.0, 10.0, 10.0, 10.0, 0.001, 0.001, 0.001, 0.001):
            timings.record(seconds)
        snapshot = timings.snapshot()
        assert snapshot["checkpoints"] == 8
        assert snapshot["checkpoint_p99_ms"] == 1.0


class TestManagerStats:
    """manager.stats() reports what the issue asks for."""

    def test_keys_and_checkpoint_latency(self, manager: SessionManager) -> None:
        """Checkpoints are counted with p50 <= p99; refused ones are counted apart."""
        before = manager.stats()
        for key in (
            "live_actors", "passivations", "rehydrations", "restarts", "expirations",
            "lease_takeovers", "checkpoints", "checkpoint_p50_ms", "checkpoint_p99_ms",
            "writes_waiting", "write_batches", "writes_committed", "largest_batch",
            "write_batches_failed", "write_batches_retried",
        ):  # fmt: skip
            assert key in before, key
        assert before["checkpoint_p50_ms"] is None
        session_id = manager.create_session("copilot", {})
        for step in range(5):
            manager.save_session_state(session_id, history(step + 1), {}, f"phase {step}")
        manager.complete(session_id)
        assert manager.save_session_state(session_id, history(6), {}, "late") is False
        stats = manager.stats()
        assert stats["checkpoints"] == 5
        assert stats["checkpoints_failed"] == 1
        assert 0 < stats["checkpoint_p50_ms"] <= stats["checkpoint_p99_ms"]
        assert stats["live_actors"] == 0
        assert stats["writes_waiting"] == 0

    def test_passivation_rehydration_expiry(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """max_live evicts (passivation), a later call rehydrates, the sweep expires."""
        manager = make_manager(max_live=1)
        first = manager.create_session("copilot", {})
        manager.create_session("copilot", {})
        manager.live(first)
        clock.advance(hours=25)
        manager.sweep()
        stats = manager.stats()
        assert stats["passivations"] >= 2
        assert stats["rehydrations"] == 1
        assert stats["expirations"] == 2

    def test_lease_takeover_is_counted_and_logged(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """A session whose owner's lease lapsed is taken over: counted on both sides."""
        # The stale owner does not ask for it back (handoff_wait=0): its save is refused.
        first = make_manager(instance_id="first", handoff_wait=0)
        second = make_manager(instance_id="second")
        session_id = first.create_session("copilot", {})
        clock.advance(minutes=5)  # the first owner stopped renewing (as if it crashed)
        with capture_logs() as logs:
            second.live(session_id)
            assert first.save_session_state(session_id, history(1), {}, "stale") is False
        assert second.stats()["lease_takeovers"] == 1
        assert first.stats()["leases_lost"] == 1
        taken = [e for e in logs if e["event"] == "lease.taken_over"]
        assert taken == [
            {
                "event": "lease.taken_over",
                "session_id": session_id,
                "mode": "copilot",
                "previous_owner": "first",
                "log_level": "warning",
            }
        ]


def _lifecycle(make_manager: ManagerFactory, clock: ManualClock) -> None:
    """Drive a manager through most of what it logs."""
    manager = make_manager(max_live=1)
    session_id = manager.create_session("copilot", {})
    manager.save_session_state(session_id, history(3), {}, "plan")
    manager.save_session_state(session_id, history(1), {}, "plan")  # rewritten history
    approval = manager.request_approval(session_id, "plan", {})
    manager.resolve_approval(approval, "approved")
    manager.resolve_approval(approval, "approved")  # late
    manager.suspend_session(session_id)
    manager.resume_session(session_id)
    other = manager.create_session("task", {})  # passivates the first (max_live=1)
    manager.complete_session(session_id)  # rehydrates it
    manager.suspend_session(session_id)  # refused: completed
    clock.advance(hours=25)
    manager.sweep()  # expires the other
    manager.delete_session(other)
    manager.close()


class TestEvents:
    """Every session event carries session_id, and the README lists every event."""

    def test_session_events_carry_session_id(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """Each session.*, lease.* and approval.* event names its session."""
        with capture_logs() as logs:
            _lifecycle(make_manager, clock)
        names = {e["event"] for e in logs}
        for expected in (
            "session.created", "session.checkpointed", "session.history_rewritten",
            "session.suspended", "session.resumed", "session.passivated", "session.rehydrated",
            "session.completed", "session.suspend_refused", "session.expired",
            "session.deleted", "approval.requested", "approval.resolved", "approval.late",
        ):  # fmt: skip
            assert expected in names, expected
        for event in logs:
            if event["event"].split(".")[0] in ("session", "approval"):
                assert event.get("session_id"), event

    def test_readme_lists_the_events(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """Every event name the library emitted here appears in the README."""
        with capture_logs() as logs:
            _lifecycle(make_manager, clock)
        readme = README.read_text(encoding="utf-8")
        missing = sorted({e["event"] for e in logs} - {"session.forgotten"})
        missing = [name for name in missing if f"`{name}`" not in readme]
        assert missing == []


class TestConfigureLogging:
    """configure_logging: JSON lines for production, a readable console."""

    def test_json_lines(self, make_manager: ManagerFactory) -> None:
        """json=True writes one parseable object per line with level and timestamp."""
        stream = io.StringIO()
        configure_logging(json=True, level="INFO", stream=stream)
        manager = make_manager()
        session_id = manager.create_session("copilot", {}, user_id="u1")
        manager.close()
        events: list[dict[str, Any]] = [json.loads(line) for line in stream.getvalue().splitlines()]
        created = next(e for e in events if e["event"] == "session.created")
        assert created["session_id"] == session_id
        assert created["user_id"] == "u1"
        assert created["level"] == "info"
        assert "timestamp" in created
        assert all(e["level"] != "debug" for e in events)

    def test_console_and_levels(self) -> None:
        """The console format is one readable line; WARNING hides info; bad levels fail."""
        stream = io.StringIO()
        configure_logging(level="warning", stream=stream)
        log = structlog.get_logger("test")
        log.info("session.created", session_id="s1")
        log.warning("lease.lost", session_id="s1")
        text = stream.getvalue()
        assert "session.created" not in text
        assert "lease.lost" in text
        assert "session_id=s1" in text
        with pytest.raises(ValueError, match="unknown log level"):
            configure_logging(level="LOUD")

    def test_json_tracebacks_hide_local_variables(self) -> None:
        """An exception is logged as a structured traceback without local variables."""
        stream = io.StringIO()
        configure_logging(json=True, stream=stream)
        secret = "the user's private message"  # noqa: F841, S105 - must not be logged
        try:
            raise RuntimeError("boom")  # noqa: TRY301
        except RuntimeError:
            structlog.get_logger("test").exception("session.crashed", session_id="s1")
        event = json.loads(stream.getvalue())
        assert event["exception"][0]["exc_type"] == "RuntimeError"
        assert "private message" not in stream.getvalue()

    def test_default_stream_follows_sys_stderr(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a stream, events go to whatever sys.stderr is at the time of the event."""
        configure_logging(level="INFO")
        structlog.get_logger("test").info("session.created", session_id="s9")
        assert "session_id=s9" in capsys.readouterr().err


def test_stats_counts_expirations_with_timedelta_ttl(make_manager: ManagerFactory) -> None:
    """A custom session_ttl is honoured by the expirations counter."""
    clock = ManualClock()
    manager = make_manager(clock=clock, session_ttl=timedelta(minutes=1))
    manager.create_session("copilot", {})
    clock.advance(minutes=2)
    manager.sweep()
    assert manager.stats()["expirations"] == 1
