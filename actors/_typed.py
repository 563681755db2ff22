"""The typed API's work: create, checkpoint, transitions, delete and the reads.

Plain functions of the manager's :class:`~actors._core.Core`; ``SessionManager``'s typed
methods (and, through them, the seed's) call these. They raise the typed errors.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

import pykka
import structlog

from actors._core import Core
from actors._documents import info_dict, listing_dict, state_dict
from actors._history import require_version
from actors._mailbox import ask_inline
from actors._messages import ActorGone, Adopt, Save, Transition
from actors._ticket import CallTicket
from actors._validate import require_optional_str, require_step, require_str
from persistence import (
    SESSION_STATUSES,
    InvalidArgument,
    Lease,
    NewSession,
    SessionDocument,
    SessionNotFound,
    SessionSummary,
    SessionSupervisorError,
    StateRecord,
    StoreUnavailable,
    _json,
)

log = structlog.get_logger("actors.manager")

MISSING: Any = object()
"""``plan_data`` left out: keep the stored plan."""


def create(  # noqa: PLR0917
    core: Core,
    mode: str,
    config: dict[str, Any],
    user_id: str | None,
    name: str | None,
    session_id: str | None,
) -> str:
    """Create a session owned by this manager and adopt its actor; return its id.

    A caller-chosen ``session_id`` makes a retry idempotent: the same arguments again
    return the id and write nothing; other arguments raise ``SessionExists``.
    """
    core.check_open()
    mode = require_str("mode", mode, max_length=64)  # the width of session_states.mode
    settings = core.settings
    runtimes = settings.runtimes
    if runtimes is not None and runtimes.builder_for(mode) is None:
        known = ", ".join(repr(m) for m in sorted(runtimes.by_mode))
        raise InvalidArgument(
            f"runtime_factory has no entry for mode {mode!r} (it has {known}):"
            " a session of that mode could never get a runtime; nothing was created"
        )
    user_id = require_optional_str("user_id", user_id)
    name = require_optional_str("name", name)
    if not isinstance(config, dict):
        raise InvalidArgument(f"config must be a dict, not {type(config).__name__}")
    config_json = _json.encode(config, "config", settings.max_state_bytes)
    now = core.now()
    chosen = session_id is not None
    if session_id is None:
        session_id = str(uuid.uuid4())
        default_name = f"{mode}_{now:%Y%m%d_%H%M%S}"
    else:
        session_id = require_str("session_id", session_id, max_length=36)
        if not session_id.isprintable():
            raise InvalidArgument("session_id must be printable characters only")
        default_name = f"{mode}_{session_id[:8]}"  # the same on a retry
    new = NewSession(
        session_id=session_id,
        user_id=user_id,
        name=name or default_name,
        mode=mode,
        config_json=config_json,
        now=now,
        expires_at=settings.expiry(now),
        owner=settings.instance_id,
        lease_until=now + settings.lease_ttl,
        caller_id=chosen,
    )
    # The actor first (its thread may be refused: TooManyActors), then the row.
    try:
        ref = core.supervisor.reserve(session_id).get(timeout=settings.call_timeout)
    except pykka.Timeout:
        raise StoreUnavailable(
            f"the supervisor did not answer within {settings.call_timeout:g}s; nothing was created"
        ) from None
    try:
        created = core.db.store.create_session(new)
    except BaseException:
        if ref is not None:
            core.supervisor.forget(session_id, ref, "create refused")
        raise
    if not created:
        if ref is not None:
            core.supervisor.forget(session_id, ref, "create repeated")
        log.info("session.create_repeated", session_id=session_id)
        return session_id  # a retry of a create that committed: nothing written
    if ref is not None:
        _adopt(core, ref, new)
    log.info("session.created", session_id=session_id, mode=mode, user_id=user_id)
    return session_id


def _adopt(core: Core, ref: pykka.ActorRef[Any], new: NewSession) -> None:
    """Hand the created session's state (and lease) to its actor, which started idle."""
    state = StateRecord(
        new.session_id, new.mode, "{}", None, "init", None, "active", new.now, new.now,
        new.expires_at, 1, 0, core.instance_id, 1, new.lease_until,
    )  # fmt: skip
    try:
        ask_inline(ref, Adopt(Lease(state, {})), core.settings.call_timeout)
    except (pykka.ActorDeadError, pykka.Timeout, ActorGone, SessionSupervisorError) as error:
        # Committed all the same: the session is rehydrated on its first use.
        log.warning("session.adopt_failed", session_id=new.session_id, error=repr(error))
    else:
        core.remember(new.session_id, ref, new.now)


def checkpoint(  # noqa: PLR0917
    core: Core,
    session_id: str,
    conversation_history: list[dict[str, Any]],
    context_variables: dict[str, Any] | None,
    current_phase: str | None,
    current_step: int | None,
    plan_data: dict[str, Any] | None,
    history_rewritten: bool | None,
    expected_version: int | None = None,
) -> int:
    """Check the arguments, encode what is not the history, and hand the save to the actor."""
    core.check_open()
    session_id = require_str("session_id", session_id)
    if current_phase is not None:
        current_phase = require_str("current_phase", current_phase, allow_empty=True)
    require_step(current_step)
    require_version(expected_version)
    if not isinstance(conversation_history, list):
        raise InvalidArgument(
            "conversation_history must be a list of message dicts,"
            f" not {type(conversation_history).__name__}"
        )
    if type(conversation_history) is not list:  # a subclass: the actor reads a plain copy
        try:
            conversation_history = list(conversation_history)
        except Exception as exc:
            raise _json.unreadable("conversation_history", exc) from exc
    if context_variables is not None and not isinstance(context_variables, dict):
        raise InvalidArgument(
            f"context_variables must be a dict or None, not {type(context_variables).__name__}"
        )
    limit = core.settings.max_state_bytes
    context_json = (
        None
        if context_variables is None
        else _json.encode(context_variables, "context_variables", limit)
    )
    set_plan = plan_data is not MISSING and plan_data is not None
    plan_json = _json.encode(plan_data, "plan_data", limit) if set_plan else None
    ticket = CallTicket(core.settings.call_timeout)
    save = Save(
        conversation_history, context_json, current_phase, current_step, plan_json,
        set_plan, history_rewritten, ticket, expected_version=expected_version,
    )  # fmt: skip
    started = time.perf_counter()
    try:
        version: int = core.ask(session_id, save, inline=True, ticket=ticket)
    except BaseException:
        core.checkpoint_timings.failed()
        raise
    core.checkpoint_timings.record(time.perf_counter() - started)
    return version


def transition(core: Core, session_id: str, action: str) -> int:
    """Ask the session's actor to ``suspend``, ``resume``, ``complete`` or ``expire``."""
    core.check_open()
    session_id = require_str("session_id", session_id)
    ticket = CallTicket(core.settings.call_timeout)
    version: int = core.ask(session_id, Transition(action, ticket), ticket=ticket)
    return version


def delete(core: Core, session_id: str) -> None:
    """Stop the session's actor and delete the session with everything attached."""
    core.check_open()
    session_id = require_str("session_id", session_id)
    core.supervisor.remove(session_id).get(timeout=core.settings.call_timeout)
    store = core.store()
    deleted = core.with_handoff(
        session_id, lambda: store.delete_session(session_id, core.instance_id, core.now())
    )
    if not deleted:
        raise SessionNotFound(session_id)
    log.info("session.deleted", session_id=session_id)


def stored_state(core: Core, session_id: str) -> dict[str, Any]:
    """The whole stored state with the seed's keys and types (datetimes), any status."""
    core.check_open()
    session_id = require_str("session_id", session_id)
    document: SessionDocument | None = core.db.store.load(session_id)
    if document is None:
        raise SessionNotFound(session_id)
    return state_dict(document)


def json_ready(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with its datetimes as ISO-8601 strings (``load()``'s dict)."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in state.items()}


def info(core: Core, session_id: str) -> dict[str, Any]:
    """A session's summary: the seed's ``get_session_info`` dict and extra keys."""
    core.check_open()
    session_id = require_str("session_id", session_id)
    summary: SessionSummary | None = core.db.store.session_info(session_id)
    if summary is None:
        raise SessionNotFound(session_id)
    return info_dict(summary)


def sessions(
    core: Core, user_id: str | None, status: str | None, mode: str | None, limit: int
) -> list[dict[str, Any]]:
    """Summaries of the sessions matching the filters, most recently updated first."""
    core.check_open()
    user_id = require_optional_str("user_id", user_id)
    status = require_optional_str("status", status)
    if status is not None and status not in SESSION_STATUSES:
        raise InvalidArgument(
            f"status must be one of {', '.join(SESSION_STATUSES)} or None, not {status!r}"
        )
    if mode is not None:
        mode = require_str("mode", mode, max_length=64)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidArgument(f"limit must be a positive int, not {limit!r}")
    # Past a 32-bit count a limit means "all"; the databases refuse wider values.
    rows = core.db.store.list_sessions(user_id, status, mode, min(limit, 2**31 - 1))
    return [listing_dict(row) for row in rows]
