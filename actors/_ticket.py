"""A caller's claim on one message: the timeout rule at the actor's door.

A caller that gives up (``call_timeout``) while its message still waits in the actor's
inbox withdraws it: the actor drops it when it comes to it, so a refused call never takes
effect later. A message the actor already started is waited for (a short grace past the
timeout), because its outcome is what the caller must be told. The actor bounds its own
store writes by the ticket's deadline, so a started message ends close to it.
"""

from __future__ import annotations

import threading
import time

from persistence import StoreUnavailable

_PENDING, _STARTED, _WITHDRAWN = range(3)
#: Guards the transitions of every ticket: each is a few bytecodes.
_TRANSITION = threading.Lock()


class Withdrawn(StoreUnavailable):
    """The caller gave up before its message started; it was dropped unhandled."""


class CallTicket:
    """The deadline of one call and whether its message started or was withdrawn."""

    __slots__ = ("_state", "deadline", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self._state = _PENDING

    def remaining(self) -> float:
        """Seconds left until the caller gives up (0 once past)."""
        return max(0.0, self.deadline - time.monotonic())

    def start(self) -> bool:
        """Mark the message started; ``False`` if its caller withdrew it first."""
        with _TRANSITION:
            if self._state == _WITHDRAWN:
                return False
            self._state = _STARTED
            return True

    def requeue(self) -> None:
        """Make a message whose handling was refused before it changed anything pending again.

        A call that retries after a hand-off sends the same message once more: as before,
        the caller may withdraw it while it waits in the inbox.
        """
        with _TRANSITION:
            self._state = _PENDING

    def withdraw(self) -> bool:
        """Give up on a message not started yet; ``False`` if it already started."""
        with _TRANSITION:
            if self._state == _STARTED:
                return False
            self._state = _WITHDRAWN
            return True
