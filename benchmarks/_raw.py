"""The floor: append-only rows on bare ``sqlite3``, no actor, no validation, no fencing.

Not a contender: it shows what SQLite itself costs per checkpoint on this machine (one
``BEGIN IMMEDIATE``, the state row updated, the new messages inserted, ``COMMIT``; WAL,
``synchronous=NORMAL`` as ours), so a ratio against the naive way can be read against the
ratio no Python session layer on this machine can beat. It trusts its caller completely:
the history only ever grows, values are JSON, one thread, one process.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import uuid
from typing import Any


class RawAppendStore:
    """The seed's create and save, as bare append-only SQL on one file."""

    def __init__(self, path: str, synchronous: str = "NORMAL") -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute(
            "CREATE TABLE states (id TEXT PRIMARY KEY, context TEXT, phase TEXT, step INTEGER,"
            " version INTEGER, messages INTEGER)"
        )
        self._db.execute(
            "CREATE TABLE messages (session_id TEXT, seq INTEGER, body TEXT,"
            " PRIMARY KEY (session_id, seq))"
        )
        self._stored: dict[str, int] = {}

    def create_session(self) -> str:
        """Insert an empty session; return its id."""
        session_id = str(uuid.uuid4())
        self._db.execute("INSERT INTO states VALUES (?, '{}', 'init', NULL, 1, 0)", (session_id,))
        self._stored[session_id] = 0
        return session_id

    def save_session_state(  # noqa: PLR0917 - the seed's signature
        self,
        session_id: str,
        conversation_history: list[dict[str, Any]],
        context_variables: dict[str, Any],
        current_phase: str,
        current_step: int | None = None,
        plan_data: dict[str, Any] | None = None,  # the workload has none
    ) -> bool:
        """Append the messages not stored yet and overwrite the state row, in one commit."""
        stored = self._stored[session_id]
        new = conversation_history[stored:]
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "UPDATE states SET context = ?, phase = ?, step = ?, version = version + 1,"
            " messages = ? WHERE id = ?",
            (json.dumps(context_variables), current_phase, current_step,
             len(conversation_history), session_id),
        )  # fmt: skip
        db.executemany(
            "INSERT INTO messages VALUES (?, ?, ?)",
            [(session_id, stored + i, json.dumps(m)) for i, m in enumerate(new)],
        )
        db.execute("COMMIT")
        self._stored[session_id] = len(conversation_history)
        return True

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


#: What a caller queues: the state row's parameters, the message rows, the lock to release.
_Pending = tuple[tuple[str, str, int | None, int, str], list[tuple[str, int, str]], threading.Lock]


class RawGroupCommitStore(RawAppendStore):
    """The floor for many threads: :class:`RawAppendStore` behind one group-commit thread.

    Callers encode their rows in their own thread, queue them and wait on a lock until the
    transaction holding them committed, as ours does; the writer takes everything queued,
    runs it in one transaction and releases its callers. No actor, no validation, no
    fencing, no error handling: what group commit alone reaches from Python threads here.
    """

    def __init__(self, path: str, synchronous: str = "NORMAL") -> None:
        super().__init__(path, synchronous)
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _stored between caller threads
        self.commits = 0
        self._writer = threading.Thread(target=self._write_loop, name="raw-group-writer")
        self._writer.start()

    def save_session_state(  # noqa: PLR0917 - the seed's signature
        self,
        session_id: str,
        conversation_history: list[dict[str, Any]],
        context_variables: dict[str, Any],
        current_phase: str,
        current_step: int | None = None,
        plan_data: dict[str, Any] | None = None,  # the workload has none
    ) -> bool:
        """Queue the new rows for the next commit; return once it committed."""
        with self._lock:
            stored = self._stored[session_id]
            self._stored[session_id] = len(conversation_history)
        rows = [
            (session_id, stored + i, json.dumps(m))
            for i, m in enumerate(conversation_history[stored:])
        ]
        state = (json.dumps(context_variables), current_phase, current_step,
                 len(conversation_history), session_id)  # fmt: skip
        done = threading.Lock()
        done.acquire()
        self._queue.put((state, rows, done))
        done.acquire()
        return True

    def _write_loop(self) -> None:
        db, take = self._db, self._queue.get
        while True:
            batch = [take()]
            while not self._queue.empty():
                batch.append(take())
            pending = [item for item in batch if item is not None]
            if pending:
                db.execute("BEGIN IMMEDIATE")
                for state, rows, _ in pending:
                    db.execute(
                        "UPDATE states SET context = ?, phase = ?, step = ?,"
                        " version = version + 1, messages = ? WHERE id = ?",
                        state,
                    )
                    db.executemany("INSERT INTO messages VALUES (?, ?, ?)", rows)
                db.execute("COMMIT")
                self.commits += 1
                for _, _, done in pending:
                    done.release()
            if len(pending) < len(batch):
                return

    def close(self) -> None:
        """Stop the writer (after what is queued), then close the connection."""
        self._queue.put(None)
        self._writer.join()
        super().close()
