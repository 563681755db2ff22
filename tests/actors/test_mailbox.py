"""QuickActor and ReplyFuture: the cheaper ask keeps pykka's ThreadingFuture contract."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from typing import Any

import pykka
import pytest
from pykka._envelope import Envelope

from actors import _mailbox
from actors._future import ReplyFuture
from actors._mailbox import QuickActor, ask_inline

WAIT = 10.0


class _Echo(QuickActor):
    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__()
        self._gate = gate

    def on_receive(self, message: Any) -> Any:
        if self._gate is not None:
            assert self._gate.wait(WAIT)
        if isinstance(message, Exception):
            raise message
        return message


class TestReplyFuture:
    """One lock per future, the semantics of pykka's ThreadingFuture."""

    def test_every_waiter_in_every_thread_gets_the_value(self) -> None:
        """Set once, every get() returns it: waiters already blocked and later callers."""
        future: ReplyFuture[int] = ReplyFuture()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            waiters = [pool.submit(future.get, timeout=WAIT) for _ in range(8)]
            future.set(42)
            assert [w.result(WAIT) for w in waiters] == [42] * 8
        assert future.get() == 42
        assert future.get(timeout=0) == 42

    def test_timeout_then_late_value(self) -> None:
        """An unset future times out with pykka.Timeout; a later set still resolves it."""
        future: ReplyFuture[str] = ReplyFuture()
        with pytest.raises(pykka.Timeout):
            future.get(timeout=0.01)
        with pytest.raises(pykka.Timeout):
            future.get(timeout=0)
        future.set("late")
        assert future.get(timeout=0) == "late"

    def test_resolved_only_once(self) -> None:
        """A second set, set_exception or get hook raises queue.Full (as ThreadingFuture)."""
        future: ReplyFuture[int] = ReplyFuture()
        future.set(1)
        with pytest.raises(queue.Full):
            future.set(2)
        with pytest.raises(queue.Full):
            future.set_exception((ValueError, ValueError("x"), None))
        with pytest.raises(queue.Full):
            future.set_get_hook(lambda _timeout: 3)
        assert future.get() == 1

    def test_exception_is_raised_to_every_getter(self) -> None:
        """set_exception() (from an except block) makes get() raise that exception."""
        future: ReplyFuture[int] = ReplyFuture()

        def fail() -> None:
            raise KeyError("gone")

        try:
            fail()
        except KeyError:
            future.set_exception()
        for _ in range(2):
            with pytest.raises(KeyError, match="gone"):
                future.get()

    def test_map_join_and_await_work(self) -> None:
        """Future combinators (built on get hooks) and ``await`` behave as in pykka."""
        a: ReplyFuture[int] = ReplyFuture()
        b: ReplyFuture[int] = ReplyFuture()
        doubled = a.map(lambda v: v * 2)
        joined = a.join(b)
        a.set(2)
        b.set(5)
        assert doubled.get(timeout=WAIT) == 4
        assert joined.get(timeout=WAIT) == [2, 5]
        assert pykka.get_all([a, b], timeout=WAIT) == [2, 5]

        async def wait() -> int:
            return await a

        assert asyncio.run(wait()) == 2


class TestQuickActor:
    """Asks through the SimpleQueue inbox: one answer per caller, dead letters refused."""

    def test_concurrent_asks_each_get_their_own_answer(self) -> None:
        """Eight threads asking at once each get back exactly what they sent."""
        ref = _Echo.start()
        try:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                answers = [
                    pool.submit(lambda t: [ref.ask((t, i), timeout=WAIT) for i in range(200)], t)
                    for t in range(8)
                ]
                for t, answer in enumerate(answers):
                    assert answer.result(WAIT) == [(t, i) for i in range(200)]
            with pytest.raises(LookupError, match="boom"):
                ref.ask(LookupError("boom"), timeout=WAIT)
            assert ref.ask("still alive", timeout=WAIT) == "still alive"
        finally:
            ref.stop()

    def test_asks_queued_behind_a_stop_fail_with_actor_dead(self) -> None:
        """Messages still in the inbox when the actor stops get ActorDeadError, not a hang."""
        gate = threading.Event()
        ref = _Echo.start(gate)
        first = ref.ask("first", block=False)
        stopped = ref.stop(block=False)
        queued = ref.ask("queued", block=False)
        gate.set()
        assert first.get(timeout=WAIT) == "first"
        stopped.get(timeout=WAIT)
        with pytest.raises(pykka.ActorDeadError):
            queued.get(timeout=WAIT)

    def test_a_message_put_after_the_teardown_is_refused_not_lost(self) -> None:
        """The race of an ask with a stop that ended: ActorDeadError at once, not a timeout."""
        ref = _Echo.start()
        ref.stop()
        late = ReplyFuture[Any]()
        # What ref.ask does when its is_alive() check ran just before the actor stopped.
        ref.actor_inbox.put(Envelope("late", reply_to=late))
        with pytest.raises(pykka.ActorDeadError):
            late.get(timeout=WAIT)


class _Parking(_Echo):
    park_idle_thread = True


class _RacedPark(_Parking):
    """The first time its thread may park, a message arrives first (from another thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.raced: pykka.Future[Any] | None = None

    def may_park(self) -> bool:
        if self.raced is None:
            asked: list[pykka.Future[Any]] = []
            sender = threading.Thread(
                target=lambda: asked.append(self.actor_ref.ask("raced", block=False))
            )
            sender.start()
            sender.join(WAIT)
            self.raced = asked[0]
        return True


def _threads_of(ref: pykka.ActorRef[Any]) -> list[threading.Thread]:
    number = f"{_Parking.__name__}-"
    alive = [t for t in threading.enumerate() if t.name.startswith(number)]
    return alive if ref.is_alive() else []


class TestParking:
    """With ``park_idle_thread`` an actor has a thread only while it has queued work."""

    @pytest.fixture(autouse=True)
    def _short_park(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(_mailbox, "PARK_AFTER", 0.05)

    def test_inline_asks_need_no_thread_and_queued_ones_start_one(self) -> None:
        """Inline: no thread; queued: one thread, which parks when idle; answers all along."""
        ref = _Parking.start()
        try:
            assert ask_inline(ref, "inline", WAIT) == "inline"
            assert _threads_of(ref) == []
            assert ref.ask("queued", timeout=WAIT) == "queued"
            assert len(_threads_of(ref)) == 1
            deadline = time.monotonic() + WAIT
            while _threads_of(ref) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _threads_of(ref) == []
            assert ref.ask("again", timeout=WAIT) == "again"
        finally:
            ref.stop()

    def test_concurrent_asks_across_parking_are_all_answered(self) -> None:
        """Bursts separated by idle pauses (the thread parks between them): no ask is lost."""
        ref = _Parking.start()
        try:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                for burst in range(5):
                    answers = [pool.submit(ref.ask, (burst, n), timeout=WAIT) for n in range(50)]
                    assert [a.result(WAIT) for a in answers] == [(burst, n) for n in range(50)]
                    time.sleep(0.06 if burst % 2 else 0.04)  # around PARK_AFTER
        finally:
            ref.stop()

    def test_a_message_that_arrives_as_the_thread_parks_is_handled(self) -> None:
        """Queued between the idle timeout and the park: the thread stays for it."""
        ref = _RacedPark.start()
        try:
            assert ref.ask("first", timeout=WAIT) == "first"  # the thread starts
            actor = ref._actor_weakref()
            assert actor is not None
            deadline = time.monotonic() + WAIT
            while actor.raced is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert actor.raced is not None
            assert actor.raced.get(timeout=WAIT) == "raced"
        finally:
            ref.stop()

    def test_a_parked_actor_stops_in_the_stopping_thread(self) -> None:
        """No thread is started to stop it; what is sent afterwards gets ActorDeadError."""
        ref = _Parking.start()
        assert ref.stop() is True
        assert not ref.is_alive()
        assert _threads_of(ref) == []
        late = ReplyFuture[Any]()
        ref.actor_inbox.put(Envelope("late", reply_to=late))
        with pytest.raises(pykka.ActorDeadError):
            late.get(timeout=WAIT)


class _Recorder(QuickActor):
    """Records the thread of every message; fails the test if two ever overlap."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__()
        self._gate = gate
        self._busy = False
        self.seen: list[tuple[Any, str]] = []
        self.overlaps = 0

    def on_receive(self, message: Any) -> Any:
        if self._busy:
            self.overlaps += 1
        self._busy = True
        try:
            if message == "hold" and self._gate is not None:
                assert self._gate.wait(WAIT)
            if isinstance(message, Exception):
                raise message
            self.seen.append((message, threading.current_thread().name))
            return message
        finally:
            self._busy = False


class TestInlineAsk:
    """An idle actor handles an inline ask in the asking thread; it never runs two at once."""

    def test_an_idle_actor_runs_the_message_in_the_callers_thread(self) -> None:
        """Nothing queued: the handler runs here, and its answer comes back."""
        ref = _Recorder.start()
        try:
            actor = ref.proxy()
            assert ask_inline(ref, "a", WAIT) == "a"
            seen = actor.seen.get(timeout=WAIT)
            assert seen == [("a", threading.current_thread().name)]
        finally:
            ref.stop(timeout=WAIT)

    def test_a_busy_actor_queues_it_behind_what_came_first(self) -> None:
        """While the actor's thread handles a message, an inline ask waits its turn, in order."""
        gate = threading.Event()
        ref = _Recorder.start(gate)
        try:
            held = ref.ask("hold", block=False)
            queued = ref.ask("second", block=False)
            answer: list[Any] = []
            third = threading.Thread(target=lambda: answer.append(ask_inline(ref, "third", WAIT)))
            third.start()
            gate.set()
            assert held.get(timeout=WAIT) == "hold"
            assert queued.get(timeout=WAIT) == "second"
            third.join(WAIT)
            assert answer == ["third"]
            seen = ref.proxy().seen.get(timeout=WAIT)
            assert [message for message, _ in seen] == ["hold", "second", "third"]
        finally:
            gate.set()
            ref.stop(timeout=WAIT)

    def test_inline_and_queued_messages_never_overlap(self) -> None:
        """8 threads mixing inline asks and plain asks: every answer right, no two at once."""
        ref = _Recorder.start()
        try:

            def work(index: int) -> list[Any]:
                return [
                    ask_inline(ref, (index, n), WAIT)
                    if n % 2
                    else ref.ask((index, n), timeout=WAIT)
                    for n in range(300)
                ]

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                results = list(pool.map(work, range(8)))
            assert results == [[(i, n) for n in range(300)] for i in range(8)]
            proxy = ref.proxy()
            assert proxy.overlaps.get(timeout=WAIT) == 0
            threads = {thread for _, thread in proxy.seen.get(timeout=WAIT)}
            assert len(threads) > 1  # both paths were taken
        finally:
            ref.stop(timeout=WAIT)

    def test_errors_reach_the_caller_and_a_stopped_actor_is_dead(self) -> None:
        """The handler's exception is raised to the inline caller; after stop: ActorDeadError."""
        ref = _Recorder.start()
        with pytest.raises(ValueError, match="bad"):
            ask_inline(ref, ValueError("bad"), WAIT)
        assert ask_inline(ref, "still alive", WAIT) == "still alive"
        ref.stop(timeout=WAIT)
        with pytest.raises(pykka.ActorDeadError):
            ask_inline(ref, "late", WAIT)

    def test_plain_actors_are_simply_asked(self) -> None:
        """A pykka actor without a TurnInbox gets an ordinary ask."""

        class Plain(pykka.ThreadingActor):
            def on_receive(self, message: Any) -> Any:
                return (message, threading.current_thread().name)

        ref = Plain.start()
        try:
            message, thread = ask_inline(ref, "x", WAIT)
            assert message == "x"
            assert thread != threading.current_thread().name
        finally:
            ref.stop(timeout=WAIT)
