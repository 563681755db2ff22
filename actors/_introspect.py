"""What the manager's supervisor and actors hold: for dashboards, health checks, operators."""

from __future__ import annotations

from typing import Any

from actors._core import Core
from actors._messages import Describe, LiveState
from actors._validate import require_str


def live(core: Core, session_id: str) -> LiveState:
    """What the session's live actor holds (rehydrating it if needed)."""
    core.check_open()
    state: LiveState = core.ask(require_str("session_id", session_id), Describe())
    return state


def live_sessions(core: Core) -> list[str]:
    """Ids of the sessions that have a live actor in this process."""
    core.check_open()
    result: list[str] = core.supervisor.live_sessions().get(timeout=core.settings.call_timeout)
    return result


def reset_failures(core: Core, session_id: str) -> None:
    """Let a session that crashed too often be restarted again."""
    core.check_open()
    core.supervisor.reset_failures(session_id).get(timeout=core.settings.call_timeout)


def stats(core: Core) -> dict[str, Any]:
    """The supervisor's counters, checkpoint latencies and the writer's counters."""
    core.check_open()
    result: dict[str, Any] = core.supervisor.stats().get(timeout=core.settings.call_timeout)
    result.update(core.checkpoint_timings.snapshot())
    writer = core.db.store.writer
    result.update(
        writes_waiting=writer.pending,
        write_batches=writer.stats.batches,
        writes_committed=writer.stats.operations,
        largest_batch=writer.stats.largest_batch,
        write_batches_failed=writer.stats.failed_batches,
        write_batches_retried=writer.stats.retried_batches,
    )
    return result
