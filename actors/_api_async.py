"""The ``a``-prefixed async twins of the façade's methods.

Each twin runs its sync method on a private thread pool, so awaiting it never blocks the
host's event loop (the sync methods wait on actors and on the store's writer).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_POOL_SIZE = 32


def _start_workers(pool: concurrent.futures.ThreadPoolExecutor) -> None:
    """Start all of the pool's threads now, while it is idle.

    A pool starts its threads lazily, on the submitting thread (the host's event loop),
    and each start waits for the new thread to take the GIL: under load, a burst of first
    calls stalled the loop for tens of milliseconds. Now it is a few milliseconds, once.
    """
    ready = threading.Barrier(_POOL_SIZE + 1, timeout=5)
    for _ in range(_POOL_SIZE):
        pool.submit(ready.wait)
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait()


class AsyncTwins:
    """Mixin: ``await manager.acreate_session(...)`` and friends."""

    _async_pool: concurrent.futures.ThreadPoolExecutor | None = None
    _async_pool_lock = threading.Lock()

    def close(self) -> None:  # pragma: no cover - provided by the manager
        raise NotImplementedError

    def _close_async_pool(self) -> None:
        pool, self._async_pool = self._async_pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _check_open(self) -> None:  # pragma: no cover - provided by the manager
        raise NotImplementedError

    async def _in_thread(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # A closed manager raises at once: no pool (32 threads) is started again for it.
        self._check_open()
        with self._async_pool_lock:
            if self._async_pool is None:
                self._async_pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=_POOL_SIZE, thread_name_prefix="session-manager-async"
                )
                _start_workers(self._async_pool)
            pool = self._async_pool
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, functools.partial(method, *args, **kwargs))

    async def aclose(self) -> None:
        """Async twin of ``close``."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.close)

    async def acreate_session(self, *args: Any, **kwargs: Any) -> str:
        """Async twin of ``create_session``."""
        return await self._in_thread(self.create_session, *args, **kwargs)  # type: ignore[attr-defined]

    async def asave_session_state(self, *args: Any, **kwargs: Any) -> bool:
        """Async twin of ``save_session_state``."""
        return await self._in_thread(self.save_session_state, *args, **kwargs)  # type: ignore[attr-defined]

    async def aload_session_state(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        """Async twin of ``load_session_state``."""
        return await self._in_thread(self.load_session_state, *args, **kwargs)  # type: ignore[attr-defined]

    async def asuspend_session(self, session_id: str) -> bool:
        """Async twin of ``suspend_session``."""
        return await self._in_thread(self.suspend_session, session_id)  # type: ignore[attr-defined]

    async def aresume_session(self, session_id: str) -> bool:
        """Async twin of ``resume_session``."""
        return await self._in_thread(self.resume_session, session_id)  # type: ignore[attr-defined]

    async def acomplete_session(self, session_id: str) -> bool:
        """Async twin of ``complete_session``."""
        return await self._in_thread(self.complete_session, session_id)  # type: ignore[attr-defined]

    async def adelete_session(self, session_id: str) -> bool:
        """Async twin of ``delete_session``."""
        return await self._in_thread(self.delete_session, session_id)  # type: ignore[attr-defined]

    async def alist_sessions(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """Async twin of ``list_sessions``."""
        return await self._in_thread(self.list_sessions, *args, **kwargs)  # type: ignore[attr-defined]

    async def aget_session_info(self, session_id: str) -> dict[str, Any] | None:
        """Async twin of ``get_session_info``."""
        return await self._in_thread(self.get_session_info, session_id)  # type: ignore[attr-defined]

    async def asessions(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """Async twin of ``sessions``."""
        return await self._in_thread(self.sessions, *args, **kwargs)  # type: ignore[attr-defined]

    async def acheckpoint(self, *args: Any, **kwargs: Any) -> int:
        """Async twin of ``checkpoint``."""
        return await self._in_thread(self.checkpoint, *args, **kwargs)  # type: ignore[attr-defined]

    async def aload(self, session_id: str) -> dict[str, Any]:
        """Async twin of ``load``."""
        return await self._in_thread(self.load, session_id)  # type: ignore[attr-defined]

    async def asweep(self) -> dict[str, int]:
        """Async twin of ``sweep``."""
        return await self._in_thread(self.sweep)  # type: ignore[attr-defined]

    async def arequest_approval(self, *args: Any, **kwargs: Any) -> str:
        """Async twin of ``request_approval``."""
        return await self._in_thread(self.request_approval, *args, **kwargs)  # type: ignore[attr-defined]

    async def aresolve_approval(self, *args: Any, **kwargs: Any) -> bool:
        """Async twin of ``resolve_approval``."""
        return await self._in_thread(self.resolve_approval, *args, **kwargs)  # type: ignore[attr-defined]

    async def aget_approval(self, approval_id: str) -> dict[str, Any] | None:
        """Async twin of ``get_approval``."""
        return await self._in_thread(self.get_approval, approval_id)  # type: ignore[attr-defined]
