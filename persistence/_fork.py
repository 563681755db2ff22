"""What a forked child inherits from a store opened before ``os.fork()``, and refuses.

A child process gets a copy of the parent's memory but none of its threads (the writer,
the actors, the ticker) and shares the parent's database sockets. Using them would hang
(nobody serves the queues) or corrupt the parent's connections (two processes talking on
one socket). So every store remembers the fork generation it was opened in; in a child
it refuses every call with :class:`CreatedBeforeFork`, and the child's copies of the
PostgreSQL sockets are pointed at ``/dev/null``, so that even the child's exit (which
closes what it holds) sends nothing on the parent's connections.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from typing import Any, ClassVar


class _Forks:
    generation = 0
    #: The driver connections of every open store in this process (PostgreSQL's have a
    #: socket; SQLite's have none to neutralise).
    connections: ClassVar[weakref.WeakSet[Any]] = weakref.WeakSet()


def generation() -> int:
    """How many times this process's lineage forked since the module was imported."""
    return _Forks.generation


def track(connection: Any) -> None:
    """Remember a driver connection, to neutralise its socket in a forked child."""
    with contextlib.suppress(TypeError):  # a driver object that takes no weak reference
        _Forks.connections.add(connection)


def _after_fork_in_child() -> None:
    _Forks.generation += 1
    sockets: list[int] = []
    for connection in list(_Forks.connections):
        fileno = getattr(connection, "fileno", None)
        if fileno is None:
            continue
        with contextlib.suppress(Exception):  # a closed connection has no socket
            sockets.append(int(fileno()))
    _Forks.connections = weakref.WeakSet()
    if not sockets:
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in sockets:
            # The child's copy of the descriptor now names /dev/null; the parent's socket
            # is untouched. libpq's goodbye on close (in the child) goes nowhere.
            with contextlib.suppress(OSError):
                os.dup2(devnull, fd)
    finally:
        os.close(devnull)


os.register_at_fork(after_in_child=_after_fork_in_child)
