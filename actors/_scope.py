"""``manager.for_user(user_id)``: a view that sees and touches only one user's sessions.

Each method of the view is the manager's own, wrapped by a descriptor that checks the
session (or approval) it names before the call: the signatures come from the manager's
methods, so the view is typed without a hand-written forward per method.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Self, TypeVar, overload

import structlog

from actors._errors import AccessDenied, ManagerClosed
from actors._twins import AsyncPool, async_twin
from actors._validate import require_optional_str, require_str
from persistence import ApprovalNotFound, InvalidArgument, SessionNotFound

if TYPE_CHECKING:
    from actors._manager import SessionManager
    from actors._work import UnitOfWork

log = structlog.get_logger("actors.scoped")

P = ParamSpec("P")
R = TypeVar("R")


class _Checked(Generic[P, R]):
    """A manager method on the view: the named session (or approval) is checked first.

    ``check`` names the view's check of the argument named ``argument`` (found by name,
    so positional and keyword calls are both checked).
    """

    def __init__(
        self,
        method: Callable[[SessionManager], Callable[P, R]],
        argument: str,
        check: str,
    ) -> None:
        self._method = method
        self._argument = argument
        self._check = check
        self._signature: inspect.Signature | None = None
        self.__name__ = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.__name__ = name
        self.__doc__ = f"``SessionManager.{name}`` on one of this user's sessions."

    @overload
    def __get__(self, scope: None, owner: type) -> Self: ...

    @overload
    def __get__(self, scope: UserScope, owner: type | None = None) -> Callable[P, R]: ...

    def __get__(self, scope: UserScope | None, owner: type | None = None) -> Self | Callable[P, R]:
        if scope is None:
            return self
        return functools.partial(self.__call__, scope)

    def __call__(self, scope: UserScope, /, *args: P.args, **kwargs: P.kwargs) -> R:
        method = self._method(scope.manager)
        if self._signature is None:
            self._signature = inspect.signature(method)
        try:
            named = self._signature.bind(*args, **kwargs).arguments.get(self._argument)
        except TypeError:
            return method(*args, **kwargs)  # the manager raises the same TypeError
        getattr(scope, self._check)(named)
        return method(*args, **kwargs)


def _session(method: Callable[[SessionManager], Callable[P, R]]) -> _Checked[P, R]:
    return _Checked(method, "session_id", "_check_session")


def _approval(method: Callable[[SessionManager], Callable[P, R]]) -> _Checked[P, R]:
    return _Checked(method, "approval_id", "_check_approval")


def _user(method: Callable[[SessionManager], Callable[P, R]]) -> _Checked[P, R]:
    return _Checked(method, "user_id", "_check_user")


class UserScope:
    """The manager's API restricted to the sessions of one user.

    Sessions are created for that user; lists show only theirs; every call that names a
    session (or an approval) of someone else raises :class:`AccessDenied` and changes
    nothing, the seed-compatible methods included (crossing users is a bug to see, not
    an expected failure to return ``False`` for). A session that does not exist is
    reported as the manager reports it (``SessionNotFound``, or ``False``/``None``).

    Each call that names a session costs one extra read (its owner). A scope holds no
    state but the user id: make one per request.

    Example:
        >>> alice = manager.for_user("alice")  # doctest: +SKIP
        >>> sid = alice.create_session("copilot", {})  # doctest: +SKIP
        >>> manager.for_user("bob").load(sid)  # doctest: +SKIP
        Traceback (most recent call last):
        AccessDenied: session '...' does not belong to user 'bob'
    """

    def __init__(self, manager: SessionManager, user_id: str) -> None:
        self.manager = manager
        self._user_id = user_id

    @property
    def user_id(self) -> str:
        """The user this view is scoped to."""
        return self._user_id

    @property
    def async_pool(self) -> AsyncPool:
        """The manager's pool, which the view's async twins run on."""
        return self.manager.async_pool

    def __repr__(self) -> str:
        return f"UserScope(user_id={self._user_id!r})"

    # ------------------------------------------------------------------ checks

    def _check_open(self) -> None:
        if self.manager.closed:
            raise ManagerClosed

    def _check_session(self, session_id: Any) -> None:
        """Raise AccessDenied if the session exists and is not this user's.

        Raises ManagerClosed first if the manager is closed, as the manager does.
        """
        self._check_open()
        session_id = require_str("session_id", session_id)
        try:
            owner = self.manager.info(session_id)["user_id"]
        except SessionNotFound:
            return  # the call itself reports it, as the manager does
        if owner != self._user_id:
            log.warning("access.denied", session_id=session_id, user_id=self._user_id)
            raise AccessDenied(session_id, self._user_id)

    def _check_approval(self, approval_id: Any) -> None:
        """Raise AccessDenied if the approval is of another user's session."""
        self._check_open()
        approval = self.manager.get_approval(require_str("approval_id", approval_id))
        if approval is not None:
            self._check_session(approval["session_id"])

    def _check_user(self, user_id: Any) -> None:
        """Refuse a ``user_id`` argument that is not this view's user."""
        self._check_open()
        user_id = require_optional_str("user_id", user_id)
        if user_id is not None and user_id != self._user_id:
            raise InvalidArgument(
                f"this view is scoped to user {self._user_id!r}; it cannot act for {user_id!r}"
            )

    # ------------------------------------------------------------------ sessions

    def create_session(
        self, mode: str, config: dict[str, Any], user_id: str | None = None,
        name: str | None = None, *, session_id: str | None = None,
    ) -> str:  # fmt: skip
        """Create a session for this user (``user_id``, if given, must be this user)."""
        self._check_user(user_id)
        return self.manager.create_session(mode, config, self._user_id, name, session_id=session_id)

    def create(
        self, mode: str, config: dict[str, Any], user_id: str | None = None,
        name: str | None = None, *, session_id: str | None = None,
    ) -> str:  # fmt: skip
        """``SessionManager.create`` for this user."""
        self._check_user(user_id)
        return self.manager.create(mode, config, self._user_id, name, session_id=session_id)

    def list_sessions(
        self, user_id: str | None = None, status: str | None = None, mode: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """This user's sessions (``user_id``, if given, must be this user)."""
        self._check_open()
        self._check_user(user_id)
        return self.manager.list_sessions(self._user_id, status, mode, limit)

    def sessions(
        self, user_id: str | None = None, status: str | None = None, mode: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """``SessionManager.sessions`` of this user (``user_id``, if given, must be this user)."""
        self._check_open()
        self._check_user(user_id)
        return self.manager.sessions(self._user_id, status, mode, limit)

    save_session_state = _session(lambda m: m.save_session_state)
    load_session_state = _session(lambda m: m.load_session_state)
    suspend_session = _session(lambda m: m.suspend_session)
    resume_session = _session(lambda m: m.resume_session)
    complete_session = _session(lambda m: m.complete_session)
    delete_session = _session(lambda m: m.delete_session)
    get_session_info = _session(lambda m: m.get_session_info)
    phase_hook = _session(lambda m: m.phase_hook)
    checkpoint = _session(lambda m: m.checkpoint)
    append_messages = _session(lambda m: m.append_messages)
    load = _session(lambda m: m.load)
    info = _session(lambda m: m.info)
    suspend = _session(lambda m: m.suspend)
    resume = _session(lambda m: m.resume)
    complete = _session(lambda m: m.complete)
    expire = _session(lambda m: m.expire)
    delete = _session(lambda m: m.delete)
    runtime = _session(lambda m: m.runtime)
    run_in_actor = _session(lambda m: m.run_in_actor)
    discard_runtime = _session(lambda m: m.discard_runtime)
    unit_of_work = _session(lambda m: m.unit_of_work)
    request_approval = _session(lambda m: m.request_approval)
    list_pending_approvals = _session(lambda m: m.list_pending_approvals)
    get_approval = _approval(lambda m: m.get_approval)
    wait_for_approval = _approval(lambda m: m.wait_for_approval)

    async def await_for_approval(
        self, approval_id: str, timeout: float | timedelta | None
    ) -> dict[str, Any]:
        """Async twin of ``wait_for_approval`` (the owner check runs off the loop)."""
        await self.async_pool.run(functools.partial(self._check_approval, approval_id))
        return await self.manager.await_for_approval(approval_id, timeout)

    def resolve_approval(self, approval_id: str, resolution: str, result: Any = None) -> bool:
        """``SessionManager.resolve_approval`` of a request of this user's sessions."""
        self._check_open()
        approval_id = require_str("approval_id", approval_id)
        if self.manager.get_approval(approval_id) is None:
            raise ApprovalNotFound(approval_id)
        self._check_approval(approval_id)
        return self.manager.resolve_approval(approval_id, resolution, result)

    def aunit_of_work(
        self, session_id: str, *, wait: float | None = None, checkpoint: bool = True
    ) -> AbstractAsyncContextManager[UnitOfWork]:
        """Async twin of ``unit_of_work`` (the owner check runs when it is entered)."""
        return _CheckedAsyncWork(self, session_id, wait, checkpoint)

    # ------------------------------------------------------------------ async twins

    acreate_session = async_twin(create_session)
    acreate = async_twin(create)
    alist_sessions = async_twin(list_sessions)
    asessions = async_twin(sessions)
    asave_session_state = async_twin(save_session_state)
    aload_session_state = async_twin(load_session_state)
    asuspend_session = async_twin(suspend_session)
    aresume_session = async_twin(resume_session)
    acomplete_session = async_twin(complete_session)
    adelete_session = async_twin(delete_session)
    aget_session_info = async_twin(get_session_info)
    acheckpoint = async_twin(checkpoint)
    aappend_messages = async_twin(append_messages)
    aload = async_twin(load)
    ainfo = async_twin(info)
    asuspend = async_twin(suspend)
    aresume = async_twin(resume)
    acomplete = async_twin(complete)
    aexpire = async_twin(expire)
    adelete = async_twin(delete)
    aruntime = async_twin(runtime)
    arun_in_actor = async_twin(run_in_actor)
    adiscard_runtime = async_twin(discard_runtime)
    arequest_approval = async_twin(request_approval)
    alist_pending_approvals = async_twin(list_pending_approvals)
    aget_approval = async_twin(get_approval)
    aresolve_approval = async_twin(resolve_approval)


class _CheckedAsyncWork(AbstractAsyncContextManager["UnitOfWork"]):
    """``aunit_of_work`` of a scope: check the owner off the loop, then enter the manager's."""

    def __init__(
        self, scope: UserScope, session_id: str, wait: float | None, checkpoint: bool
    ) -> None:
        self._scope = scope
        self._session_id = session_id
        self._options = (wait, checkpoint)
        self._inner: AbstractAsyncContextManager[UnitOfWork] | None = None

    async def __aenter__(self) -> UnitOfWork:
        scope = self._scope
        await scope.async_pool.run(functools.partial(scope._check_session, self._session_id))
        wait, checkpoint = self._options
        self._inner = scope.manager.aunit_of_work(
            self._session_id, wait=wait, checkpoint=checkpoint
        )
        return await self._inner.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._inner is not None  # noqa: S101 - set by __aenter__
        return await self._inner.__aexit__(*exc_info)
