"""Durable storage of sessions: schema, migrations, the store, its writer and its backends.

This package knows nothing of actors; ``actors`` builds on it.
"""

from persistence._admin import OldestActive, StoreOverview
from persistence._backend import DEFAULT_APPLICATION_NAME
from persistence._codec import decode_message, encode_message
from persistence._database import Database
from persistence._engine import DATABASE_URL_ENV, DEFAULT_DATABASE_URL, resolve_url
from persistence._errors import (
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
from persistence._lifecycle import sample_positions
from persistence._migrate import downgrade_op, head_revision, upgrade_op
from persistence._models import (
    APPROVAL_RESOLUTIONS,
    APPROVAL_STATUSES,
    LIVE_STATUSES,
    SESSION_STATUSES,
)
from persistence._records import (
    ApprovalRecord,
    Checkpoint,
    Lease,
    MessageRow,
    NewSession,
    SessionDocument,
    SessionSummary,
    StateRecord,
    SweepCounts,
)
from persistence._store import Store
from persistence._transfer import EXPORT_FORMAT

__all__ = [
    "APPROVAL_RESOLUTIONS",
    "APPROVAL_STATUSES",
    "DATABASE_URL_ENV",
    "DEFAULT_APPLICATION_NAME",
    "DEFAULT_DATABASE_URL",
    "EXPORT_FORMAT",
    "LIVE_STATUSES",
    "SESSION_STATUSES",
    "ApprovalClosed",
    "ApprovalNotFound",
    "ApprovalRecord",
    "Checkpoint",
    "CreatedBeforeFork",
    "Database",
    "InvalidArgument",
    "InvalidTransition",
    "Lease",
    "MessageRow",
    "NewSession",
    "NotSerializable",
    "OldestActive",
    "OutcomeUnknown",
    "PayloadTooLarge",
    "SchemaOutdated",
    "SchemaTooNew",
    "SessionDocument",
    "SessionExists",
    "SessionNotFound",
    "SessionOwnedElsewhere",
    "SessionSummary",
    "SessionSupervisorError",
    "StaleSession",
    "StateRecord",
    "Store",
    "StoreOverview",
    "StoreUnavailable",
    "SweepCounts",
    "decode_message",
    "downgrade_op",
    "encode_message",
    "head_revision",
    "resolve_url",
    "sample_positions",
    "upgrade_op",
]
