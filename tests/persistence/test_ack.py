"""Ack: the one-lock outcome a thread waits on for its queued SQLite write."""

from __future__ import annotations

import threading

import pytest

from persistence import OutcomeUnknown, StoreUnavailable
from persistence._ack import Ack
from persistence._write_ops import wait_for_ack

WAIT = 10.0


class TestAck:
    """The part of the Future protocol the writer uses, with one waiter."""

    def test_the_result_reaches_the_waiting_thread(self) -> None:
        """Set from another thread (the writer), the waiter gets the value."""
        ack: Ack[int] = Ack()
        assert ack.set_running_or_notify_cancel()
        threading.Thread(target=ack.set_result, args=(7,)).start()
        assert wait_for_ack(ack, WAIT) == 7

    def test_an_error_is_raised_to_the_waiter(self) -> None:
        """A failed transaction's error is raised as it was set."""
        ack: Ack[int] = Ack()
        error = StoreUnavailable("refused")
        ack.set_exception(error)
        with pytest.raises(StoreUnavailable) as raised:
            wait_for_ack(ack, WAIT)
        assert raised.value is error

    def test_a_caller_that_gave_up_first_has_its_write_dropped(self) -> None:
        """A timeout before the transaction began cancels it: the writer skips it."""
        ack: Ack[int] = Ack()
        with pytest.raises(StoreUnavailable, match="did not answer in time"):
            wait_for_ack(ack, 0.01)
        assert ack.set_running_or_notify_cancel() is False

    def test_a_write_already_running_is_waited_for(self) -> None:
        """Once started, a timeout cannot drop it: the caller gets its outcome (the grace)."""
        ack: Ack[int] = Ack()
        assert ack.set_running_or_notify_cancel()
        threading.Timer(0.05, ack.set_result, args=(1,)).start()
        assert wait_for_ack(ack, 0.01, grace=WAIT) == 1
        assert ack.cancel() is False

    def test_a_running_write_without_an_outcome_is_unknown_not_refused(self) -> None:
        """Past the grace too, the caller is told OutcomeUnknown (it may still commit)."""
        ack: Ack[int] = Ack()
        assert ack.set_running_or_notify_cancel()
        with pytest.raises(OutcomeUnknown, match="may have committed"):
            wait_for_ack(ack, 0.01, grace=0.01)
        ack.set_result(1)
        assert wait_for_ack(ack, WAIT) == 1
