"""Typed errors raised by the store.

They live in the lowest layer so that ``persistence`` can raise them without importing
``actors``; ``actors`` re-exports them as part of the public API.
"""

from __future__ import annotations

import os


class SessionSupervisorError(Exception):
    """Base class of every error this library raises on purpose."""


class InvalidArgument(SessionSupervisorError, ValueError):
    """An argument has the wrong type or value; nothing was changed."""


class SessionNotFound(SessionSupervisorError, LookupError):
    """No session with this id exists (it may have been deleted)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} does not exist")
        self.session_id = session_id


class InvalidTransition(SessionSupervisorError):
    """The lifecycle does not allow this change from the session's current status."""

    def __init__(self, session_id: str, status: str, action: str) -> None:
        super().__init__(
            f"cannot {action} session {session_id!r}: it is {status}"
            f" (allowed: active->suspended->active, active|suspended->completed,"
            f" active->expired)"
        )
        self.session_id = session_id
        self.status = status
        self.action = action


class StaleSession(SessionSupervisorError):
    """A write was based on a version that is no longer current (compare-and-set lost)."""

    def __init__(self, session_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"session {session_id!r} is at version {actual}, not {expected}:"
            " reload it and apply the change again"
        )
        self.session_id = session_id
        self.expected = expected
        self.actual = actual


class SessionOwnedElsewhere(SessionSupervisorError):
    """Another live manager holds this session's lease; retry after it lapses or is released."""

    def __init__(self, session_id: str, owner: str | None) -> None:
        super().__init__(
            f"session {session_id!r} is owned by manager {owner!r}; it can be taken over"
            " once that owner releases it or its lease lapses"
        )
        self.session_id = session_id
        self.owner = owner


class NotSerializable(SessionSupervisorError, TypeError):
    """A value to be stored is not plain JSON; ``path`` points at the offending part."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path} cannot be stored as JSON: {reason}")
        self.path = path
        self.reason = reason


class PayloadTooLarge(InvalidArgument):
    """A message or state is larger than the configured limit."""

    def __init__(self, path: str, size: int, limit: int) -> None:
        super().__init__(
            f"{path} is {size} bytes as JSON, over the limit of {limit} bytes"
            " (raise max_message_bytes / max_state_bytes if this is intended)"
        )
        self.path = path
        self.size = size
        self.limit = limit


class ApprovalNotFound(SessionSupervisorError, LookupError):
    """No approval request with this id exists."""

    def __init__(self, approval_id: str) -> None:
        super().__init__(f"approval request {approval_id!r} does not exist")
        self.approval_id = approval_id


class ApprovalClosed(SessionSupervisorError):
    """The approval request is no longer pending (resolved, expired or cancelled)."""

    def __init__(self, approval_id: str, status: str) -> None:
        super().__init__(f"approval request {approval_id!r} is already {status}")
        self.approval_id = approval_id
        self.status = status


class StoreUnavailable(SessionSupervisorError):
    """The database could not be reached or refused the write; nothing was acknowledged."""


class OutcomeUnknown(StoreUnavailable):
    """A write started but its outcome could not be learnt in time: it may have committed.

    Raised only when a write that had already begun did not finish within the caller's
    timeout plus a short grace (a hung server or disk), or its connection was lost during
    COMMIT and reading back could not tell. Unlike a plain :class:`StoreUnavailable`,
    this is not a refusal: read the session back before acting on it.
    """


class SessionExists(SessionSupervisorError):
    """A session with this id already exists (e.g. importing a session twice)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} already exists")
        self.session_id = session_id


class CreatedBeforeFork(StoreUnavailable):
    """A store or manager opened before ``os.fork()`` was used in the forked child."""

    def __init__(self, what: str, parent_pid: int) -> None:
        super().__init__(
            f"this {what} was created in process {parent_pid} before os.fork(); its threads"
            f" and database connections do not exist in this forked process ({os.getpid()})."
            " Create it after the fork, in each worker process: in the app's startup hook"
            " (FastAPI lifespan / on_startup, gunicorn post_fork), not at import time of an"
            " app preloaded by gunicorn --preload"
        )
        self.parent_pid = parent_pid


class SchemaOutdated(StoreUnavailable):
    """The database's schema is older than this code's, and ``auto_migrate`` is off."""

    def __init__(self, current: str | None, head: str | None) -> None:
        found = "no session schema" if current is None else f"schema revision {current}"
        super().__init__(
            f"the database has {found}; this code needs revision {head} and was told not"
            " to migrate (auto_migrate=False): run `sessions db upgrade` once for the"
            " fleet, then start the workers"
        )
        self.current = current
        self.head = head


class SchemaTooNew(StoreUnavailable):
    """The database's schema is newer than this code can run against (see README)."""

    def __init__(self, current: str, head: str | None, compatible_from: str | None) -> None:
        needs = "a newer release" if compatible_from is None else f"revision {compatible_from}"
        super().__init__(
            f"the database's schema is at revision {current}, newer than this code's"
            f" ({head}), and it no longer supports code that old: it needs code of {needs}"
            " or later. Deploy the newer release on this worker (migrations only add, so"
            " the release before the database's keeps working; older ones do not)"
        )
        self.current = current
        self.head = head
        self.compatible_from = compatible_from
