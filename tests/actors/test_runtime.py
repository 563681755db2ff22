"""Live runtimes: built by the session's actor from its last checkpoint, handed out, closed."""

from __future__ import annotations

import ast
import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from actors import (
    InvalidArgument,
    InvalidTransition,
    ManualClock,
    RuntimeUnavailable,
    SessionBusy,
    SessionManager,
)
from tests.conftest import ManagerFactory, history

ROOT = Path(__file__).parents[2]


class Runtime:
    """A stand-in for a live orchestrator: built from a state, remembers its closing."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.history: list[dict[str, Any]] = list(state["conversation_history"])
        self.context: dict[str, Any] = dict(state["context_variables"])
        self.phase: str = state["current_phase"]
        self.thread = threading.current_thread().name
        self.closed = 0
        self.close_thread: str | None = None

    def close(self) -> None:
        """Count the closing and note the thread."""
        self.closed += 1
        self.close_thread = threading.current_thread().name

    def turn(self, text: str) -> None:
        """One simulated exchange."""
        self.history.append({"role": "user", "content": text})
        self.history.append({"role": "assistant", "content": f"re: {text}"})
        self.phase = f"turn-{len(self.history) // 2}"

    def snapshot(self) -> dict[str, Any]:
        """What a unit of work checkpoints."""
        return {
            "conversation_history": self.history,
            "context_variables": self.context,
            "current_phase": self.phase,
        }


class Built(list[Runtime]):
    """Every runtime a factory built, in order."""

    def factory(self, state: dict[str, Any]) -> Runtime:
        """The runtime_factory."""
        runtime = Runtime(state)
        self.append(runtime)
        return runtime


@pytest.fixture
def built() -> Built:
    """The runtimes built during the test."""
    return Built()


@pytest.fixture
def rt_manager(make_manager: ManagerFactory, built: Built) -> SessionManager:
    """A manager whose runtime factory records what it builds."""
    return make_manager(runtime_factory=built.factory)


class TestFactoryArgument:
    """``runtime_factory`` / ``runtime_closer`` are checked when the manager is made."""

    @pytest.mark.parametrize(
        "factory",
        [42, "copilot", {"copilot": 3}, {"": Runtime}, {1: Runtime}],
        ids=["int", "str", "mapping-to-int", "empty-mode", "int-mode"],
    )
    def test_bad_factory_is_refused(self, make_manager: ManagerFactory, factory: Any) -> None:
        """A clear InvalidArgument before anything runs."""
        with pytest.raises(InvalidArgument, match="runtime_factory"):
            make_manager(runtime_factory=factory)

    def test_bad_closer_is_refused(self, make_manager: ManagerFactory) -> None:
        """A closer must be callable, and needs a factory."""
        with pytest.raises(InvalidArgument, match="runtime_closer must be callable"):
            make_manager(runtime_factory=Runtime, runtime_closer="close")
        with pytest.raises(InvalidArgument, match="without a runtime_factory"):
            make_manager(runtime_closer=print)

    def test_without_factory_there_is_no_runtime(self, manager: SessionManager) -> None:
        """RuntimeUnavailable says why; the session is untouched and still usable."""
        session_id = manager.create_session("copilot", {})
        with pytest.raises(RuntimeUnavailable, match="without a runtime_factory"):
            manager.runtime(session_id)
        assert manager.save_session_state(session_id, history(2), {}, "p")

    def test_mapping_builds_by_mode(self, make_manager: ManagerFactory) -> None:
        """Each mode gets its own builder; a mode without one has no runtime."""
        manager = make_manager(
            runtime_factory={"copilot": lambda s: ("copilot", s["mode"]), "swarm": lambda s: 2}
        )
        copilot = manager.create_session("copilot", {})
        swarm = manager.create_session("swarm", {})
        # A session of a mode without a builder, made by a manager without the mapping.
        with make_manager() as plain:
            other = plain.create_session("planning", {})
        assert manager.runtime(copilot) == ("copilot", "copilot")
        assert manager.runtime(swarm) == 2
        with pytest.raises(RuntimeUnavailable, match="no entry for mode 'planning'"):
            manager.runtime(other)


class TestOwnership:
    """The actor builds the runtime lazily, once, and is the only one holding it."""

    def test_built_lazily_once_in_the_actor_from_the_last_checkpoint(
        self, rt_manager: SessionManager, built: Built
    ) -> None:
        """Nothing is built before first use; then the same object, made in the actor."""
        session_id = rt_manager.create_session("copilot", {"model": "m"}, user_id="u")
        rt_manager.save_session_state(session_id, history(4), {"k": 1}, "execution", 2)
        assert built == []
        runtime = rt_manager.runtime(session_id)
        assert rt_manager.runtime(session_id) is runtime
        assert built == [runtime]
        assert runtime.thread.startswith("SessionActor")
        assert runtime.history == history(4)
        assert runtime.context == {"k": 1}
        state = runtime.state
        assert (state["current_phase"], state["current_step"]) == ("execution", 2)
        assert (state["config"], state["user_id"], state["version"]) == ({"model": "m"}, "u", 2)

    def test_factory_error_is_runtime_unavailable_and_retried(
        self, make_manager: ManagerFactory
    ) -> None:
        """The cause is kept, the actor does not crash, and the next call tries again."""
        attempts: list[int] = []

        def flaky(state: dict[str, Any]) -> str:
            attempts.append(1)
            if len(attempts) == 1:
                raise ConnectionError("sandbox not ready")
            return "ready"

        manager = make_manager(runtime_factory=flaky)
        session_id = manager.create_session("copilot", {})
        with pytest.raises(RuntimeUnavailable, match="sandbox not ready") as caught:
            manager.runtime(session_id)
        assert isinstance(caught.value.__cause__, ConnectionError)
        assert manager.runtime(session_id) == "ready"
        assert manager.stats()["crashes"] == 0

    def test_no_runtime_for_a_finished_session(self, rt_manager: SessionManager) -> None:
        """A completed session has no runtime (and gets no new one)."""
        session_id = rt_manager.create_session("copilot", {})
        rt_manager.complete(session_id)
        with pytest.raises(InvalidTransition):
            rt_manager.runtime(session_id)


class TestRebuild:
    """After the actor stops, the next use rebuilds the runtime from the last checkpoint."""

    def test_after_passivation(
        self, rt_manager: SessionManager, built: Built, clock: ManualClock
    ) -> None:
        """The idle actor's runtime is closed; the next one starts from the checkpoint."""
        session_id = rt_manager.create_session("copilot", {})
        first = rt_manager.runtime(session_id)
        rt_manager.save_session_state(session_id, history(2), {"n": 1}, "p1")
        clock.advance(minutes=11)
        assert rt_manager.sweep()["passivated"] == 1
        assert first.closed == 1
        second = rt_manager.runtime(session_id)
        assert second is not first
        assert (second.history, second.context, second.phase) == (history(2), {"n": 1}, "p1")

    def test_after_a_crash_in_run_in_actor(self, rt_manager: SessionManager, built: Built) -> None:
        """The error reaches the caller; uncheckpointed changes are gone; it carries on."""
        session_id = rt_manager.create_session("copilot", {})
        rt_manager.save_session_state(session_id, history(2), {}, "p1")
        first = rt_manager.runtime(session_id)
        first.turn("not checkpointed")

        def explode(runtime: Runtime) -> None:
            raise RuntimeError("tool blew up")

        with capture_logs() as logs, pytest.raises(RuntimeError, match="tool blew up"):
            rt_manager.run_in_actor(session_id, explode)
        assert first.closed == 1
        second = rt_manager.runtime(session_id)
        assert second is not first
        assert second.history == history(2)
        events = [entry["event"] for entry in logs]
        assert "session.crashed" in events
        assert "runtime.closed" in events
        assert rt_manager.stats()["restarts"] == 1

    def test_by_a_new_manager(
        self, make_manager: ManagerFactory, built: Built, clock: ManualClock
    ) -> None:
        """A restarted process builds its runtime from what the old one checkpointed."""
        old = make_manager(runtime_factory=built.factory)
        session_id = old.create_session("copilot", {})
        with old.unit_of_work(session_id) as work:
            work.runtime.turn("hello")
        old.close()
        assert built[0].closed == 1
        new = make_manager(runtime_factory=built.factory)
        assert new.runtime(session_id).history == built[0].history

    def test_discard_runtime(self, rt_manager: SessionManager, built: Built) -> None:
        """discard_runtime closes it now; the next use rebuilds; nothing to discard is False."""
        session_id = rt_manager.create_session("copilot", {})
        assert rt_manager.discard_runtime(session_id) is False
        first = rt_manager.runtime(session_id)
        assert rt_manager.discard_runtime(session_id) is True
        assert first.closed == 1
        assert rt_manager.runtime(session_id) is not first


def _passivate(manager: SessionManager, session_id: str, clock: ManualClock) -> None:
    clock.advance(minutes=11)
    manager.sweep()


def _sweep_expire(manager: SessionManager, session_id: str, clock: ManualClock) -> None:
    clock.advance(hours=25)
    manager.sweep()


class TestClosing:
    """The runtime is closed exactly once whenever its actor stops."""

    @pytest.mark.parametrize(
        "stop",
        [
            _passivate,
            _sweep_expire,
            lambda manager, sid, clock: manager.expire(sid),
            lambda manager, sid, clock: manager.complete(sid),
            lambda manager, sid, clock: manager.complete_session(sid),
            lambda manager, sid, clock: manager.delete(sid),
            lambda manager, sid, clock: manager.close(),
        ],
        ids=["passivated", "expired-by-sweep", "expire", "complete", "complete_session",
             "delete", "manager-close"],
    )  # fmt: skip
    def test_closed_when_the_actor_stops(
        self,
        rt_manager: SessionManager,
        clock: ManualClock,
        stop: Callable[[SessionManager, str, ManualClock], object],
    ) -> None:
        """Closed once, in the actor's thread, by the time the call returns."""
        session_id = rt_manager.create_session("copilot", {})
        runtime = rt_manager.runtime(session_id)
        stop(rt_manager, session_id, clock)
        assert runtime.closed == 1
        assert runtime.close_thread is not None
        assert runtime.close_thread.startswith("SessionActor")

    def test_suspend_keeps_the_runtime(self, rt_manager: SessionManager) -> None:
        """Suspending is not stopping: the same runtime is there after resume."""
        session_id = rt_manager.create_session("copilot", {})
        runtime = rt_manager.runtime(session_id)
        rt_manager.suspend(session_id)
        rt_manager.resume(session_id)
        assert rt_manager.runtime(session_id) is runtime
        assert runtime.closed == 0

    def test_custom_closer_and_aclose(self, make_manager: ManagerFactory) -> None:
        """A configured closer replaces close(); the default awaits an aclose() coroutine."""
        closed: list[str] = []

        class AsyncRuntime:
            async def aclose(self) -> None:
                await asyncio.sleep(0)
                closed.append("aclose")

        manager = make_manager(runtime_factory=lambda state: AsyncRuntime())
        session_id = manager.create_session("copilot", {})
        manager.runtime(session_id)
        manager.complete(session_id)
        custom = make_manager(
            runtime_factory=Runtime, runtime_closer=lambda rt: closed.append("custom")
        )
        other = custom.create_session("copilot", {})
        runtime = custom.runtime(other)
        custom.delete(other)
        assert closed == ["aclose", "custom"]
        assert runtime.closed == 0

    def test_a_failing_closer_is_logged_not_raised(self, make_manager: ManagerFactory) -> None:
        """The session's own lifecycle goes on; the failure is a warning event."""

        def bad_closer(runtime: object) -> None:
            raise OSError("socket already gone")

        manager = make_manager(runtime_factory=Runtime, runtime_closer=bad_closer)
        session_id = manager.create_session("copilot", {})
        manager.runtime(session_id)
        with capture_logs() as logs:
            manager.complete(session_id)
        assert manager.info(session_id)["status"] == "completed"
        failed = [entry for entry in logs if entry["event"] == "runtime.close_failed"]
        assert len(failed) == 1
        assert "socket already gone" in failed[0]["error"]


class TestUnitOfWork:
    """unit_of_work: exclusive use, checkpoint on success, rebuild on failure."""

    def test_checkpoints_the_snapshot_on_exit(self, rt_manager: SessionManager) -> None:
        """The runtime's snapshot() is committed when the block ends normally."""
        session_id = rt_manager.create_session("copilot", {})
        with rt_manager.unit_of_work(session_id) as work:
            work.runtime.turn("hello")
            assert rt_manager.load(session_id)["version"] == 1
        assert work.version == 2
        state = rt_manager.load(session_id)
        assert state["conversation_history"] == work.runtime.history
        assert state["current_phase"] == "turn-1"

    def test_error_rolls_back_to_the_last_checkpoint(
        self, rt_manager: SessionManager, built: Built
    ) -> None:
        """Nothing is saved, the runtime is discarded, and the error propagates."""
        session_id = rt_manager.create_session("copilot", {})
        with rt_manager.unit_of_work(session_id) as work:
            work.runtime.turn("kept")

        def half_done(work: Any) -> None:
            work.runtime.turn("lost")
            raise KeyError("half done")

        with pytest.raises(KeyError), rt_manager.unit_of_work(session_id) as work:
            half_done(work)
        assert built[0].closed == 1
        assert rt_manager.load(session_id)["version"] == 2
        assert rt_manager.runtime(session_id).history == [
            {"role": "user", "content": "kept"},
            {"role": "assistant", "content": "re: kept"},
        ]

    def test_units_of_work_on_one_session_are_exclusive(self, rt_manager: SessionManager) -> None:
        """A second unit waits for the first; past ``wait`` it gets SessionBusy."""
        session_id = rt_manager.create_session("copilot", {})
        entered = threading.Event()
        release = threading.Event()

        def hold() -> None:
            with rt_manager.unit_of_work(session_id) as work:
                entered.set()
                release.wait(10)
                work.runtime.turn("first")

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert entered.wait(10)
            with pytest.raises(SessionBusy), rt_manager.unit_of_work(session_id, wait=0.05):
                pytest.fail("entered a busy session")  # pragma: no cover
            release.set()
            with rt_manager.unit_of_work(session_id, wait=10) as work:
                assert work.runtime.history[-1]["content"] == "re: first"
                work.runtime.turn("second")
        finally:
            release.set()
            holder.join(10)
        assert rt_manager.load(session_id)["message_count"] == 4

    def test_a_unit_of_work_is_not_passivated_when_idle(
        self, rt_manager: SessionManager, built: Built, clock: ManualClock
    ) -> None:
        """A unit of work outlasting ``idle_timeout`` (a slow human) keeps its runtime open.

        The sweep skips the busy actor; once the unit ends, the next idle sweep passivates it.
        """
        session_id = rt_manager.create_session("copilot", {})
        with rt_manager.unit_of_work(session_id) as work:
            clock.advance(minutes=11)
            assert rt_manager.sweep()["passivated"] == 0
            assert work.runtime.closed == 0
            work.runtime.turn("after a long wait")
        assert built == [work.runtime]
        assert rt_manager.load(session_id)["message_count"] == 2
        clock.advance(minutes=11)
        assert rt_manager.sweep()["passivated"] == 1
        assert work.runtime.closed == 1

    def test_a_unit_of_work_is_not_evicted_over_max_live(
        self, make_manager: ManagerFactory, built: Built
    ) -> None:
        """Over ``max_live`` the least recently used idle actors go, never one in use."""
        manager = make_manager(runtime_factory=built.factory, max_live=2)
        busy = manager.create_session("copilot", {})
        with manager.unit_of_work(busy) as work:
            others = [manager.create_session("copilot", {}) for _ in range(3)]
            assert work.runtime.closed == 0
            assert busy in manager.live_sessions()
            work.runtime.turn("still here")
        assert len(manager.live_sessions()) <= 3
        assert manager.load(busy)["message_count"] == 2
        assert all(manager.load(other)["status"] == "active" for other in others)

    def test_explicit_checkpoint_and_bad_snapshots(self, make_manager: ManagerFactory) -> None:
        """work.checkpoint(...) saves now; a runtime without snapshot() saves nothing itself."""
        manager = make_manager(runtime_factory=lambda state: object())
        session_id = manager.create_session("copilot", {})
        with manager.unit_of_work(session_id, checkpoint=False) as work:
            assert (
                work.checkpoint(
                    conversation_history=history(2), context_variables={}, current_phase="a"
                )
                == 2
            )
        assert manager.load(session_id)["version"] == 2
        with (
            pytest.raises(InvalidArgument, match="snapshot"),
            manager.unit_of_work(session_id, checkpoint=False) as work,
        ):
            work.checkpoint()
        with (
            pytest.raises(InvalidArgument, match="unknown"),
            manager.unit_of_work(session_id, checkpoint=False) as work,
        ):
            work.checkpoint(conversation_history=[], context_variables={}, current_phase="b",
                            phase="typo")  # fmt: skip
        assert manager.load(session_id)["version"] == 2

    def test_bad_wait_is_refused(self, rt_manager: SessionManager) -> None:
        """A ``wait`` must be a number of seconds >= 0."""
        session_id = rt_manager.create_session("copilot", {})
        with (
            pytest.raises(InvalidArgument, match="wait"),
            rt_manager.unit_of_work(session_id, wait=-1),
        ):
            pytest.fail("entered")  # pragma: no cover


class TestRunInActor:
    """run_in_actor: a function of the runtime, in the actor's thread."""

    def test_runs_in_the_actor_between_its_messages(self, rt_manager: SessionManager) -> None:
        """The result comes back; the function saw the runtime in the actor's thread."""
        session_id = rt_manager.create_session("copilot", {})

        def where(runtime: Runtime, suffix: str, *, upper: bool) -> str:
            name = threading.current_thread().name + suffix
            return name.upper() if upper else name

        assert rt_manager.run_in_actor(session_id, where, "!", upper=True).startswith(
            "SESSIONACTOR"
        )
        with pytest.raises(InvalidArgument, match="callable"):
            rt_manager.run_in_actor(session_id, "not a function")  # type: ignore[arg-type]


class TestAsyncTwins:
    """aruntime, aunit_of_work, arun_in_actor, adiscard_runtime."""

    def test_async_twins(self, make_manager: ManagerFactory, built: Built) -> None:
        """The same behaviour, awaited; an async snapshot() is awaited too."""

        class AsyncSnapshot(Runtime):
            async def snapshot(self) -> dict[str, Any]:  # type: ignore[override]
                await asyncio.sleep(0)
                return super().snapshot()

        manager = make_manager(runtime_factory=AsyncSnapshot)

        async def use() -> tuple[Any, ...]:
            session_id = await manager.acreate_session("copilot", {})
            runtime = await manager.aruntime(session_id)
            async with manager.aunit_of_work(session_id) as work:
                work.runtime.turn("hi")
            length = await manager.arun_in_actor(session_id, lambda rt: len(rt.history))
            discarded = await manager.adiscard_runtime(session_id)
            with pytest.raises(ValueError, match="boom"):
                async with manager.aunit_of_work(session_id) as work:
                    raise ValueError("boom")
            return session_id, runtime, work, length, discarded

        session_id, runtime, work, length, discarded = asyncio.run(use())
        assert work.runtime is not runtime
        assert (length, discarded, runtime.closed, work.runtime.closed) == (2, True, 1, 1)
        assert manager.load(session_id)["message_count"] == 2


_MAPPING_CALLS = {"dict", "defaultdict", "OrderedDict", "WeakValueDictionary", "WeakKeyDictionary"}


def _module_level_mappings(tree: ast.Module) -> list[tuple[str, int]]:
    """Names bound to a mutable mapping at module level or in a module-level class body."""
    found: list[tuple[str, int]] = []
    bodies: list[list[ast.stmt]] = [tree.body]
    bodies += [node.body for node in tree.body if isinstance(node, ast.ClassDef)]
    for body in bodies:
        for node in body:
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            else:
                continue
            is_mapping = isinstance(value, ast.Dict | ast.DictComp) or (
                isinstance(value, ast.Call)
                and getattr(value.func, "id", getattr(value.func, "attr", None)) in _MAPPING_CALLS
            )
            if is_mapping:
                found += [(ast.unparse(t), node.lineno) for t in targets]
    return found


def _is_registry(name: str) -> bool:
    """Anything but an UPPER_CASE constant (or a dunder like ``__table_args__``) is suspect."""
    bare = name.rsplit(".", 1)[-1]
    if bare.startswith("__") and bare.endswith("__"):
        return False
    return not bare.isupper() or "SESSION" in bare or "ACTIVE" in bare


class TestNoModuleLevelRegistries:
    """The seed's Task 3: no module-level dict of sessions anywhere in the project."""

    def test_no_module_level_dict_of_sessions(self) -> None:
        """Module- and class-level mappings are UPPER_CASE constants, none about sessions."""
        offenders: list[str] = []
        files = [p for d in ("actors", "persistence", "examples", "benchmarks")
                 for p in (ROOT / d).rglob("*.py")]  # fmt: skip
        assert len(files) > 20
        for path in files:
            for name, line in _module_level_mappings(ast.parse(path.read_text("utf-8"))):
                if _is_registry(name):
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: {name}")
        assert offenders == []

    def test_the_scan_finds_a_registry(self) -> None:
        """The scan itself catches the seed's pattern (so the test above can fail)."""
        source = (
            "_active_sessions: Dict[str, object] = {}\n"
            "class Holder:\n    live = dict()\n"
            "TRANSITIONS = {'a': 1}\n"
        )
        names = [name for name, _ in _module_level_mappings(ast.parse(source))]
        assert names == ["_active_sessions", "TRANSITIONS", "live"]
        assert [name for name in names if _is_registry(name)] == ["_active_sessions", "live"]
