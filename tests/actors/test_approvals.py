"""Approvals past their deadline read as expired; waiting for an answer without polling."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from actors import (
    AccessDenied,
    ApprovalClosed,
    ApprovalExpired,
    ApprovalNotFound,
    ApprovalTimeout,
    InvalidArgument,
    ManagerClosed,
    ManualClock,
    SessionManager,
)
from actors import _approvals_wait as waits
from tests.conftest import ManagerFactory


class _Waiter:
    """``wait_for_approval`` in a thread of its own: its answer or its error."""

    def __init__(self, wait: Callable[[], dict[str, Any]]) -> None:
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.returned_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(wait,), daemon=True)
        self._thread.start()

    def _run(self, wait: Callable[[], dict[str, Any]]) -> None:
        try:
            self.result = wait()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            self.error = error
        self.returned_at = time.monotonic()

    def join(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the waiter is still waiting"


def _waiting(manager: SessionManager, approval_id: str) -> None:
    """Wait (bounded) until a waiter registered, so the test acts while it waits."""
    deadline = time.monotonic() + 5
    while approval_id not in manager._core.approval_waiters._waiting:
        assert time.monotonic() < deadline, "no waiter registered"
        time.sleep(0.005)


@pytest.fixture
def slow_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads of the store a minute apart: only the in-process event can wake a waiter fast."""
    monkeypatch.setattr(waits, "FIRST_POLL", 60.0)
    monkeypatch.setattr(waits, "LONGEST_POLL", 60.0)


class TestPastTheDeadline:
    """An unanswered request past its deadline reads as expired before any sweep."""

    def test_reads_as_expired_and_is_not_listed(
        self, any_db_url: str, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """get_approval says expired, list_pending_approvals leaves it out, resolve is False."""
        manager = make_manager(database_url=any_db_url, autostart=False)
        sid = manager.create_session("copilot", {})
        late = manager.request_approval(sid, "plan", {"plan": [1]}, timeout=60)
        open_ended = manager.request_approval(sid, "tool", {})
        clock.advance(seconds=60)  # at the deadline: still pending, as resolve judges it
        assert manager.get_approval(late)["status"] == "pending"  # type: ignore[index]
        clock.advance(seconds=1)
        approval = manager.get_approval(late)
        assert approval is not None
        assert approval["status"] == "expired"
        assert approval["resolution"] is None
        assert [a["approval_id"] for a in manager.list_pending_approvals(sid)] == [open_ended]
        assert manager.resolve_approval(late, "approved") is False
        assert manager.get_approval(late)["status"] == "expired"  # type: ignore[index]
        assert manager.sweep()["approvals_expired"] == 1
        assert manager.get_approval(late)["status"] == "expired"  # type: ignore[index]
        json.dumps(manager.get_approval(late))

    def test_the_scoped_view_reads_the_same(
        self, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """for_user(...) shows the same status (it goes through the manager)."""
        manager = make_manager(autostart=False)
        alice = manager.for_user("alice")
        sid = alice.create_session("copilot", {})
        approval_id = alice.request_approval(sid, "plan", {}, timeout=5)
        clock.advance(seconds=6)
        assert alice.get_approval(approval_id)["status"] == "expired"  # type: ignore[index]
        assert alice.list_pending_approvals(sid) == []


class TestWaitForApproval:
    """wait_for_approval returns the answer, or raises a typed error; the caller never polls."""

    def test_an_answer_in_this_process_wakes_the_waiter_at_once(
        self, any_db_url: str, make_manager: ManagerFactory, slow_polls: None
    ) -> None:
        """With store reads a minute apart, the answer still arrives within a second."""
        manager = make_manager(database_url=any_db_url)
        sid = manager.create_session("copilot", {})
        approval_id = manager.request_approval(sid, "plan", {"plan": ["a"]}, timeout=600)
        waiter = _Waiter(lambda: manager.wait_for_approval(approval_id, timeout=30))
        _waiting(manager, approval_id)
        resolved_at = time.monotonic()
        assert manager.resolve_approval(approval_id, "modified", {"plan": ["b"]})
        waiter.join()
        assert waiter.error is None
        assert waiter.returned_at - resolved_at < 1.0
        assert waiter.result is not None
        assert waiter.result["status"] == "resolved"
        assert waiter.result["resolution"] == "modified"
        assert waiter.result["result"] == {"plan": ["b"]}
        assert manager._core.approval_waiters._waiting == {}

    def test_an_answer_from_another_process_is_read_back(
        self, any_db_url: str, make_manager: ManagerFactory
    ) -> None:
        """Another manager on the database (its own process, in effect) answers: seen by polling."""
        manager = make_manager(database_url=any_db_url, instance_id="waiting")
        other = make_manager(database_url=any_db_url, instance_id="answering")
        sid = manager.create_session("copilot", {})
        approval_id = manager.request_approval(sid, "tool", {"tool": "rm"})
        waiter = _Waiter(lambda: manager.wait_for_approval(approval_id, timeout=30))
        _waiting(manager, approval_id)
        assert other.resolve_approval(approval_id, "rejected")
        waiter.join()
        assert waiter.error is None
        assert waiter.result is not None
        assert waiter.result["resolution"] == "rejected"

    def test_an_answered_request_returns_at_once(self, manager: SessionManager) -> None:
        """No wait when the answer is already there."""
        sid = manager.create_session("copilot", {})
        approval_id = manager.request_approval(sid, "plan", {})
        assert manager.resolve_approval(approval_id, "approved")
        started = time.monotonic()
        answer = manager.wait_for_approval(approval_id, timeout=10)
        assert answer["resolution"] == "approved"
        assert time.monotonic() - started < 1.0

    def test_nobody_answers_in_time(self, manager: SessionManager) -> None:
        """ApprovalTimeout after the timeout; the request is still pending and answerable."""
        sid = manager.create_session("copilot", {})
        approval_id = manager.request_approval(sid, "plan", {})
        started = time.monotonic()
        with pytest.raises(ApprovalTimeout, match=approval_id) as caught:
            manager.wait_for_approval(approval_id, timeout=0.2)
        assert 0.2 <= time.monotonic() - started < 2.0
        assert isinstance(caught.value, TimeoutError)
        assert caught.value.approval_id == approval_id
        assert manager.get_approval(approval_id)["status"] == "pending"  # type: ignore[index]
        assert manager.resolve_approval(approval_id, "approved")

    def test_the_deadline_passes_while_waiting(
        self, any_db_url: str, make_manager: ManagerFactory, clock: ManualClock
    ) -> None:
        """ApprovalExpired (an ApprovalClosed) once the injected clock passes the deadline."""
        manager = make_manager(database_url=any_db_url, autostart=False)
        sid = manager.create_session("copilot", {})
        approval_id = manager.request_approval(sid, "plan", {}, timeout=60)
        waiter = _Waiter(lambda: manager.wait_for_approval(approval_id, timeout=30))
        _waiting(manager, approval_id)
        clock.advance(seconds=61)
        waiter.join()
        assert isinstance(waiter.error, ApprovalExpired)
        assert isinstance(waiter.error, ApprovalClosed)
        assert waiter.error.status == "expired"

    def test_a_cancelled_request_ends_the_wait(self, manager: SessionManager) -> None:
        """Completing the session cancels its requests: ApprovalClosed('cancelled')."""
        sid = manager.create_session("copilot", {})
        approval_id = manager.request_approval(sid, "plan", {})
        waiter = _Waiter(lambda: manager.wait_for_approval(approval_id, timeout=30))
        _waiting(manager, approval_id)
        assert manager.complete_session(sid)
        waiter.join()
        assert isinstance(waiter.error, ApprovalClosed)
        assert waiter.error.status == "cancelled"

    def test_closing_the_manager_ends_the_wait(
        self, make_manager: ManagerFactory, slow_polls: None
    ) -> None:
        """close() wakes every waiter, which raises ManagerClosed."""
        manager = make_manager()
        sid = manager.create_session("copilot", {})
        approval_id = manager.request_approval(sid, "plan", {})
        waiter = _Waiter(lambda: manager.wait_for_approval(approval_id, timeout=30))
        _waiting(manager, approval_id)
        manager.close()
        waiter.join(5.0)
        assert isinstance(waiter.error, ManagerClosed)

    @pytest.mark.parametrize("timeout", [0, -1, float("nan"), "5", True])
    def test_a_bad_timeout_is_refused(self, manager: SessionManager, timeout: Any) -> None:
        """InvalidArgument before any wait."""
        sid = manager.create_session("copilot", {})
        approval_id = manager.request_approval(sid, "plan", {})
        with pytest.raises(InvalidArgument, match="timeout"):
            manager.wait_for_approval(approval_id, timeout=timeout)

    def test_an_unknown_request(self, manager: SessionManager) -> None:
        """ApprovalNotFound at once."""
        with pytest.raises(ApprovalNotFound):
            manager.wait_for_approval("no-such-approval", timeout=5)


class TestAsyncTwin:
    """await_for_approval: the same, while the event loop keeps running."""

    def test_answer_timeout_and_a_free_loop(
        self, any_db_url: str, make_manager: ManagerFactory, slow_polls: None
    ) -> None:
        """The loop ticks while it waits; the answer wakes it; a second wait times out."""
        manager = make_manager(database_url=any_db_url)
        sid = manager.create_session("copilot", {})
        approval_id = manager.request_approval(sid, "plan", {})
        unanswered = manager.request_approval(sid, "tool", {})

        async def scenario() -> tuple[dict[str, Any], int]:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            background = asyncio.create_task(ticker())
            loop = asyncio.get_running_loop()
            loop.call_later(0.3, manager.resolve_approval, approval_id, "approved", {"ok": 1})
            answer = await manager.await_for_approval(approval_id, timeout=30)
            with pytest.raises(ApprovalTimeout):
                await manager.await_for_approval(unanswered, timeout=0.1)
            background.cancel()
            return answer, ticks

        started = time.monotonic()
        answer, ticks = asyncio.run(scenario())
        assert time.monotonic() - started < 5.0
        assert answer["result"] == {"ok": 1}
        assert ticks >= 10

    def test_scoped_views_wait_only_for_their_own(self, manager: SessionManager) -> None:
        """for_user's twins: alice waits for hers; bob is refused with AccessDenied."""
        alice, bob = manager.for_user("alice"), manager.for_user("bob")
        sid = alice.create_session("copilot", {})
        approval_id = alice.request_approval(sid, "plan", {})
        assert alice.resolve_approval(approval_id, "approved")
        assert alice.wait_for_approval(approval_id, 5)["resolution"] == "approved"
        with pytest.raises(AccessDenied):
            bob.wait_for_approval(approval_id, 5)

        async def both() -> dict[str, Any]:
            with pytest.raises(AccessDenied):
                await bob.await_for_approval(approval_id, 5)
            return await alice.await_for_approval(approval_id, 5)

        assert asyncio.run(both())["status"] == "resolved"
