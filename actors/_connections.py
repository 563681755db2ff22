"""Live connections of tasks (websockets, heartbeats): plain functions of the manager's core."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from actors._core import Core
from actors._validate import require_optional_str, require_str


def register(core: Core, task_id: str, session_id: str | None) -> None:
    """Record (or refresh) a task's live connection."""
    core.check_open()
    task_id = require_str("task_id", task_id)
    session_id = require_optional_str("session_id", session_id)
    core.store().register_connection(task_id, session_id, core.instance_id, core.now())


def heartbeat(core: Core, task_id: str) -> bool:
    """Refresh a connection; ``False`` if it is unknown."""
    core.check_open()
    task_id = require_str("task_id", task_id)
    alive: bool = core.store().heartbeat(task_id, core.now())
    return alive


def unregister(core: Core, task_id: str) -> bool:
    """Forget a connection; ``False`` if it was unknown."""
    core.check_open()
    task_id = require_str("task_id", task_id)
    removed: bool = core.store().unregister_connection(task_id)
    return removed


def listed(core: Core, session_id: str | None) -> list[dict[str, Any]]:
    """Live connections (of one session, or all), times as ISO-8601 strings."""
    core.check_open()
    session_id = require_optional_str("session_id", session_id)
    rows: list[dict[str, Any]] = core.store().connections_of(
        None if session_id is None else [session_id]
    )
    return [
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
        for row in rows
    ]
