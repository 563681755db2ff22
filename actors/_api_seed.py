"""The seed's methods on the manager: the typed API, with the seed's quiet failures."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from actors._errors import ManagerClosed
from persistence import LIVE_STATUSES, InvalidArgument, SessionSupervisorError

log = structlog.get_logger("actors.manager")


class SeedAPI:
    """Mixin of the manager: the seed's ``SessionManager`` methods, same signatures.

    Like the seed, they return ``False``/``None``/``[]`` on an expected failure (and log
    why) instead of raising; each is a thin wrapper around a typed method of the manager.
    On a closed manager they raise ``ManagerClosed``, as the typed methods do.
    """

    if TYPE_CHECKING:  # provided by SessionManager

        def _check_open(self) -> None: ...

        def create(
            self,
            mode: str,
            config: dict[str, Any],
            user_id: str | None = None,
            name: str | None = None,
            *,
            session_id: str | None = None,
        ) -> str: ...

        def checkpoint(  # noqa: PLR0917
            self,
            session_id: str,
            conversation_history: list[dict[str, Any]],
            context_variables: dict[str, Any] | None = None,
            current_phase: str | None = None,
            current_step: int | None = None,
            plan_data: dict[str, Any] | None = ...,
            *,
            history_rewritten: bool | None = None,
        ) -> int: ...

        def suspend(self, session_id: str) -> int: ...

        def resume(self, session_id: str) -> int: ...

        def complete(self, session_id: str) -> int: ...

        def delete(self, session_id: str) -> None: ...

        def _stored_state(self, session_id: str) -> dict[str, Any]: ...

        def info(self, session_id: str) -> dict[str, Any]: ...

        def sessions(
            self,
            user_id: str | None = None,
            status: str | None = None,
            mode: str | None = None,
            limit: int = 100,
        ) -> list[dict[str, Any]]: ...

    def create_session(
        self,
        mode: str,
        config: dict[str, Any],
        user_id: str | None = None,
        name: str | None = None,
        *,
        session_id: str | None = None,
    ) -> str:
        """Create a new session; return its id. Raises on failure, like the seed.

        ``session_id``: a caller-chosen id, so that a retry is idempotent (see ``create``).
        """
        return self.create(mode, config, user_id, name, session_id=session_id)

    def _quietly(self, default: Any, action: str, session_id: Any, call: Callable[[], Any]) -> Any:
        # A closed manager is a programming error, not an expected failure: it raises.
        self._check_open()
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

    def save_session_state(  # noqa: PLR0917
        self,
        session_id: str,
        conversation_history: list[dict[str, Any]],
        context_variables: dict[str, Any] | None = None,
        current_phase: str | None = None,
        current_step: int | None = None,
        plan_data: dict[str, Any] | None = None,
    ) -> bool:
        """Save session state; ``True`` once it is committed, ``False`` otherwise (logged).

        Called positionally as in the seed, or by keyword as its task executor does:
        ``context_variables``, ``current_phase`` and ``plan_data`` left out (or ``None``)
        keep their stored values; ``current_step`` is stored as given (``None`` included).
        """

        def call() -> bool:
            self.checkpoint(
                session_id, conversation_history, context_variables, current_phase,
                current_step, plan_data,
            )  # fmt: skip
            return True

        result: bool = self._quietly(False, "save", session_id, call)
        return result

    def load_session_state(
        self, session_id: str, include_completed: bool = False
    ) -> dict[str, Any] | None:
        """The state of an active or suspended session for resumption, else ``None``.

        With ``include_completed=True`` a completed or expired session is returned too
        (a detail or history view), with the same keys. The dict has the seed's keys and
        types (``created_at`` / ``updated_at`` are datetimes) plus ``user_id``, ``name``
        and ``message_count``.
        """

        def call() -> dict[str, Any] | None:
            if not isinstance(include_completed, bool):
                raise InvalidArgument(
                    f"include_completed must be a bool, not {type(include_completed).__name__}"
                )
            state = self._stored_state(session_id)
            if not include_completed and state["status"] not in LIVE_STATUSES:
                log.warning("session.load_refused", session_id=session_id, status=state["status"])
                return None
            return state

        result: dict[str, Any] | None = self._quietly(None, "load", session_id, call)
        return result

    def suspend_session(self, session_id: str) -> bool:
        """Suspend an active session; ``False`` if that is not possible (logged)."""
        return bool(self._quietly(False, "suspend", session_id, lambda: self.suspend(session_id)))

    def resume_session(self, session_id: str) -> bool:
        """Resume a suspended session; ``False`` if that is not possible (logged)."""
        return bool(self._quietly(False, "resume", session_id, lambda: self.resume(session_id)))

    def complete_session(self, session_id: str) -> bool:
        """Mark an active or suspended session completed; ``False`` otherwise (logged)."""
        return bool(self._quietly(False, "complete", session_id, lambda: self.complete(session_id)))

    def delete_session(self, session_id: str) -> bool:
        """Delete a session and all its data; ``False`` if it does not exist (logged)."""

        def call() -> bool:
            self.delete(session_id)
            return True

        return bool(self._quietly(False, "delete", session_id, call))

    def list_sessions(
        self,
        user_id: str | None = None,
        status: str | None = None,
        mode: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Session summaries matching the filters, most recently updated first.

        A bad filter (an unknown ``status``, say) returns ``[]`` and logs
        ``session.list_refused`` with the reason; :meth:`sessions` raises instead.
        """
        result: list[dict[str, Any]] = self._quietly(
            [], "list", None, lambda: self.sessions(user_id, status, mode, limit)
        )
        return result

    def get_session_info(self, session_id: str) -> dict[str, Any] | None:
        """A session's summary in any status, or ``None`` if it does not exist."""
        result: dict[str, Any] | None = self._quietly(
            None, "info", session_id, lambda: self.info(session_id)
        )
        return result

    def phase_hook(
        self,
        session_id: str,
        get_history: Callable[[], list[dict[str, Any]]],
        get_context: Callable[[], dict[str, Any]],
        get_plan: Callable[[], dict[str, Any] | None] | None = None,
    ) -> Callable[..., bool]:
        """The ``on_phase_change(phase, step_number=None)`` callback of a task executor.

        Each call checkpoints the session with the current history and context (the seed's
        Task 4) and returns whether the checkpoint was committed.
        """
        self._check_open()

        def on_phase_change(phase: str, step_number: int | None = None) -> bool:
            plan = get_plan() if get_plan is not None else None
            return self.save_session_state(
                session_id, get_history(), get_context(), phase, step_number, plan
            )

        return on_phase_change
