"""The typed API's dicts go straight into ``json.dumps``; the seed's keep its datetimes."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from actors import ManualClock
from tests.conftest import ManagerFactory, history


def _dumped(value: Any) -> Any:
    """``json.dumps`` with no ``default=``: it raises on a datetime."""
    return json.loads(json.dumps(value))


class TestTypedReads:
    """Every typed read, on both backends."""

    def test_every_typed_read_dumps_as_json(
        self, any_db_url: str, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """The typed reads: load (aload, a view's), info, sessions, approvals, connections."""
        manager = make_manager(database_url=any_db_url)
        alice = manager.for_user("alice")
        sid = alice.create_session("copilot", {"model": "m"})
        assert manager.save_session_state(sid, history(3), {"k": [1, 2]}, "plan", 1, {"p": 1})
        approval_id = manager.request_approval(sid, "plan", {"plan": "x"}, timeout=60)
        manager.register_connection("task-1", sid)
        reads: dict[str, Any] = {
            "load": manager.load(sid),
            "aload": asyncio.run(manager.aload(sid)),
            "scoped load": alice.load(sid),
            "info": manager.info(sid),
            "sessions": manager.sessions(),
            "get_approval": manager.get_approval(approval_id),
            "list_pending_approvals": manager.list_pending_approvals(sid),
            "list_connections": manager.list_connections(sid),
            "stats": manager.stats(),
            "sweep": manager.sweep(),
        }
        assert manager.resolve_approval(approval_id, "approved", {"ok": True})
        reads["wait_for_approval"] = manager.wait_for_approval(approval_id, 5)
        for name, value in reads.items():
            assert _dumped(value) == value, name
        loaded = reads["load"]
        assert loaded["created_at"] == manager.info(sid)["created_at"]
        assert datetime.fromisoformat(loaded["updated_at"]) == clock()
        assert loaded["conversation_history"] == history(3)

    def test_the_seed_method_keeps_datetimes(self, make_manager: ManagerFactory) -> None:
        """load_session_state's created_at / updated_at stay datetimes, as its callers expect."""
        manager = make_manager()
        sid = manager.create_session("copilot", {})
        state = manager.load_session_state(sid)
        assert state is not None
        assert isinstance(state["created_at"], datetime)
        assert isinstance(state["updated_at"], datetime)
        assert state["created_at"].isoformat() == manager.load(sid)["created_at"]

    def test_a_runtime_factory_gets_the_json_ready_dict(self, make_manager: ManagerFactory) -> None:
        """What manager.load(sid) returns is what the factory receives (so it can store it)."""
        received: list[dict[str, Any]] = []

        def factory(state: dict[str, Any]) -> object:
            received.append(state)
            return object()

        manager = make_manager(runtime_factory=factory)
        sid = manager.create_session("copilot", {})
        assert manager.save_session_state(sid, history(2), {"a": 1}, "p", 2)
        manager.runtime(sid)
        assert received == [manager.load(sid)]
        assert _dumped(received[0]) == received[0]
