"""Async twins written once: ``acreate_session = async_twin(create_session)``.

A twin has its sync method's exact signature (a :class:`typing.ParamSpec` carries it), so
``mypy --strict`` rejects a wrong argument to ``await manager.acreate_session(...)`` just
as it does for ``manager.create_session(...)``. The sync method runs on the owner's
private thread pool (:class:`AsyncPool`), so awaiting it never blocks the host's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, Self, TypeVar, overload

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_POOL_SIZE = 32


class AsyncPool:
    """The threads that run the sync methods behind the async twins.

    Started on first use with all its threads at once (see :func:`_start_workers`); a
    closed owner raises before a pool is started again for it.
    """

    def __init__(self, check_open: Callable[[], None]) -> None:
        self._check_open = check_open
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=_POOL_SIZE, thread_name_prefix="session-manager-async"
                )
                _start_workers(self._pool)
            return self._pool

    async def start(self) -> None:
        """Start the pool's threads now, waiting off the loop (they take milliseconds).

        Otherwise the first twin call starts them on the loop's thread, stalling it once.
        """
        self._check_open()
        if self._pool is None:
            await asyncio.to_thread(self._executor)

    async def run(self, call: Callable[[], T]) -> T:
        """Run ``call`` on the pool and wait for it without blocking the running loop."""
        self._check_open()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), call)

    def close(self) -> None:
        """Stop the pool's threads; queued calls are cancelled."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


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


class HasAsyncPool(Protocol):
    """What a class needs to carry async twins: its pool."""

    @property
    def async_pool(self) -> AsyncPool:
        """The pool the twins run their sync methods on."""
        ...


class async_twin(Generic[P, R]):  # noqa: N801 - used like a decorator, named like one
    """Descriptor: the awaitable twin of a sync method, with the same signature.

    Example:
        >>> class Manager:  # doctest: +SKIP
        ...     def create_session(self, mode: str) -> str: ...
        ...     acreate_session = async_twin(create_session)
    """

    def __init__(self, method: Callable[Concatenate[Any, P], R]) -> None:
        self._method = method
        self.__name__ = f"a{method.__name__}"
        self.__doc__ = (
            f"Async twin of ``{method.__name__}``: same arguments, same result, "
            "run on the manager's thread pool so the event loop never blocks."
        )

    def __set_name__(self, owner: type, name: str) -> None:
        self.__name__ = name

    def __call__(
        self, instance: HasAsyncPool, /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]:
        """The twin called on the class: ``SessionManager.acreate(manager, ...)``."""
        return self.__get__(instance)(*args, **kwargs)

    @overload
    def __get__(self, instance: None, owner: type) -> Self: ...

    @overload
    def __get__(
        self, instance: HasAsyncPool, owner: type | None = None
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    def __get__(
        self, instance: HasAsyncPool | None, owner: type | None = None
    ) -> Self | Callable[P, Coroutine[Any, Any, R]]:
        if instance is None:
            return self
        method = self._method

        @functools.wraps(method)
        async def twin(*args: P.args, **kwargs: P.kwargs) -> R:
            return await instance.async_pool.run(
                functools.partial(method, instance, *args, **kwargs)
            )

        twin.__name__ = self.__name__
        twin.__doc__ = self.__doc__
        return twin
