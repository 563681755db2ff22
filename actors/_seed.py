"""The seed's quiet failures: its methods return ``False``/``None``/``[]`` and log why.

``SessionManager``'s seed methods are the typed ones run through :func:`quietly`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from actors._core import Core
from actors._errors import ManagerClosed
from actors._typed import stored_state
from persistence import LIVE_STATUSES, InvalidArgument, SessionSupervisorError

log = structlog.get_logger("actors.manager")

T = TypeVar("T")
D = TypeVar("D")


def quietly(core: Core, default: D, action: str, session_id: Any, call: Callable[[], T]) -> T | D:
    """``call()``, or ``default`` (logged) if it raised; ``ManagerClosed`` still raises.

    A closed manager is a programming error, not an expected failure.
    """
    core.check_open()
    try:
        return call()
    except ManagerClosed:
        raise  # closed while the call ran
    except SessionSupervisorError as error:
        log.warning(
            f"session.{action}_refused",
            session_id=session_id,
            error_type=type(error).__name__,
            error=str(error),
        )
        return default
    except Exception as error:
        # The seed's methods return False on any error. This is not a refusal but a
        # fault (a session actor crashed while handling the call; it restarts from its
        # last checkpoint): logged with its traceback.
        log.error(
            f"session.{action}_failed",
            session_id=session_id,
            error_type=type(error).__name__,
            error=repr(error),
            exc_info=error,
        )
        return default


def done(call: Callable[[], object]) -> Callable[[], bool]:
    """``call`` made to return ``True`` once it returned (for the seed's bool results)."""

    def run() -> bool:
        call()
        return True

    return run


def load_state(core: Core, session_id: str, include_completed: bool) -> dict[str, Any] | None:
    """The seed's ``load_session_state``: live sessions only, unless ``include_completed``."""

    def call() -> dict[str, Any] | None:
        if not isinstance(include_completed, bool):
            raise InvalidArgument(
                f"include_completed must be a bool, not {type(include_completed).__name__}"
            )
        state = stored_state(core, session_id)
        if not include_completed and state["status"] not in LIVE_STATUSES:
            log.warning("session.load_refused", session_id=session_id, status=state["status"])
            return None
        return state

    return quietly(core, None, "load", session_id, call)


def phase_hook(
    save: Callable[..., bool],
    session_id: str,
    get_history: Callable[[], list[dict[str, Any]]],
    get_context: Callable[[], dict[str, Any]],
    get_plan: Callable[[], dict[str, Any] | None] | None,
) -> Callable[..., bool]:
    """The ``on_phase_change(phase, step_number=None)`` callback that saves via ``save``."""

    def on_phase_change(phase: str, step_number: int | None = None) -> bool:
        plan = get_plan() if get_plan is not None else None
        return save(session_id, get_history(), get_context(), phase, step_number, plan)

    return on_phase_change
