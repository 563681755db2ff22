"""Messages sent to session actors, and the signals they answer with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors._ticket import CallTicket
    from persistence import Lease, MessageRow, StateRecord


class ActorGone(Exception):
    """The actor asked is stopping; the caller should check out the session again."""


@dataclass(frozen=True, slots=True)
class Save:
    """Checkpoint the session with this state.

    ``context_json`` and ``plan_json`` were validated and encoded by the caller's thread.
    ``context_json`` or ``phase`` ``None``: keep the stored value. A save that has to wait
    in the actor's inbox is a snapshot (see ``SessionActor.snapshot``): ``history`` is a
    shallow copy and ``encoded`` the rows of ``history[encoded_from:]``, encoded at the
    call, so that what the caller changes afterwards is never what gets stored.
    ``expected_version``: refused with ``StaleSession`` unless the stored version is this
    one (checked by the database in the same write).
    """

    history: list[Any]
    context_json: str | None
    phase: str | None
    step: int | None
    plan_json: str | None
    set_plan: bool
    rewritten: bool | None = None
    ticket: CallTicket | None = None
    encoded_from: int = 0
    encoded: list[MessageRow] | None = None
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class Append:
    """Append ``messages`` to the stored history (``None``: keep the stored value)."""

    messages: list[Any]
    context_json: str | None
    phase: str | None
    step: int | None


@dataclass(frozen=True, slots=True)
class Transition:
    """Change the session's status: ``suspend``, ``resume``, ``complete`` or ``expire``."""

    action: str
    ticket: CallTicket | None = None


@dataclass(frozen=True, slots=True)
class Adopt:
    """Take the state of a session this process just created, with its lease."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class Warm:
    """Load the state now (after a restart) instead of on the first request."""


@dataclass(frozen=True, slots=True)
class Passivate:
    """Release the lease (or hand it to ``to``, another process) and stop; the state is durable."""

    to: str | None = None


@dataclass(frozen=True, slots=True)
class Describe:
    """Return the actor's view of its session (a :class:`LiveState`)."""


@dataclass(frozen=True, slots=True)
class LiveState:
    """What a live session actor holds (its history stays in the database)."""

    session_id: str
    status: str
    version: int
    epoch: int
    message_count: int
    current_phase: str
    current_step: int | None

    @classmethod
    def of(cls, session_id: str, state: StateRecord) -> LiveState:
        """What an actor holding ``state`` reports."""
        return cls(
            session_id=session_id,
            status=state.status,
            version=state.version,
            epoch=state.epoch,
            message_count=state.message_count,
            current_phase=state.current_phase,
            current_step=state.current_step,
        )
