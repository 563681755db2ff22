"""Actor-supervised, durable conversational sessions for LLM-agent orchestrators.

Example:
    >>> from actors import create_session_manager
    >>> with create_session_manager("sqlite:///./sessions.db") as manager:  # doctest: +SKIP
    ...     sid = manager.create_session(mode="copilot", config={"model": "gpt-4"})
    ...     manager.save_session_state(sid, [{"role": "user", "content": "hi"}], {}, "plan")
"""

from actors._clock import Clock, ManualClock, utc_now
from actors._errors import (
    AccessDenied,
    ApprovalClosed,
    ApprovalExpired,
    ApprovalNotFound,
    ApprovalTimeout,
    CreatedBeforeFork,
    InvalidArgument,
    InvalidTransition,
    ManagerClosed,
    NotSerializable,
    OutcomeUnknown,
    PayloadTooLarge,
    SchemaOutdated,
    SchemaTooNew,
    SessionExists,
    SessionFailed,
    SessionNotFound,
    SessionOwnedElsewhere,
    SessionSupervisorError,
    StaleSession,
    StoreUnavailable,
    TooManyActors,
)
from actors._factory import create_session_manager, get_session_manager
from actors._logging import configure_logging
from actors._manager import SessionManager
from actors._messages import LiveState
from actors._runtime import (
    NoSnapshot,
    RuntimeCloser,
    RuntimeFactory,
    RuntimeUnavailable,
    SessionBusy,
    close_runtime,
)
from actors._scope import UserScope
from actors._session import SessionActor
from actors._supervisor import SessionSupervisor
from actors._work import UnitOfWork

__all__ = [
    "AccessDenied",
    "ApprovalClosed",
    "ApprovalExpired",
    "ApprovalNotFound",
    "ApprovalTimeout",
    "Clock",
    "CreatedBeforeFork",
    "InvalidArgument",
    "InvalidTransition",
    "LiveState",
    "ManagerClosed",
    "ManualClock",
    "NoSnapshot",
    "NotSerializable",
    "OutcomeUnknown",
    "PayloadTooLarge",
    "RuntimeCloser",
    "RuntimeFactory",
    "RuntimeUnavailable",
    "SchemaOutdated",
    "SchemaTooNew",
    "SessionActor",
    "SessionBusy",
    "SessionExists",
    "SessionFailed",
    "SessionManager",
    "SessionNotFound",
    "SessionOwnedElsewhere",
    "SessionSupervisor",
    "SessionSupervisorError",
    "StaleSession",
    "StoreUnavailable",
    "TooManyActors",
    "UnitOfWork",
    "UserScope",
    "close_runtime",
    "configure_logging",
    "create_session_manager",
    "get_session_manager",
    "utc_now",
]
