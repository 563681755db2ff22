"""WAL checkpoints of the SQLite store, in a thread of their own.

SQLite's automatic checkpoint runs inside the COMMIT that crosses ``wal_autocheckpoint``
pages, so every few hundred checkpoints one caller waited for the WAL and the database
file to be copied and synced (milliseconds, more than a hundred checkpoints' worth of
commits). Here a thread with its own connection runs ``PRAGMA wal_checkpoint(PASSIVE)``
after every :data:`CHECKPOINT_EVERY` committed operations instead: it never waits for a
lock, writers go on meanwhile, and it syncs exactly as the automatic checkpoint does, so
durability does not change. The writer's connection keeps an automatic checkpoint at
:data:`FALLBACK_PAGES`, so the WAL stays bounded if this thread falls behind or fails.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import cast

import structlog
from sqlalchemy import Engine

log = structlog.get_logger("persistence.checkpointer")

#: Committed operations between two background checkpoints (a checkpoint writes ~6 pages).
CHECKPOINT_EVERY = 128
#: The writer connection's own ``wal_autocheckpoint``: only reached if this thread lags.
FALLBACK_PAGES = 10_000


class WalCheckpointer:
    """Runs passive WAL checkpoints on demand in a daemon thread."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._due = threading.Event()
        self._stopping = False
        self._operations = 0
        self._thread: threading.Thread | None = None
        self.checkpoints = 0

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(
            target=self._main, name="session-store-checkpointer", daemon=True
        )
        self._thread.start()

    def committed(self, operations: int) -> None:
        """Count committed operations (under the writer's lock); wake the thread when due."""
        self._operations += operations
        if self._operations >= CHECKPOINT_EVERY:
            self._operations = 0
            self._due.set()

    def close(self) -> None:
        """Stop the thread (a running checkpoint finishes first)."""
        self._stopping = True
        self._due.set()
        if self._thread is not None:
            self._thread.join()

    def _connect(self) -> sqlite3.Connection:
        # The file (and URI flags) the writer engine opens, without its pool or events.
        dialect = self._engine.dialect
        cargs, cparams = dialect.create_connect_args(self._engine.url)
        connection = cast("sqlite3.Connection", dialect.connect(*cargs, **cparams))
        connection.isolation_level = None
        return connection

    def _main(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while True:
                self._due.wait()
                self._due.clear()
                if self._stopping:
                    return
                try:
                    if connection is None:
                        connection = self._connect()
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:
                    # Full disk, read-only file ...: the writer's own fallback checkpoint
                    # bounds the WAL; try again on a fresh connection next time.
                    log.warning("store.wal_checkpoint_failed", error=repr(exc))
                    if connection is not None:
                        connection.close()
                        connection = None
        finally:
            if connection is not None:
                connection.close()
