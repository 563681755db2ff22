"""The ``a``-prefixed async twins: one per sync method, same typed signature, off the loop."""

from __future__ import annotations

import asyncio
import inspect
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from mypy import api as mypy_api

from actors import SessionManager, UserScope, _twins
from tests.conftest import ManagerFactory, history

#: Public sync methods that need no twin: they neither wait on an actor nor on the store.
_NO_TWIN = {
    "close",  # aclose
    "for_user",  # builds a view
    "phase_hook",  # returns a callback
    "unit_of_work",  # aunit_of_work, an async context manager
    "aunit_of_work",
    "aclose",
}


def _needs_twin(cls: type) -> set[str]:
    """Public sync methods of ``cls`` (twins and properties aside) that need a twin."""
    names = {name for name in dir(cls) if not name.startswith("_")} - _NO_TWIN
    return {
        name
        for name in names
        if callable(getattr(cls, name))
        and not inspect.iscoroutinefunction(getattr(cls, name))
        and not (name.startswith("a") and name[1:] in names)
    }


class TestEveryMethodHasATwin:
    """Each public sync method that waits on an actor or the store has an awaitable twin."""

    @pytest.mark.parametrize("cls", [SessionManager, UserScope])
    def test_twin_exists(self, cls: type) -> None:
        """``a<name>`` exists for every such method (``live`` too: ``alive``)."""
        needed = _needs_twin(cls)
        assert {"checkpoint", "suspend", "info"} <= needed
        assert {name for name in needed if not callable(getattr(cls, f"a{name}", None))} == set()


class TestTwinsRunOffTheLoop:
    """A twin returns what its sync method returns, computed on another thread."""

    def test_twin_result_equals_sync_result(self, make_manager: ManagerFactory) -> None:
        """``await acheckpoint`` stores like ``checkpoint``; ``ainfo`` reads like ``info``."""
        manager = make_manager(runtime_factory=lambda state: object())
        ran_on: list[str] = []

        async def scenario() -> tuple[str, int, int, dict[str, object]]:
            sid = await manager.acreate("copilot", {"k": 1}, user_id="u")
            version = await manager.acheckpoint(sid, history(3), {"x": 1}, "plan")
            await manager.asuspend(sid)
            resumed = await manager.aresume(sid)
            await manager.arun_in_actor(sid, lambda _: ran_on.append("actor"))
            return sid, version, resumed, await manager.ainfo(sid)

        sid, version, resumed, info = asyncio.run(scenario())
        assert (version, resumed) == (2, 4)
        assert info == manager.info(sid)
        assert info["message_count"] == 3
        assert ran_on == ["actor"]

    def test_scope_twin_checks_the_owner(self, manager: SessionManager) -> None:
        """A view's twin refuses another user's session as its sync method does."""
        sid = manager.create("copilot", {}, user_id="alice")

        async def as_bob() -> None:
            await manager.for_user("bob").ainfo(sid)

        with pytest.raises(Exception, match="does not belong") as raised:
            asyncio.run(as_bob())
        assert type(raised.value).__name__ == "AccessDenied"


class TestTwinsAreTyped:
    """mypy --strict rejects a wrong argument to a twin as it does to its sync method."""

    def test_bad_calls_are_type_errors(self, tmp_path: Path) -> None:
        """Wrong type, unknown keyword, missing argument: each is an error, on both classes."""
        snippet = tmp_path / "bad_calls.py"
        snippet.write_text(
            textwrap.dedent(
                """
                from actors import SessionManager

                async def use(m: SessionManager) -> None:
                    await m.acreate_session(123, config="oops", bogus=True)
                    await m.acheckpoint("sid")
                    await m.for_user("u").asuspend(42)
                    ok: str = await m.acreate_session("copilot", {})
                    n: int = await m.asuspend(ok)
                    await m.for_user("u").asave_session_state(ok, [], current_step=1)
                """
            )
        )
        root = Path(__file__).resolve().parents[2]
        out, _, status = mypy_api.run(
            ["--strict", "--no-incremental", "--config-file", str(root / "pyproject.toml"),
             str(snippet)]
        )  # fmt: skip
        errors = [line for line in out.splitlines() if ": error:" in line]
        lines = sorted({int(line.split(":")[1]) for line in errors})
        assert status == 1, out
        assert lines == [5, 6, 7], out  # the three bad calls, and no good one
        assert 'Unexpected keyword argument "bogus"' in out
        assert 'incompatible type "int"; expected "str"' in out
        assert "Too few arguments" in out


class TestPoolStartsOffTheLoop:
    """``async with manager`` and ``await manager.start()`` start the twins' threads off the loop.

    Started by the first twin call instead, the 32 threads start on the loop's own thread
    and stall it for milliseconds (``examples/async_service.py`` measured 10-12 ms).
    """

    @pytest.mark.parametrize("entry", ["async_with", "start"])
    def test_threads_start_in_another_thread(
        self, manager: SessionManager, monkeypatch: pytest.MonkeyPatch, entry: str
    ) -> None:
        """The pool's threads are started before the first call, not by the loop's thread."""
        started_by: list[str] = []
        original = _twins._start_workers

        def recording(pool: Any) -> None:
            started_by.append(threading.current_thread().name)
            original(pool)

        monkeypatch.setattr(_twins, "_start_workers", recording)

        async def enter() -> str:
            if entry == "start":
                await manager.start()
            else:
                await manager.__aenter__()
            assert started_by, "the pool was not started on entry"
            await manager.ainfo(manager.create("copilot", {}))
            return threading.current_thread().name

        loop_thread = asyncio.run(enter())
        assert len(started_by) == 1
        assert started_by[0] != loop_thread
