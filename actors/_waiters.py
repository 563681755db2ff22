"""Who waits for which approval request, so that ``resolve_approval`` wakes them at once."""

from __future__ import annotations

import threading
from collections.abc import Callable


class ApprovalWaiters:
    """The wake-up callbacks of the threads and tasks waiting for each request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, set[Callable[[], None]]] = {}

    def add(self, approval_id: str, wake: Callable[[], None]) -> None:
        """Call ``wake`` when the request is answered in this process."""
        with self._lock:
            self._waiting.setdefault(approval_id, set()).add(wake)

    def remove(self, approval_id: str, wake: Callable[[], None]) -> None:
        """Forget a waiter (it returned or gave up)."""
        with self._lock:
            waiting = self._waiting.get(approval_id)
            if waiting is not None:
                waiting.discard(wake)
                if not waiting:
                    del self._waiting[approval_id]

    def notify(self, approval_id: str) -> None:
        """Wake the waiters of one request (it was answered)."""
        with self._lock:
            wakes = list(self._waiting.get(approval_id, ()))
        for wake in wakes:
            wake()

    def notify_all(self) -> None:
        """Wake every waiter (the manager closes: each raises ``ManagerClosed``)."""
        with self._lock:
            wakes = [wake for waiting in self._waiting.values() for wake in waiting]
        for wake in wakes:
            wake()
