"""What the manager's supervisor and actors hold: for dashboards, health checks, operators."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors._messages import Describe, LiveState
from actors._validate import require_str

if TYPE_CHECKING:
    import pykka

    from actors._metrics import CheckpointTimings
    from actors._settings import Settings
    from actors._supervisor import SessionSupervisor
    from persistence import Database


class Introspection:
    """Mixin of the manager: ``live``, ``live_sessions``, ``reset_failures``, ``stats``."""

    if TYPE_CHECKING:  # provided by SessionManager
        _settings: Settings
        _db: Database
        _supervisor: pykka.ActorProxy[SessionSupervisor]
        _checkpoint_timings: CheckpointTimings

        def _check_open(self) -> None: ...

        def _ask(self, session_id: str, message: Any) -> Any: ...

    def live(self, session_id: str) -> LiveState:
        """What the session's live actor holds (rehydrating it if needed)."""
        self._check_open()
        session_id = require_str("session_id", session_id)
        state: LiveState = self._ask(session_id, Describe())
        return state

    def live_sessions(self) -> list[str]:
        """Ids of the sessions that have a live actor in this process."""
        self._check_open()
        result: list[str] = self._supervisor.live_sessions().get(
            timeout=self._settings.call_timeout
        )
        return result

    def reset_failures(self, session_id: str) -> None:
        """Let a session that crashed too often (``SessionFailed``) be restarted again."""
        self._check_open()
        self._supervisor.reset_failures(session_id).get(timeout=self._settings.call_timeout)

    def stats(self) -> dict[str, Any]:
        """What this manager did since it started, for dashboards and health checks.

        Returns:
            ``live_actors``; the supervisor's counters ``spawned``, ``rehydrations``,
            ``passivations``, ``restarts``, ``crashes``, ``expirations``,
            ``lease_takeovers`` (sessions taken from an owner whose lease lapsed),
            ``leases_lost`` (taken from us), ``sweeps``, ``sweeps_skipped`` (periodic
            sweeps left to another process that had just swept) and ``sessions_purged``
            (deleted for being older than ``retention``); ``checkpoints``,
            ``checkpoints_failed``, ``checkpoint_p50_ms`` and ``checkpoint_p99_ms`` (the
            latest 1024 checkpoints, from the call until the commit; ``None`` before the
            first); and the store writer's ``writes_waiting``, ``write_batches``,
            ``writes_committed``, ``largest_batch``, ``write_batches_failed`` and
            ``write_batches_retried`` (PostgreSQL deadlock victims run again).
        """
        self._check_open()
        result: dict[str, Any] = self._supervisor.stats().get(timeout=self._settings.call_timeout)
        result.update(self._checkpoint_timings.snapshot())
        writer = self._db.store.writer
        result.update(
            writes_waiting=writer.pending,
            write_batches=writer.stats.batches,
            writes_committed=writer.stats.operations,
            largest_batch=writer.stats.largest_batch,
            write_batches_failed=writer.stats.failed_batches,
            write_batches_retried=writer.stats.retried_batches,
        )
        return result
