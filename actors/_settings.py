"""Settings shared by the supervisor and its session actors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from actors._clock import Clock
from actors._runtime import RuntimeSpec
from persistence import Database


@dataclass(frozen=True)
class Settings:
    """Everything a session actor needs besides its own state."""

    db: Database
    instance_id: str
    clock: Clock
    session_ttl: timedelta
    lease_ttl: timedelta
    idle_timeout: timedelta
    max_live: int
    max_message_bytes: int | None
    max_state_bytes: int | None
    call_timeout: float
    max_restarts: int
    restart_window: timedelta
    connection_timeout: timedelta = timedelta(minutes=5)
    runtimes: RuntimeSpec | None = None
    restart_backoff: timedelta = timedelta(seconds=1)
    restart_backoff_max: timedelta = timedelta(seconds=60)

    def now(self) -> datetime:
        """The injected clock's time."""
        return self.clock()
