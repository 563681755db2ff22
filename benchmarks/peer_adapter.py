r"""This project as a peer of ../shared/peer-bench (``--extra-adapters``), measured in one run.

    /tmp/peerbench/venv/bin/python /work/shared/peer-bench/peer_bench.py --quick \
        --extra-adapters benchmarks/peer_adapter.py

(``make peer-bench`` runs that.) The peer-bench venv needs this project's dependencies
(``pip install pykka structlog alembic click``, or ``pip install -e .``); the repository
root is put on ``sys.path`` here so the packages import without installing them.

Each ``checkpoint()`` is the seed's ``save_session_state(sid, full_history, context,
phase, step)`` with the whole history list, as orchestrators call it (the adapter keeps
that list, as the orchestrator would); it returns once the checkpoint is committed.
``load()`` is ``load_session_state(sid)``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from peer_bench import Adapter, Loaded, register  # type: ignore[import-not-found]  # noqa: E402

from actors import create_session_manager  # noqa: E402


@register
class SessionSupervisorAdapter(Adapter):  # type: ignore[misc]
    """session-supervisor: pykka session actors, delta checkpoints, group commit."""

    name = "session-supervisor"
    library = "session-supervisor"
    packages = ("pykka", "sqlalchemy", "structlog")
    description = (
        "session-supervisor: save_session_state(sid, FULL history list, context, phase, step)"
        " handled by the session's pykka actor (in the caller's thread when the actor is"
        " idle); only new messages are inserted as rows + the"
        " state row updated (version/epoch fenced), SQLite WAL synchronous=NORMAL, acked"
        " after commit"
    )

    def __init__(self, db_path: str) -> None:
        super().__init__(db_path)
        self.manager = create_session_manager(f"sqlite:///{db_path}", max_live=100_000)
        self.ids: dict[str, str] = {}
        self.histories: dict[str, list[dict[str, Any]]] = {}
        self.steps: dict[str, int] = {}

    def _session_id(self, sid: str) -> str:
        known = self.ids.get(sid)
        if known is None:  # a fresh adapter on an existing file (the load scenario)
            for row in self.manager.list_sessions(limit=1_000_000):
                if row["name"] == sid:
                    self.ids[sid] = known = row["session_id"]
                    break
        if known is None:
            raise KeyError(sid)
        return known

    def create(self, sid: str) -> None:
        """Create an empty session (untimed)."""
        self.ids[sid] = self.manager.create_session("copilot", {}, name=sid)
        self.histories[sid] = []
        self.steps[sid] = 0

    def checkpoint(
        self, sid: str, step_messages: list[dict[str, Any]], context: dict[str, Any], phase: str
    ) -> None:
        """Append the step's messages to the kept list and save the whole list."""
        history = self.histories[sid]
        history += step_messages
        step = self.steps[sid]
        self.steps[sid] = step + 1
        if not self.manager.save_session_state(self.ids[sid], history, context, phase, step):
            raise RuntimeError(f"save of {sid} was refused")

    def load(self, sid: str) -> dict[str, Any] | None:
        """The seed's load_session_state."""
        return self.manager.load_session_state(self._session_id(sid))

    def summarize(self, obj: dict[str, Any]) -> Any:
        """What the harness checks."""
        messages = obj["conversation_history"]
        return Loaded(
            len(messages),
            messages[-1]["content"] if messages else None,
            obj["context_variables"],
            obj["current_phase"],
        )

    def storage_mode(self) -> str:
        """The journal mode and synchronous level of the store."""
        return "wal/NORMAL"

    def close(self) -> None:
        """Close the manager (stops actors, drains writes)."""
        self.manager.close()
