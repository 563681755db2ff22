"""Why a fenced write matched no row: the one error that explains it.

Every guarded write (checkpoint, transition, lease) updates its row only when session,
epoch, version and status all match, so a refusal is one UPDATE that changed nothing.
Only then is the state row read again, to name the cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from sqlalchemy import Connection, select

from persistence._backend import Tx
from persistence._errors import (
    InvalidTransition,
    SessionNotFound,
    SessionOwnedElsewhere,
    SessionSupervisorError,
    StaleSession,
)
from persistence._models import LIVE_STATUSES
from persistence._statements import STATE_GUARD
from persistence._tables import states


def explain_refusal(
    session_id: str,
    row: Sequence[Any] | None,
    *,
    action: str,
    epoch: int | None,
    version: int | None,
    allowed: Sequence[str],
) -> NoReturn:
    """Raise the error that explains why a guarded write matched no row.

    ``row`` is the state row's (status, version, epoch, owner), ``None`` if there is none.
    """
    if row is None:
        raise SessionNotFound(session_id)
    status, actual_version, actual_epoch, owner = row
    if epoch is not None and actual_epoch != epoch:
        raise SessionOwnedElsewhere(session_id, owner)
    if status not in allowed:
        raise InvalidTransition(session_id, status, action)
    if version is not None and actual_version != version:
        raise StaleSession(session_id, version, actual_version)
    raise SessionOwnedElsewhere(session_id, owner)


def diagnose(
    connection: Connection,
    session_id: str,
    *,
    action: str,
    epoch: int | None = None,
    version: int | None = None,
    allowed: Sequence[str] = LIVE_STATUSES,
) -> NoReturn:
    """:func:`explain_refusal` for the state row as ``connection`` sees it now."""
    row = (
        connection.execute(
            select(states.c.status, states.c.version, states.c.epoch, states.c.owner).where(
                states.c.session_id == session_id
            )
        )
    ).first()
    explain_refusal(session_id, row, action=action, epoch=epoch, version=version, allowed=allowed)


def refusal_of(
    tx: Tx,
    session_id: str,
    *,
    action: str,
    epoch: int | None = None,
    version: int | None = None,
    allowed: Sequence[str] = LIVE_STATUSES,
) -> SessionSupervisorError:
    """The error :func:`explain_refusal` raises for the state row as ``tx`` sees it now."""
    row = tx.execute(STATE_GUARD, {"sid": session_id}).fetchone()
    try:
        explain_refusal(
            session_id, row, action=action, epoch=epoch, version=version, allowed=allowed
        )
    except SessionSupervisorError as error:
        return error
