"""Cheaper asks for our pykka actors: a C queue, a one-lock future, and a turn.

pykka's ``ThreadingActor`` gives each actor a ``queue.Queue`` (a lock and three
``Condition`` objects, written in Python) and each ``ask`` a ``ThreadingFuture`` (a new
``Condition``, whose ``wait`` allocates yet another lock). pykka lets actor
implementations choose both through ``_create_actor_inbox`` (any object with
``put``/``get``/``empty``) and ``_create_future``; :class:`QuickActor` picks a
:class:`TurnInbox` on a ``queue.SimpleQueue`` (C) and :class:`ReplyFuture`, which waits on
a single lock that ``set`` releases.

Even so, an ask is two hand-offs between threads, and on a small VM each costs a wake-up
of a sleeping thread: about 170 us a round trip, more than the checkpoint it carries. The
:class:`TurnInbox` therefore lets an asking thread run a message itself when the actor is
idle (nothing queued, nothing being handled). The actor's *turn* (a lock) makes handling
exclusive either way: a message runs in the actor's thread or in one asking thread, one at
a time, after every message queued before it, so the actor still owns its state.
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import TYPE_CHECKING, Any, TypeVar

import pykka

from actors._errors import TooManyActors
from actors._ticket import CallTicket, Withdrawn
from persistence import OutcomeUnknown
from persistence._write_ops import STARTED_GRACE

if TYPE_CHECKING:
    from pykka._types import OptExcInfo

T = TypeVar("T")


class ReplyFuture(pykka.Future[T]):
    """A ``pykka.Future`` for plain threads, resolved once, on one lock.

    The lock is taken at creation; setting the result releases it. A waiter takes it and
    hands it straight back, so any number of ``get`` calls (from any threads) return.
    Behaves as ``ThreadingFuture``: timeouts raise ``pykka.Timeout``, a second ``set``
    raises ``queue.Full``, exceptions are re-raised with their traceback, get hooks
    (``map``, ``filter``, ``join`` ...) work.
    """

    def __init__(self) -> None:
        super().__init__()
        self._ready = threading.Lock()
        self._ready.acquire()
        self._guard = threading.Lock()  # makes set/set_exception/set_get_hook exclusive
        self._value: Any = None
        self._exc_info: OptExcInfo | None = None
        self._done = False

    def get(self, *, timeout: float | None = None) -> Any:
        """The value (or raise the exception) once set; ``pykka.Timeout`` after ``timeout``."""
        if self._get_hook is not None:
            return super().get(timeout=timeout)
        if not self._done:
            wait = -1.0 if timeout is None else max(timeout, 0.0)
            if not self._ready.acquire(timeout=wait):
                if self._get_hook is not None:  # installed while we waited
                    return super().get(timeout=timeout)
                msg = f"{timeout} seconds"
                raise pykka.Timeout(msg)
            self._ready.release()  # for the next waiter
            if self._get_hook is not None:
                return super().get(timeout=timeout)
        if self._exc_info is not None:
            exc_type, exc_value, exc_traceback = self._exc_info
            assert exc_type is not None  # noqa: S101 - as pykka's ThreadingFuture
            if exc_value is None:
                exc_value = exc_type()
            if exc_value.__traceback__ is not exc_traceback:
                raise exc_value.with_traceback(exc_traceback)
            raise exc_value
        return self._value

    def set(self, value: Any | None = None) -> None:
        """Resolve with ``value``; ``queue.Full`` if already resolved."""
        with self._guard:
            self._claim()
            self._value = value
            self._done = True
        self._ready.release()

    def set_exception(self, exc_info: OptExcInfo | None = None) -> None:
        """Resolve with an exception (``sys.exc_info()`` by default)."""
        if exc_info is None:
            exc_info = sys.exc_info()
        with self._guard:
            self._claim()
            self._exc_info = exc_info
            self._done = True
        self._ready.release()

    def set_get_hook(self, func: Any) -> None:
        """Compute the value with ``func(timeout)`` on ``get`` (``map``, ``filter`` ...)."""
        with self._guard:
            self._claim()
            super().set_get_hook(func)
            self._done = True
        self._ready.release()  # wakes waiters, which then run the hook

    def _claim(self) -> None:
        if self._done:
            raise queue.Full


#: What :meth:`TurnInbox.run_inline` returns when the message must be queued instead.
QUEUE_IT: Any = object()


class TurnInbox:
    """An actor's inbox (a ``SimpleQueue``) and its turn: who may handle a message now.

    The actor's thread takes the turn for each message it dequeues and gives it back when
    it asks for the next one (pykka's loop asks only once the previous message is handled).
    :meth:`run_inline` lets another thread handle a message in its own thread instead,
    only when nothing is queued or being handled and the turn is free.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._turn = threading.Lock()
        self._count = threading.Lock()  # makes "nothing unfinished, take the turn" atomic
        self._unfinished = 0  # queued, or being handled by the actor's thread
        self._actor_holds = False  # only the actor's thread reads and writes it
        self._handle: Any = None  # the actor's message handler, while it lives
        self._snapshot: Any = None  # the actor's QuickActor.snapshot, while it lives

    def bind(self, handle: Any, snapshot: Any = None) -> None:
        """Set (or, with ``None``, clear) the handler :meth:`run_inline` calls.

        ``snapshot`` is what a message becomes before it is queued, in the caller's thread
        (see :meth:`QuickActor.snapshot`).
        """
        self._handle = handle
        self._snapshot = snapshot

    def snapshot(self, message: Any) -> Any:
        """``message`` as it will be queued (a snapshot of the caller's inputs)."""
        snapshot = self._snapshot
        return message if snapshot is None else snapshot(message)

    def put(self, envelope: Any, /) -> None:
        """Queue a message for the actor's thread."""
        with self._count:
            self._unfinished += 1
        self._queue.put(envelope)

    def get(self) -> Any:
        """The next message, for the actor's thread, which then holds the turn."""
        if self._actor_holds:  # the previous message is handled
            self._actor_holds = False
            with self._count:
                self._unfinished -= 1
            self._turn.release()
        envelope = self._queue.get()
        self._turn.acquire()  # waits for a message running inline
        self._actor_holds = True
        return envelope

    def empty(self) -> bool:
        """Whether nothing is queued."""
        return self._queue.empty()

    def run_inline(self, stopped: threading.Event, message: Any) -> Any:
        """Handle ``message`` in this thread if the actor is idle; else :data:`QUEUE_IT`.

        Raises:
            pykka.ActorDeadError: the actor has stopped.
            Exception: whatever handling the message raised, as ``ask`` would.
        """
        with self._count:
            if self._unfinished or not self._turn.acquire(blocking=False):
                return QUEUE_IT
        try:
            handle = self._handle
            if handle is None or stopped.is_set():
                msg = "the actor stopped before handling the message"
                raise pykka.ActorDeadError(msg)
            return handle(message)
        finally:
            self._turn.release()


class QuickActor(pykka.ThreadingActor):
    """A ``ThreadingActor`` with a :class:`TurnInbox` and :class:`ReplyFuture` replies."""

    actor_inbox: TurnInbox
    # A thread busy in the host's code (a run_in_actor step, a runtime's close) must not
    # keep the process alive once the host is done: close() (or the exit hook) stops the
    # idle actors and releases the leases, waiting at most call_timeout for busy ones.
    use_daemon_thread = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.actor_inbox.bind(self._handle_receive, self.snapshot)

    def snapshot(self, message: Any) -> Any:
        """What ``message`` becomes before it waits in the inbox (default: itself).

        Runs in the asking thread, while the actor may be handling another message: read
        only what is safe to read from another thread.
        """
        return message

    @staticmethod
    def _create_actor_inbox() -> Any:
        return TurnInbox()

    def _start_actor_loop(self) -> None:
        try:
            super()._start_actor_loop()
        except RuntimeError as error:  # "can't start new thread": the process is at its limit
            # pykka registered the actor before starting its thread; it never ran.
            pykka.ActorRegistry.unregister(self.actor_ref)
            self.actor_inbox.bind(None)
            raise TooManyActors(str(error)) from error

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return ReplyFuture()

    def _actor_loop_teardown(self) -> None:
        self.actor_inbox.bind(None)  # no more inline handling; and no cycle kept alive
        super()._actor_loop_teardown()


def ask_inline(
    ref: pykka.ActorRef[Any], message: Any, timeout: float, ticket: CallTicket | None = None
) -> Any:
    """``ref.ask(message, timeout=timeout)``, run in this thread if the actor is idle.

    Only for messages whose handling may run in any thread (never for work that must run
    in the actor's own thread). The actor handles one message at a time either way.
    With a ``ticket`` the timeout rule applies (see :func:`ask_within`).
    """
    inbox = ref.actor_inbox
    if isinstance(inbox, TurnInbox):
        result = inbox.run_inline(ref.actor_stopped, message)
        if result is not QUEUE_IT:
            return result
    if ticket is not None:
        return ask_within(ref, message, ticket)
    return ref.ask(message, timeout=timeout)


def ask_within(ref: pykka.ActorRef[Any], message: Any, ticket: CallTicket) -> Any:
    """Queue ``message`` and wait for its answer under the timeout rule.

    Until the ticket's deadline the caller waits; then a message not yet started is
    withdrawn (the actor drops it: nothing changes, now or later) and a started one is
    waited for, up to :data:`STARTED_GRACE` more seconds.

    Raises:
        Withdrawn: no answer in time and withdrawn (a ``StoreUnavailable``).
        OutcomeUnknown: it started and did not answer within the grace either.
    """
    inbox = ref.actor_inbox
    if isinstance(inbox, TurnInbox):
        message = inbox.snapshot(message)
    future = ref.ask(message, block=False)
    try:
        return future.get(timeout=ticket.remaining())
    except pykka.Timeout:
        if ticket.withdraw():
            msg = f"the session did not answer within {ticket.timeout:g}s; nothing was changed"
            raise Withdrawn(msg) from None
    try:
        return future.get(timeout=STARTED_GRACE)
    except pykka.Timeout:
        msg = (
            f"the session did not answer in time (a change that had started did not end"
            f" within {ticket.timeout:g}s + {STARTED_GRACE:g}s); it may have been stored"
        )
        raise OutcomeUnknown(msg) from None
