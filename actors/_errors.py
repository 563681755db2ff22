"""The typed errors of the public API.

Store-level errors are defined in :mod:`persistence` (which may not import ``actors``) and
re-exported here; the ones that only the actor layer raises are defined here.
"""

from __future__ import annotations

from persistence import (
    ApprovalClosed,
    ApprovalNotFound,
    CreatedBeforeFork,
    InvalidArgument,
    InvalidTransition,
    NotSerializable,
    OutcomeUnknown,
    PayloadTooLarge,
    SchemaOutdated,
    SchemaTooNew,
    SessionExists,
    SessionNotFound,
    SessionOwnedElsewhere,
    SessionSupervisorError,
    StaleSession,
    StoreUnavailable,
)


class AccessDenied(SessionSupervisorError, PermissionError):
    """The session belongs to another user than the one this view is scoped to."""

    def __init__(self, session_id: str, user_id: str | None) -> None:
        super().__init__(f"session {session_id!r} does not belong to user {user_id!r}")
        self.session_id = session_id
        self.user_id = user_id


class SessionFailed(SessionSupervisorError):
    """The session's actor crashed too often in a short time and is not restarted for now."""

    def __init__(self, session_id: str, failures: int, window_seconds: float) -> None:
        super().__init__(
            f"session {session_id!r} crashed {failures} times within {window_seconds:g}s and"
            " is not restarted; look at the 'session.crashed' log events for the cause, then"
            " call manager.reset_failures(session_id) or wait for the window to pass"
        )
        self.session_id = session_id
        self.failures = failures


class ManagerClosed(StoreUnavailable):
    """The manager was closed; create a new one to go on."""

    def __init__(self, message: str = "this SessionManager is closed; create a new one") -> None:
        super().__init__(message)


class TooManyActors(StoreUnavailable):
    """This process could not start another session actor: the system refused a thread.

    A session actor has a thread while it has queued work; the process (or its container)
    is at its thread limit. Nothing was created or changed. Lower ``max_live`` (idle actors
    are then passivated sooner) or raise the limit (``ulimit -u``, the container's pids
    limit).
    """

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"could not start a session actor ({detail}); nothing was changed:"
            " lower max_live or raise the process's thread limit"
        )


class ApprovalExpired(ApprovalClosed):
    """The approval request passed its deadline unanswered; it can no longer be resolved."""

    def __init__(self, approval_id: str) -> None:
        super().__init__(approval_id, "expired")


class ApprovalTimeout(SessionSupervisorError, TimeoutError):
    """``wait_for_approval`` gave up: nobody answered in time; the request is still pending."""

    def __init__(self, approval_id: str, timeout: float) -> None:
        super().__init__(
            f"approval request {approval_id!r} was not answered within {timeout:g}s;"
            " it is still pending: wait again, or go on without it"
        )
        self.approval_id = approval_id
        self.timeout = timeout


__all__ = [
    "AccessDenied",
    "ApprovalClosed",
    "ApprovalExpired",
    "ApprovalNotFound",
    "ApprovalTimeout",
    "CreatedBeforeFork",
    "InvalidArgument",
    "InvalidTransition",
    "ManagerClosed",
    "NotSerializable",
    "OutcomeUnknown",
    "PayloadTooLarge",
    "SchemaOutdated",
    "SchemaTooNew",
    "SessionExists",
    "SessionFailed",
    "SessionNotFound",
    "SessionOwnedElsewhere",
    "SessionSupervisorError",
    "StaleSession",
    "StoreUnavailable",
    "TooManyActors",
]
