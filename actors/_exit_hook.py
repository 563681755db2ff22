"""Close a manager the host left open when the interpreter exits."""

from __future__ import annotations

import threading
from typing import Protocol

import structlog

log = structlog.get_logger("actors.manager")


class _Closable(Protocol):
    @property
    def closed(self) -> bool: ...

    @property
    def instance_id(self) -> str: ...

    def close(self) -> None: ...


def _close_at_exit(manager: _Closable) -> None:
    if not manager.closed:
        log.info("manager.closing_at_exit", instance_id=manager.instance_id)
        manager.close()


def register_exit_hook(manager: _Closable) -> None:
    """Close ``manager`` at interpreter exit, before its actor threads are joined."""
    # threading's own exit hooks run before the interpreter joins the non-daemon threads
    # and before atexit handlers (this is how concurrent.futures stops its workers), so a
    # manager left open closes while its threads still run. Actor threads are daemons: one
    # busy in the host's code past close()'s bound (call_timeout) does not hold the exit.
    # The hook keeps the manager alive until exit, which its live actors do anyway.
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(_close_at_exit, manager)
    else:  # pragma: no cover - every CPython >= 3.9 has it
        import atexit  # noqa: PLC0415

        atexit.register(_close_at_exit, manager)
