"""Settings shared by the supervisor and its session actors, and their checks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict

from actors._clock import Clock, later, utc_now
from actors._delta import HISTORY_CHECKS
from actors._runtime import RuntimeCloser, RuntimeFactory, RuntimeSpec
from actors._validate import (
    Duration,
    require_count,
    require_duration,
    require_instance_id,
    require_optional_count,
)
from persistence import Database, InvalidArgument

#: The shortest time between two ticks of the manager's ticker (``cleanup_interval``, a
#: third of ``lease_ttl``): shorter would be a busy loop.
MIN_TICK_SECONDS = 0.01
#: Seconds a call on a session another live process owns waits for it to be handed over.
DEFAULT_HANDOFF_WAIT = 2.0


class ManagerOptions(TypedDict, total=False):
    """The manager's settings as the caller gives them (see ``create_session_manager``).

    Each is optional; :func:`check_options` fills in the defaults and checks them.
    """

    instance_id: str | None
    session_ttl: Duration
    cleanup_interval: Duration
    clock: Clock | None
    lease_ttl: Duration
    max_live: int
    idle_timeout: Duration
    max_message_bytes: int | None
    max_state_bytes: int | None
    call_timeout: Duration
    max_restarts: int
    restart_window: Duration
    restart_backoff: Duration
    restart_backoff_max: Duration
    runtime_factory: RuntimeFactory | None
    runtime_closer: RuntimeCloser | None
    autostart: bool
    retention: Duration | None
    history_check: str
    handoff_wait: Duration


@dataclass(frozen=True)
class Options:
    """The manager's settings once checked (see :func:`check_options`)."""

    instance_id: str
    clock: Clock
    session_ttl: timedelta
    cleanup_interval: float
    lease_ttl: timedelta
    max_live: int
    idle_timeout: timedelta
    max_message_bytes: int | None
    max_state_bytes: int | None
    call_timeout: float
    max_restarts: int
    restart_window: timedelta
    restart_backoff: timedelta
    restart_backoff_max: timedelta
    runtimes: RuntimeSpec | None
    autostart: bool = True
    #: Completed and expired sessions older than this are purged by the sweep (None: kept).
    retention: timedelta | None = None
    history_check: str = "sampled"
    #: Seconds a call waits for another process to hand over a session it owns (0: none).
    handoff_wait: float = DEFAULT_HANDOFF_WAIT


def check_options(
    *,
    instance_id: Any = None,
    session_ttl: Any = timedelta(hours=24),
    cleanup_interval: Any = 60.0,
    clock: Any = None,
    lease_ttl: Any = timedelta(seconds=30),
    max_live: Any = 1_000,
    idle_timeout: Any = timedelta(minutes=10),
    max_message_bytes: Any = 1 << 20,
    max_state_bytes: Any = 16 << 20,
    call_timeout: Any = 30.0,
    max_restarts: Any = 5,
    restart_window: Any = timedelta(minutes=1),
    restart_backoff: Any = timedelta(seconds=1),
    restart_backoff_max: Any = timedelta(seconds=60),
    runtime_factory: RuntimeFactory | None = None,
    runtime_closer: RuntimeCloser | None = None,
    autostart: Any = True,
    retention: Any = None,
    history_check: Any = "sampled",
    handoff_wait: Any = DEFAULT_HANDOFF_WAIT,
) -> Options:
    """Check every setting of a manager, before anything is opened or started.

    Durations take seconds (``int`` / ``float``) or a ``timedelta``. ``session_ttl`` and
    ``idle_timeout`` of 100 years or more (``timedelta.max``, ``float("inf")``) mean
    "never"; the other durations are finite, at most 100 years.

    Raises:
        InvalidArgument: a setting of the wrong type or out of range; it is named.
    """
    if not isinstance(autostart, bool):
        raise InvalidArgument(f"autostart must be True or False, not {autostart!r}")
    if clock is not None and not callable(clock):
        raise InvalidArgument(f"clock must be callable, not {type(clock).__name__}")
    cleanup = require_duration("cleanup_interval", cleanup_interval, minimum=MIN_TICK_SECONDS)
    return Options(
        instance_id=uuid.uuid4().hex[:16]
        if instance_id is None
        else require_instance_id(instance_id),
        clock=clock or utc_now,
        session_ttl=require_duration("session_ttl", session_ttl, forever=True),
        cleanup_interval=cleanup.total_seconds(),
        # A third of it is the ticker's interval: at least MIN_TICK_SECONDS.
        lease_ttl=require_duration("lease_ttl", lease_ttl, minimum=3 * MIN_TICK_SECONDS),
        max_live=require_count("max_live", max_live),
        idle_timeout=require_duration("idle_timeout", idle_timeout, forever=True),
        max_message_bytes=require_optional_count("max_message_bytes", max_message_bytes),
        max_state_bytes=require_optional_count("max_state_bytes", max_state_bytes),
        call_timeout=require_duration("call_timeout", call_timeout).total_seconds(),
        max_restarts=require_count("max_restarts", max_restarts),
        restart_window=require_duration("restart_window", restart_window),
        restart_backoff=require_duration("restart_backoff", restart_backoff, allow_zero=True),
        restart_backoff_max=require_duration(
            "restart_backoff_max", restart_backoff_max, allow_zero=True
        ),
        runtimes=RuntimeSpec.from_arguments(runtime_factory, runtime_closer),
        autostart=autostart,
        retention=None if retention is None else require_duration("retention", retention),
        history_check=_require_history_check(history_check),
        handoff_wait=_require_handoff_wait(handoff_wait),
    )


def _require_handoff_wait(value: Any) -> float:
    """Seconds (or a ``timedelta``) a call waits for a hand-off; ``0`` turns it off."""
    return require_duration("handoff_wait", value, allow_zero=True).total_seconds()


def _require_history_check(value: Any) -> str:
    """``"sampled"`` (the default) or ``"full"``: how a save's history is compared."""
    if not isinstance(value, str) or value not in HISTORY_CHECKS:
        choices = " or ".join(repr(choice) for choice in HISTORY_CHECKS)
        raise InvalidArgument(f"history_check must be {choices}, not {value!r}")
    return str(value)


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
    cleanup_interval: float = 60.0
    retention: timedelta | None = None
    history_check: str = "sampled"
    handoff_wait: float = DEFAULT_HANDOFF_WAIT

    @classmethod
    def of(cls, db: Database, options: Options) -> Settings:
        """The settings of a manager on ``db``."""
        return cls(
            db=db,
            instance_id=options.instance_id,
            clock=options.clock,
            session_ttl=options.session_ttl,
            lease_ttl=options.lease_ttl,
            idle_timeout=options.idle_timeout,
            max_live=options.max_live,
            max_message_bytes=options.max_message_bytes,
            max_state_bytes=options.max_state_bytes,
            call_timeout=options.call_timeout,
            max_restarts=options.max_restarts,
            restart_window=options.restart_window,
            runtimes=options.runtimes,
            restart_backoff=options.restart_backoff,
            restart_backoff_max=options.restart_backoff_max,
            cleanup_interval=options.cleanup_interval,
            retention=options.retention,
            history_check=options.history_check,
            handoff_wait=options.handoff_wait,
        )

    def now(self) -> datetime:
        """The injected clock's time."""
        return self.clock()

    def expiry(self, now: datetime) -> datetime:
        """When an active session touched at ``now`` expires (``NEVER`` for no TTL)."""
        return later(now, self.session_ttl)
