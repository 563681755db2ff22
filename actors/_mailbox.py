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

An actor with ``park_idle_thread`` (the session actors) has a thread only while it has
queued work: :meth:`TurnInbox.put` starts one when a message must wait, and the thread
exits after :data:`PARK_AFTER` idle seconds. A process with thousands of live sessions
then holds threads only for the busy ones: each blocked thread lengthens the kernel's
futex chains and so slows every thread's wake-ups (measured: a create + first save cost
1.4x with 5,000 idle actor threads, the same with 5,000 plain idle threads).
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import pykka
from pykka.messages import _ActorStop

from actors._errors import TooManyActors
from actors._future import ReplyFuture
from actors._ticket import CallTicket, Withdrawn
from persistence import OutcomeUnknown
from persistence._write_ops import STARTED_GRACE

_thread_numbers = itertools.count(1)


#: What :meth:`TurnInbox.run_inline` returns when the message must be queued instead.
QUEUE_IT: Any = object()

#: Seconds an actor's thread waits for a message before it parks (exits) if it may.
PARK_AFTER = 2.0


def _refuse(envelope: Any) -> None:
    """Answer a message sent to a stopped actor as pykka's teardown does."""
    if envelope.reply_to is not None and not isinstance(envelope.message, _ActorStop):
        error = pykka.ActorDeadError("the actor stopped before handling the message")
        envelope.reply_to.set_exception((pykka.ActorDeadError, error, None))
    elif envelope.reply_to is not None:
        envelope.reply_to.set(None)


class _Parked(BaseException):  # a signal to the actor's loop, not an error
    """The actor's thread parked: it leaves the loop; the next queued message starts one."""


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
        # Parking: with a thread starter, the actor has a thread only while it has work.
        self._start_thread: Callable[[], None] | None = None
        self._may_park: Callable[[], bool] = lambda: True
        self._stop_parked: Callable[[Any], None] | None = None
        self._closed = False  # stopped: a message put now would never be handled
        self._threaded = True  # a thread runs (or is starting to run) the actor's loop

    def bind(self, handle: Any, snapshot: Any = None) -> None:
        """Set (or, with ``None``, clear) the handler :meth:`run_inline` calls.

        ``snapshot`` is what a message becomes before it is queued, in the caller's thread
        (see :meth:`QuickActor.snapshot`).
        """
        self._handle = handle
        self._snapshot = snapshot
        if handle is None:
            with self._count:  # from now on put() refuses: nothing is left unanswered
                self._closed = True
                self._stop_parked = None

    def snapshot(self, message: Any) -> Any:
        """``message`` as it will be queued (a snapshot of the caller's inputs)."""
        snapshot = self._snapshot
        return message if snapshot is None else snapshot(message)

    def park_when_idle(
        self,
        start_thread: Callable[[], None],
        may_park: Callable[[], bool],
        stop_parked: Callable[[Any], None],
    ) -> None:
        """Let the actor's thread exit when idle; ``start_thread`` starts one again.

        Called before the actor has a thread. The thread exits after :data:`PARK_AFTER`
        seconds without a message if ``may_park()`` (asked in the actor's thread); the next
        :meth:`put` starts a thread again. Messages run inline need no thread at all, nor
        does stopping an idle actor without one: ``stop_parked(envelope)`` runs in the
        stopping thread, holding the turn.
        """
        self._start_thread = start_thread
        self._may_park = may_park
        self._stop_parked = stop_parked
        self._threaded = False

    def put(self, envelope: Any, /) -> None:
        """Queue a message for the actor's thread (starting the thread if it parked).

        Raises:
            TooManyActors: the actor had no thread and the system refused one (the
                message is not queued).
        """
        while True:
            with self._count:
                if self._closed:  # sent after the stop: answered as pykka's teardown does
                    _refuse(envelope)
                    return
                if self._threaded:
                    self._unfinished += 1
                    self._queue.put(envelope)
                    return
                # Parked implies nothing queued; with the turn free too, stop right here.
                stop_here = isinstance(envelope.message, _ActorStop) and self._turn.acquire(
                    blocking=False
                )
                if stop_here:
                    self._closed = True  # what is sent from now on comes after the stop
                else:
                    self._threaded = True
            if stop_here:
                self._run_stop(envelope)
                return
            self._start()

    def wake(self) -> None:
        """Start the actor's thread now if it has none (it parks again when idle).

        Raises:
            TooManyActors: the system refused a thread.
        """
        with self._count:
            if self._threaded or self._closed:
                return
            self._threaded = True
        self._start()

    def _start(self) -> None:
        """Start a thread for the loop; ``_threaded`` was set by the caller."""
        start = self._start_thread
        assert start is not None  # noqa: S101 - only parked with a starter
        try:
            start()
        except BaseException:
            with self._count:
                self._threaded = False
            raise

    def _run_stop(self, envelope: Any) -> None:
        try:
            stop = self._stop_parked
            if stop is not None:
                stop(envelope)
            else:  # stopped already (it failed, or its start did)
                _refuse(envelope)
        finally:
            self._turn.release()

    def get(self) -> Any:
        """The next message, for the actor's thread, which then holds the turn.

        Raises:
            _Parked: idle for :data:`PARK_AFTER` seconds with parking on: leave the loop.
        """
        if self._actor_holds:  # the previous message is handled
            self._actor_holds = False
            with self._count:
                self._unfinished -= 1
            self._turn.release()
        envelope = self._queue.get() if self._start_thread is None else self._get_or_park()
        self._turn.acquire()  # waits for a message running inline
        self._actor_holds = True
        return envelope

    def _get_or_park(self) -> Any:
        while True:
            try:
                return self._queue.get(timeout=PARK_AFTER)
            except queue.Empty:
                if not self._may_park():
                    continue
                with self._count:  # a put takes this lock too: none is half done
                    if self._unfinished == 0:
                        self._threaded = False
                        raise _Parked from None

    def empty(self) -> bool:
        """Whether nothing is queued."""
        return self._queue.empty()

    def run_inline(self, stopped: threading.Event, message: Any, *, parked: bool = False) -> Any:
        """Handle ``message`` in this thread if the actor is idle; else :data:`QUEUE_IT`.

        With ``parked``, only if the actor has no thread either (a message whose work
        belongs to the actor's thread when it has one: a runtime is closed there).

        Raises:
            pykka.ActorDeadError: the actor has stopped.
            Exception: whatever handling the message raised, as ``ask`` would.
        """
        with self._count:
            busy = self._unfinished or (parked and self._threaded)
            if busy or not self._turn.acquire(blocking=False):
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
    #: Give the thread back when idle (see :meth:`TurnInbox.park_when_idle`): an idle
    #: actor then costs no thread, and messages run inline need none.
    park_idle_thread: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._set_up = False  # on_start ran (parked actors run their loop in stints)
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

    def may_park(self) -> bool:
        """Whether the thread may exit when idle (see ``park_idle_thread``)."""
        return True

    def thread_at_start(self) -> bool:
        """Whether a parking actor starts with a thread anyway (it will have queued work)."""
        return False

    def _start_actor_loop(self) -> None:
        try:
            if not self.park_idle_thread:
                super()._start_actor_loop()
                return
            self.actor_inbox.park_when_idle(
                self._start_parked_thread, self.may_park, self._stop_without_thread
            )
            if self.thread_at_start():
                self.actor_inbox.wake()
        except (RuntimeError, TooManyActors) as error:  # "can't start new thread"
            # pykka registered the actor before starting its thread; it never ran.
            pykka.ActorRegistry.unregister(self.actor_ref)
            self.actor_inbox.bind(None)
            if isinstance(error, TooManyActors):
                raise
            raise TooManyActors(str(error)) from error

    def _start_parked_thread(self) -> None:
        thread = threading.Thread(
            target=self._thread_loop,
            name=f"{type(self).__name__}-{next(_thread_numbers)}",
            daemon=self.use_daemon_thread,
        )
        try:
            thread.start()
        except RuntimeError as error:  # "can't start new thread"
            raise TooManyActors(str(error)) from error

    def _stop_without_thread(self, envelope: Any) -> None:
        """Stop an idle actor that has no thread, in the stopping thread (as pykka would)."""
        self._handle_receive(envelope.message)  # _stop(): unregister, mark stopped, on_stop
        self.actor_inbox.bind(None)
        if envelope.reply_to is not None:
            envelope.reply_to.set(None)

    def _thread_loop(self) -> None:
        """One stint of the actor's loop: until it stops, or parks when idle."""
        if not self._set_up:
            self._set_up = True
            self._actor_loop_setup()
        try:
            self._actor_loop_running()
        except _Parked:
            return
        self._actor_loop_teardown()

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
