"""A manager created before ``os.fork()`` refuses to work in the child, clearly and safely."""

from __future__ import annotations

import json
import os
import select
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, text

from actors import CreatedBeforeFork, SessionManager, StoreUnavailable
from persistence import Database
from tests.conftest import ManagerFactory, history

TIMEOUT = 10.0


def _in_child(body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``body`` in a forked child; its JSON result (or the error it raised)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read_end)
            try:
                result = body()
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                result = {"unexpected": repr(exc)}
            os.write(write_end, json.dumps(result).encode())
        except BaseException:  # noqa: BLE001 - nothing else may run in the child
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], 0.1)
            if ready:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        else:
            os.kill(pid, 9)
            pytest.fail("the forked child hung")
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))  # type: ignore[no-any-return]


def _refusal(call: Callable[[], Any]) -> str:
    """The error a call raises in the child, by type name (``none`` if it returned)."""
    try:
        call()
    except CreatedBeforeFork as error:
        return f"CreatedBeforeFork: {error}"
    except Exception as error:  # noqa: BLE001 - the test reports which one
        return f"{type(error).__name__}: {error}"
    return "none"


def _backend_pid(db: Database) -> int:
    def op(connection: Connection) -> int:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())

    pid: int = db.store.write(op)
    return pid


class TestForkedChild:
    """gunicorn --preload made wrong: the child gets a typed error naming the fix."""

    def test_every_call_in_the_child_is_refused_with_the_fix(
        self, any_db_url: str, make_manager: ManagerFactory
    ) -> None:
        """Seed and typed methods, writes and reads: CreatedBeforeFork, at once, no hang."""
        manager = make_manager(database_url=any_db_url)
        session_id = manager.create_session("copilot", {})
        manager.save_session_state(session_id, history(2), {"k": 1}, "planning")

        def child() -> dict[str, Any]:
            started = time.monotonic()
            calls: dict[str, Callable[[], Any]] = {
                "save": lambda: manager.save_session_state(session_id, history(4), {}, "x"),
                "load": lambda: manager.load_session_state(session_id),
                "create": lambda: manager.create_session("copilot", {}),
                "list": manager.list_sessions,
                "store_read": lambda: manager.database.store.load(session_id),
                "store_write": lambda: manager.database.store.release_all("x"),
            }
            refused = {name: _refusal(call) for name, call in calls.items()}
            manager.close()  # returns at once: the actors and the writer are the parent's
            return {"refused": refused, "seconds": time.monotonic() - started}

        result = _in_child(child)
        assert "unexpected" not in result, result
        for name, refusal in result["refused"].items():
            assert refusal.startswith("CreatedBeforeFork: "), (name, refusal)
            assert "create it after the fork" in refusal.lower(), refusal
            assert "startup hook" in refusal
        assert result["seconds"] < 2.0
        # The parent goes on untouched.
        assert manager.save_session_state(session_id, history(6), {"k": 2}, "execution")
        state = manager.load_session_state(session_id)
        assert state is not None
        assert state["context_variables"] == {"k": 2}

    def test_the_error_is_a_store_unavailable(self) -> None:
        """Callers that catch StoreUnavailable around the store catch it too."""
        assert issubclass(CreatedBeforeFork, StoreUnavailable)

    def test_postgresql_the_child_closing_its_copies_leaves_the_parents_connections(
        self, pg_url: str, make_manager: ManagerFactory
    ) -> None:
        """A child closing what it inherited (as its exit would) sends nothing to the server.

        The parent's writer keeps the very same server backend afterwards.
        """
        manager: SessionManager = make_manager(database_url=pg_url)
        session_id = manager.create_session("copilot", {})
        manager.load(session_id)  # a pooled reader exists too
        db = manager.database
        before = _backend_pid(db)
        writer_driver = db.store.writer._driver
        assert writer_driver is not None

        def child() -> dict[str, Any]:
            writer_driver.close()  # what the child's exit would do to it
            for reader in list(db.store.reads._idle):
                reader.close()
            return {"closed": True}

        assert _in_child(child) == {"closed": True}
        assert _backend_pid(db) == before
        assert manager.save_session_state(session_id, history(2), {}, "after-fork")
