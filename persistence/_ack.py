"""What a thread waiting for a queued SQLite write waits on: one lock, no condition.

A ``concurrent.futures.Future`` is a condition variable with a waiter list, and waiting on
one allocates a lock per waiter. With dozens of threads each queuing a checkpoint for the
next group commit, that machinery cost about as much CPU as the checkpoint itself. An
:class:`Ack` has exactly one waiter (the thread that queued the write) and the part of the
``Future`` protocol the writer uses: ``set_running_or_notify_cancel``, ``set_result``,
``set_exception`` and ``cancel``.
"""

from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_PENDING, _RUNNING, _CANCELLED, _DONE = range(4)
#: Guards the state transitions of every Ack: each is a few bytecodes, so one lock will do.
_TRANSITION = threading.Lock()


class Ack(Generic[T]):
    """The outcome of one queued write, awaited by the one thread that queued it."""

    __slots__ = ("_error", "_ready", "_state", "_value", "deadline")

    def __init__(self, deadline: float = float("inf")) -> None:
        #: ``time.monotonic()`` when its caller gives up: the writer bounds its lock waits by it.
        self.deadline = deadline
        self._ready = threading.Lock()
        self._ready.acquire()  # released once the outcome is set
        self._state = _PENDING
        self._value: Any = None
        self._error: BaseException | None = None

    def set_running_or_notify_cancel(self) -> bool:
        """Mark it started; ``False`` if its caller gave up first (then drop the write)."""
        with _TRANSITION:
            if self._state == _CANCELLED:
                return False
            self._state = _RUNNING
            return True

    def cancel(self) -> bool:
        """Give up on a write that has not started; ``False`` if it already runs or ran."""
        with _TRANSITION:
            if self._state != _PENDING:
                return self._state == _CANCELLED
            self._state = _CANCELLED
            return True

    def set_result(self, value: T) -> None:
        """Acknowledge: the write committed with ``value``."""
        self._value = value
        self._finish()

    def set_exception(self, error: BaseException) -> None:
        """Fail: the write did not commit."""
        self._error = error
        self._finish()

    def _finish(self) -> None:
        with _TRANSITION:
            self._state = _DONE
        self._ready.release()

    @property
    def started(self) -> bool:
        """Whether the writer took it into a transaction (it can no longer be withdrawn)."""
        return self._state in (_RUNNING, _DONE)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the outcome; whether it is there."""
        return self._ready.acquire(timeout=max(timeout, 0.0))

    def outcome(self) -> T:
        """The value, or raise the error (only once :meth:`wait` returned ``True``)."""
        if self._error is not None:
            raise self._error
        value: T = self._value
        return value
