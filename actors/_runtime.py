"""Live runtimes: the non-serialisable object a session's actor builds, hands out and closes.

An orchestrator keeps a live object per session (a ``SwarmOrchestrator``, a tool sandbox,
an open client ...) that cannot be stored. Instead of a module-level ``dict`` of them, the
session's actor owns it: built lazily from the session's last checkpoint by the
``runtime_factory`` given to :func:`~actors.create_session_manager`, held only by that
actor, and closed when the actor stops (passivation, expiry, completion, deletion, a crash,
the manager's close). After a restart or a passivation the next use builds a new one from
the last checkpoint.

Threading contract:
    * The factory and the closer run in the session actor's thread, one call at a time per
      session; while they run, the session's other messages wait.
    * :meth:`SessionManager.runtime` hands the object itself to the caller's thread; the
      library does not lock it. Serialise your own use, or use
      :meth:`SessionManager.unit_of_work` (exclusive per live session) or
      :meth:`SessionManager.run_in_actor` (runs in the actor's thread, between the
      session's other messages).
    * A runtime may be closed by the actor while a caller still holds it (the session was
      passivated, expired, completed, deleted or crashed). Do not keep it across those:
      ask again and you get one rebuilt from the last checkpoint.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from persistence import InvalidArgument, SessionSupervisorError

log = structlog.get_logger("actors.runtime")

RuntimeBuilder = Callable[[dict[str, Any]], Any]
"""Builds a live runtime from a session's state (the dict :meth:`SessionManager.load` returns)."""

RuntimeFactory = RuntimeBuilder | Mapping[str, RuntimeBuilder]
"""One builder for every mode, or a mapping ``mode -> builder``."""

RuntimeCloser = Callable[[Any], object]
"""Releases what a runtime holds; the default calls its ``close()`` or ``aclose()``."""

SNAPSHOT_KEYS = frozenset(
    {"conversation_history", "context_variables", "current_phase", "current_step", "plan_data"}
)
_REQUIRED_SNAPSHOT_KEYS = ("conversation_history", "context_variables", "current_phase")


class RuntimeUnavailable(SessionSupervisorError):
    """No runtime for this session: no factory for its mode, or the factory raised.

    When the factory raised, the original error is the ``__cause__``; nothing was built and
    the next request tries again.
    """

    def __init__(self, session_id: str, reason: str) -> None:
        super().__init__(f"no runtime for session {session_id!r}: {reason}")
        self.session_id = session_id


class NoSnapshot(InvalidArgument):
    """A unit of work was to checkpoint a runtime that has no ``snapshot()`` method.

    ``unit_of_work`` (and ``aunit_of_work``) checkpoints ``runtime.snapshot()`` when the
    block ends; rather than skip that checkpoint silently, it refuses to start with a
    runtime that has none. Give the runtime a ``snapshot()``, or pass
    ``checkpoint=False`` and call ``work.checkpoint(...)`` with the state yourself.
    """

    def __init__(self, session_id: str, runtime: Any) -> None:
        super().__init__(
            f"the runtime of session {session_id!r} ({type(runtime).__name__}) has no"
            " snapshot() method to checkpoint; give it one, or use"
            " unit_of_work(session_id, checkpoint=False) and call work.checkpoint(...)"
        )
        self.session_id = session_id


class SessionBusy(SessionSupervisorError):
    """Another unit of work holds this session and did not finish in time."""

    def __init__(self, session_id: str, waited: float) -> None:
        super().__init__(f"session {session_id!r} is in another unit of work; waited {waited:g}s")
        self.session_id = session_id


# ---------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class UseRuntime:
    """Return the session's :class:`RuntimeHandle`, building the runtime if needed."""


_ANY: Any = object()


@dataclass(frozen=True, slots=True)
class DiscardRuntime:
    """Close the runtime (only if it is still ``expected``, when given); answer if one was."""

    expected: Any = _ANY


@dataclass(frozen=True, slots=True)
class RunInActor:
    """Call ``function(runtime, *args, **kwargs)`` in the actor's thread."""

    function: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


RuntimeMessage = UseRuntime | DiscardRuntime | RunInActor


@dataclass(frozen=True, slots=True)
class RuntimeHandle:
    """A session's runtime and the lock its units of work share (per live actor)."""

    runtime: Any
    lock: threading.Lock


# ---------------------------------------------------------------------- factory


def close_runtime(runtime: Any) -> None:
    """The default closer: ``runtime.close()``, else ``runtime.aclose()``, else nothing.

    An ``aclose()`` coroutine runs to completion on a private event loop in the actor's
    thread. A runtime bound to the host's event loop needs its own closer, e.g.
    ``lambda rt: asyncio.run_coroutine_threadsafe(rt.aclose(), loop).result()``.
    """
    close = getattr(runtime, "close", None)
    if callable(close):
        result = close()
    else:
        aclose = getattr(runtime, "aclose", None)
        if not callable(aclose):
            return
        result = aclose()
    if inspect.isawaitable(result):
        asyncio.run(_awaited(result))


async def _awaited(awaitable: Any) -> None:
    await awaitable


@dataclass(frozen=True)
class RuntimeSpec:
    """A validated ``runtime_factory`` (per mode or one callable) and its closer."""

    default: RuntimeBuilder | None
    by_mode: Mapping[str, RuntimeBuilder]
    closer: RuntimeCloser

    @classmethod
    def from_arguments(
        cls, factory: RuntimeFactory | None, closer: RuntimeCloser | None
    ) -> RuntimeSpec | None:
        """Check the arguments of ``create_session_manager``; ``None`` without a factory.

        Raises:
            InvalidArgument: the factory is neither callable nor a mapping of mode names
                to callables, or the closer is not callable.
        """
        if closer is not None and not callable(closer):
            raise InvalidArgument(f"runtime_closer must be callable, not {type(closer).__name__}")
        if factory is None:
            if closer is not None:
                raise InvalidArgument("runtime_closer was given without a runtime_factory")
            return None
        if isinstance(factory, Mapping):
            by_mode = dict(factory)
            for mode, builder in by_mode.items():
                if not isinstance(mode, str) or not mode:
                    raise InvalidArgument(f"runtime_factory keys must be mode names, not {mode!r}")
                if not callable(builder):
                    raise InvalidArgument(
                        f"runtime_factory[{mode!r}] must be callable, not {type(builder).__name__}"
                    )
            return cls(None, by_mode, closer or close_runtime)
        if not callable(factory):
            raise InvalidArgument(
                "runtime_factory must be a callable or a mapping of mode to callable,"
                f" not {type(factory).__name__}"
            )
        return cls(factory, {}, closer or close_runtime)

    def builder_for(self, mode: str) -> RuntimeBuilder | None:
        """The builder for sessions of ``mode``, if any."""
        return self.by_mode.get(mode, self.default)


# ---------------------------------------------------------------------- the actor's slot


class RuntimeSlot:
    """What one session actor holds of its runtime. Only that actor's thread touches it.

    Args:
        session_id: the session.
        spec: the manager's factory and closer (``None``: no factory configured).
        bound_log: the actor's logger (with ``session_id`` bound).
        work_lock: the lock units of work hold (the supervisor's, so that it never
            passivates an actor in the middle of one); a new lock by default.
    """

    def __init__(
        self,
        session_id: str,
        spec: RuntimeSpec | None,
        bound_log: Any,
        work_lock: threading.Lock | None = None,
    ) -> None:
        self._session_id = session_id
        self._spec = spec
        self._log = bound_log
        self._runtime: Any = None
        self._built = False
        self._lock = threading.Lock() if work_lock is None else work_lock

    @property
    def built(self) -> bool:
        """Whether a runtime is live (built and not closed since)."""
        return self._built

    def receive(self, message: RuntimeMessage, load_state: Callable[[], dict[str, Any]]) -> Any:
        """Handle a runtime message; ``load_state`` returns the last checkpoint's state dict."""
        match message:
            case UseRuntime():
                return RuntimeHandle(self._get(load_state), self._lock)
            case DiscardRuntime(expected=expected):
                if expected is not _ANY and (not self._built or self._runtime is not expected):
                    return False
                return self.close("discarded")
            case RunInActor(function=function, args=args, kwargs=kwargs):
                return function(self._get(load_state), *args, **kwargs)
        msg = f"not a runtime message: {message!r}"  # pragma: no cover - exhaustive match
        raise TypeError(msg)  # pragma: no cover

    def _get(self, load_state: Callable[[], dict[str, Any]]) -> Any:
        if self._built:
            return self._runtime
        spec = self._spec
        if spec is None:
            raise RuntimeUnavailable(
                self._session_id, "the manager was created without a runtime_factory"
            )
        state = load_state()
        builder = spec.builder_for(state["mode"])
        if builder is None:
            raise RuntimeUnavailable(
                self._session_id, f"runtime_factory has no entry for mode {state['mode']!r}"
            )
        try:
            runtime = builder(state)
        except Exception as error:
            self._log.warning("runtime.build_failed", error=repr(error))
            raise RuntimeUnavailable(
                self._session_id, f"the runtime_factory raised {error!r}"
            ) from error
        self._runtime, self._built = runtime, True
        self._log.info(
            "runtime.built",
            version=state["version"],
            phase=state["current_phase"],
            messages=len(state["conversation_history"]),
        )
        return runtime

    def close(self, reason: str) -> bool:
        """Close the runtime if one was built; never raises. Returns whether one was."""
        if not self._built:
            return False
        runtime, self._runtime, self._built = self._runtime, None, False
        assert self._spec is not None  # noqa: S101 - a runtime was built by the spec
        try:
            self._spec.closer(runtime)
        except Exception as error:  # noqa: BLE001 - closing goes on whatever the closer does
            self._log.warning("runtime.close_failed", reason=reason, error=repr(error))
        else:
            self._log.info("runtime.closed", reason=reason)
        return True


def snapshot_of(runtime: Any, session_id: str) -> dict[str, Any] | None:
    """What ``runtime.snapshot()`` says to checkpoint, checked; ``None`` without one.

    Raises:
        InvalidArgument: the snapshot is not a mapping of the checkpoint's arguments.
    """
    snapshot = getattr(runtime, "snapshot", None)
    if not callable(snapshot):
        return None
    return check_snapshot(snapshot(), session_id)


def check_snapshot(snapshot: Any, session_id: str) -> dict[str, Any]:
    """Check a snapshot: the keyword arguments of ``checkpoint`` (without ``session_id``)."""
    if not isinstance(snapshot, Mapping):
        raise InvalidArgument(
            f"the runtime of session {session_id!r}: snapshot() must return a mapping,"
            f" not {type(snapshot).__name__}"
        )
    unknown = sorted(set(snapshot) - SNAPSHOT_KEYS)
    missing = [key for key in _REQUIRED_SNAPSHOT_KEYS if key not in snapshot]
    if unknown or missing:
        raise InvalidArgument(
            f"the runtime of session {session_id!r}: snapshot() keys: unknown {unknown},"
            f" missing {missing}; expected {sorted(SNAPSHOT_KEYS)}"
        )
    return dict(snapshot)
