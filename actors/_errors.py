"""The typed errors of the public API.

Store-level errors are defined in :mod:`persistence` (which may not import ``actors``) and
re-exported here; the ones that only the actor layer raises are defined here.
"""

from __future__ import annotations

from persistence import (
    ApprovalClosed,
    ApprovalNotFound,
    InvalidArgument,
    InvalidTransition,
    NotSerializable,
    OutcomeUnknown,
    PayloadTooLarge,
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


__all__ = [
    "AccessDenied",
    "ApprovalClosed",
    "ApprovalNotFound",
    "InvalidArgument",
    "InvalidTransition",
    "ManagerClosed",
    "NotSerializable",
    "OutcomeUnknown",
    "PayloadTooLarge",
    "SessionExists",
    "SessionFailed",
    "SessionNotFound",
    "SessionOwnedElsewhere",
    "SessionSupervisorError",
    "StaleSession",
    "StoreUnavailable",
]
