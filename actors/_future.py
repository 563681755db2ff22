"""A one-lock ``pykka.Future`` for the replies of our actors (see :mod:`actors._mailbox`)."""

from __future__ import annotations

import queue
import sys
import threading
from typing import TYPE_CHECKING, Any, TypeVar

import pykka

if TYPE_CHECKING:
    from pykka._types import OptExcInfo

T = TypeVar("T")


class ReplyFuture(pykka.Future[T]):
    """A ``pykka.Future`` for plain threads, resolved once, on one lock.

    The lock is taken at creation; setting the result releases it. A waiter takes it and
    hands it straight back, so any number of ``get`` calls (from any threads) return.
    Behaves as ``ThreadingFuture``: timeouts raise ``pykka.Timeout``, a second ``set``
    raises ``queue.Full``, exceptions are re-raised with their traceback, get hooks
    (``map``, ``filter``, ``join`` ...) work.
    """

    def __init__(self) -> None:
        super().__init__()
        self._ready = threading.Lock()
        self._ready.acquire()
        self._guard = threading.Lock()  # makes set/set_exception/set_get_hook exclusive
        self._value: Any = None
        self._exc_info: OptExcInfo | None = None
        self._done = False

    def get(self, *, timeout: float | None = None) -> Any:
        """The value (or raise the exception) once set; ``pykka.Timeout`` after ``timeout``."""
        if self._get_hook is not None:
            return super().get(timeout=timeout)
        if not self._done:
            wait = -1.0 if timeout is None else max(timeout, 0.0)
            if not self._ready.acquire(timeout=wait):
                if self._get_hook is not None:  # installed while we waited
                    return super().get(timeout=timeout)
                msg = f"{timeout} seconds"
                raise pykka.Timeout(msg)
            self._ready.release()  # for the next waiter
            if self._get_hook is not None:
                return super().get(timeout=timeout)
        if self._exc_info is not None:
            exc_type, exc_value, exc_traceback = self._exc_info
            assert exc_type is not None  # noqa: S101 - as pykka's ThreadingFuture
            if exc_value is None:
                exc_value = exc_type()
            if exc_value.__traceback__ is not exc_traceback:
                raise exc_value.with_traceback(exc_traceback)
            raise exc_value
        return self._value

    def set(self, value: Any | None = None) -> None:
        """Resolve with ``value``; ``queue.Full`` if already resolved."""
        with self._guard:
            self._claim()
            self._value = value
            self._done = True
        self._ready.release()

    def set_exception(self, exc_info: OptExcInfo | None = None) -> None:
        """Resolve with an exception (``sys.exc_info()`` by default)."""
        if exc_info is None:
            exc_info = sys.exc_info()
        with self._guard:
            self._claim()
            self._exc_info = exc_info
            self._done = True
        self._ready.release()

    def set_get_hook(self, func: Any) -> None:
        """Compute the value with ``func(timeout)`` on ``get`` (``map``, ``filter`` ...)."""
        with self._guard:
            self._claim()
            super().set_get_hook(func)
            self._done = True
        self._ready.release()  # wakes waiters, which then run the hook

    def _claim(self) -> None:
        if self._done:
            raise queue.Full
