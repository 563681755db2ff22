"""The event-loop thread that runs every database coroutine.

SQLAlchemy's asyncio engine is bound to one event loop. This module owns that loop on a
daemon thread; sync callers (actor threads, the host's own event loop thread) submit
coroutines to it and wait on a :class:`concurrent.futures.Future`, so the store works the
same from plain threads and from inside a running ``asyncio`` loop of the host.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class EventLoopThread:
    """An asyncio event loop running forever on its own daemon thread."""

    def __init__(self, name: str = "session-store-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        self._loop.run_forever()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop that runs the store's coroutines."""
        return self._loop

    @property
    def running(self) -> bool:
        """Whether the loop still accepts work."""
        return self._thread.is_alive() and not self._loop.is_closed()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop and return a future of its result."""
        if threading.current_thread() is self._thread:
            coro.close()
            msg = "EventLoopThread.submit() called from the loop thread itself would deadlock"
            raise RuntimeError(msg)
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and block the calling thread until it finishes."""
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop after the callbacks already scheduled, and join the thread."""
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()
