"""``manager.for_user(user_id)``: a view that sees and touches only one user's sessions."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog

from actors._errors import AccessDenied
from actors._validate import require_optional_str, require_str
from persistence import ApprovalNotFound, InvalidArgument, SessionNotFound

if TYPE_CHECKING:
    from actors._api_runtime import UnitOfWork
    from actors._manager import SessionManager

log = structlog.get_logger("actors.scoped")


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
        self._manager = manager
        self._user_id = user_id

    @property
    def user_id(self) -> str:
        """The user this view is scoped to."""
        return self._user_id

    def __repr__(self) -> str:
        return f"UserScope(user_id={self._user_id!r})"

    # ------------------------------------------------------------------ checks

    def _check(self, session_id: Any) -> None:
        """Raise AccessDenied if the session exists and is not this user's.

        Raises ManagerClosed first if the manager is closed, as the manager does.
        """
        self._manager._check_open()
        session_id = require_str("session_id", session_id)
        try:
            owner = self._manager.info(session_id)["user_id"]
        except SessionNotFound:
            return  # the call itself reports it, as the manager does
        if owner != self._user_id:
            log.warning("access.denied", session_id=session_id, user_id=self._user_id)
            raise AccessDenied(session_id, self._user_id)

    def _check_approval(self, approval_id: str) -> dict[str, Any] | None:
        approval = self._manager.get_approval(approval_id)
        if approval is not None:
            self._check(approval["session_id"])
        return approval

    def _same_user(self, user_id: str | None) -> None:
        self._manager._check_open()
        user_id = require_optional_str("user_id", user_id)
        if user_id is not None and user_id != self._user_id:
            raise InvalidArgument(
                f"this view is scoped to user {self._user_id!r}; it cannot act for {user_id!r}"
            )

    # ------------------------------------------------------------------ seed API

    def create_session(
        self,
        mode: str,
        config: dict[str, Any],
        user_id: str | None = None,
        name: str | None = None,
    ) -> str:
        """Create a session for this user (``user_id``, if given, must be this user)."""
        self._same_user(user_id)
        return self._manager.create_session(mode, config, self._user_id, name)

    def save_session_state(self, session_id: str, *args: Any, **kwargs: Any) -> bool:
        """``SessionManager.save_session_state`` on one of this user's sessions."""
        self._check(session_id)
        return self._manager.save_session_state(session_id, *args, **kwargs)

    def load_session_state(
        self, session_id: str, include_completed: bool = False
    ) -> dict[str, Any] | None:
        """``SessionManager.load_session_state`` on one of this user's sessions."""
        self._check(session_id)
        return self._manager.load_session_state(session_id, include_completed)

    def suspend_session(self, session_id: str) -> bool:
        """``SessionManager.suspend_session`` on one of this user's sessions."""
        self._check(session_id)
        return self._manager.suspend_session(session_id)

    def resume_session(self, session_id: str) -> bool:
        """``SessionManager.resume_session`` on one of this user's sessions."""
        self._check(session_id)
        return self._manager.resume_session(session_id)

    def complete_session(self, session_id: str) -> bool:
        """``SessionManager.complete_session`` on one of this user's sessions."""
        self._check(session_id)
        return self._manager.complete_session(session_id)

    def delete_session(self, session_id: str) -> bool:
        """``SessionManager.delete_session`` on one of this user's sessions."""
        self._check(session_id)
        return self._manager.delete_session(session_id)

    def list_sessions(
        self,
        user_id: str | None = None,
        status: str | None = None,
        mode: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """This user's sessions (``user_id``, if given, must be this user)."""
        self._same_user(user_id)
        return self._manager.list_sessions(self._user_id, status, mode, limit)

    def sessions(
        self,
        user_id: str | None = None,
        status: str | None = None,
        mode: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """``SessionManager.sessions`` of this user (``user_id``, if given, must be this user)."""
        self._same_user(user_id)
        return self._manager.sessions(self._user_id, status, mode, limit)

    def get_session_info(self, session_id: str) -> dict[str, Any] | None:
        """``SessionManager.get_session_info`` on one of this user's sessions."""
        self._check(session_id)
        return self._manager.get_session_info(session_id)

    def phase_hook(self, session_id: str, *args: Any, **kwargs: Any) -> Callable[..., bool]:
        """``SessionManager.phase_hook`` for one of this user's sessions."""
        self._check(session_id)
        return self._manager.phase_hook(session_id, *args, **kwargs)

    # ------------------------------------------------------------------ typed API

    def create(
        self, mode: str, config: dict[str, Any], user_id: str | None = None, name: str | None = None
    ) -> str:
        """``SessionManager.create`` for this user."""
        self._same_user(user_id)
        return self._manager.create(mode, config, self._user_id, name)

    def checkpoint(self, session_id: str, *args: Any, **kwargs: Any) -> int:
        """``SessionManager.checkpoint`` on one of this user's sessions."""
        self._check(session_id)
        return self._manager.checkpoint(session_id, *args, **kwargs)

    def load(self, session_id: str) -> dict[str, Any]:
        """``SessionManager.load`` of one of this user's sessions."""
        self._check(session_id)
        return self._manager.load(session_id)

    def info(self, session_id: str) -> dict[str, Any]:
        """``SessionManager.info`` of one of this user's sessions."""
        self._check(session_id)
        return self._manager.info(session_id)

    def suspend(self, session_id: str) -> int:
        """``SessionManager.suspend`` of one of this user's sessions."""
        self._check(session_id)
        return self._manager.suspend(session_id)

    def resume(self, session_id: str) -> int:
        """``SessionManager.resume`` of one of this user's sessions."""
        self._check(session_id)
        return self._manager.resume(session_id)

    def complete(self, session_id: str) -> int:
        """``SessionManager.complete`` of one of this user's sessions."""
        self._check(session_id)
        return self._manager.complete(session_id)

    def expire(self, session_id: str) -> int:
        """``SessionManager.expire`` of one of this user's sessions."""
        self._check(session_id)
        return self._manager.expire(session_id)

    def delete(self, session_id: str) -> None:
        """``SessionManager.delete`` of one of this user's sessions."""
        self._check(session_id)
        self._manager.delete(session_id)

    # ------------------------------------------------------------------ runtimes

    def runtime(self, session_id: str) -> Any:
        """``SessionManager.runtime`` of one of this user's sessions."""
        self._check(session_id)
        return self._manager.runtime(session_id)

    def run_in_actor(
        self, session_id: str, function: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """``SessionManager.run_in_actor`` on one of this user's sessions."""
        self._check(session_id)
        return self._manager.run_in_actor(session_id, function, *args, **kwargs)

    def discard_runtime(self, session_id: str) -> bool:
        """``SessionManager.discard_runtime`` of one of this user's sessions."""
        self._check(session_id)
        return self._manager.discard_runtime(session_id)

    def unit_of_work(self, session_id: str, **options: Any) -> AbstractContextManager[UnitOfWork]:
        """``SessionManager.unit_of_work`` on one of this user's sessions."""
        self._check(session_id)
        return self._manager.unit_of_work(session_id, **options)

    # ------------------------------------------------------------------ approvals

    def request_approval(self, session_id: str, *args: Any, **kwargs: Any) -> str:
        """``SessionManager.request_approval`` for one of this user's sessions."""
        self._check(session_id)
        return self._manager.request_approval(session_id, *args, **kwargs)

    def resolve_approval(self, approval_id: str, resolution: str, result: Any = None) -> bool:
        """``SessionManager.resolve_approval`` of a request of this user's sessions."""
        self._manager._check_open()
        approval_id = require_str("approval_id", approval_id)
        if self._check_approval(approval_id) is None:
            raise ApprovalNotFound(approval_id)
        return self._manager.resolve_approval(approval_id, resolution, result)

    def get_approval(self, approval_id: str) -> dict[str, Any] | None:
        """``SessionManager.get_approval`` of a request of this user's sessions."""
        self._manager._check_open()
        approval_id = require_str("approval_id", approval_id)
        return self._check_approval(approval_id)

    def list_pending_approvals(self, session_id: str) -> list[dict[str, Any]]:
        """``SessionManager.list_pending_approvals`` of one of this user's sessions."""
        self._check(session_id)
        return self._manager.list_pending_approvals(session_id)

    def wait_for_approval(
        self, approval_id: str, timeout: float | timedelta | None
    ) -> dict[str, Any]:
        """``SessionManager.wait_for_approval`` for a request of this user's sessions."""
        self._owned_approval(approval_id)
        return self._manager.wait_for_approval(approval_id, timeout)

    def _owned_approval(self, approval_id: str) -> dict[str, Any]:
        """This user's request, or ``ApprovalNotFound`` / ``AccessDenied``."""
        approval = self.get_approval(approval_id)
        if approval is None:
            raise ApprovalNotFound(approval_id)
        return approval

    # ------------------------------------------------------------------ async twins

    async def _in_thread(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await self._manager._in_thread(method, *args, **kwargs)

    async def acreate_session(self, *args: Any, **kwargs: Any) -> str:
        """Async twin of ``create_session``."""
        result: str = await self._in_thread(self.create_session, *args, **kwargs)
        return result

    async def asave_session_state(self, *args: Any, **kwargs: Any) -> bool:
        """Async twin of ``save_session_state``."""
        result: bool = await self._in_thread(self.save_session_state, *args, **kwargs)
        return result

    async def aload_session_state(
        self, session_id: str, include_completed: bool = False
    ) -> dict[str, Any] | None:
        """Async twin of ``load_session_state``."""
        result: dict[str, Any] | None = await self._in_thread(
            self.load_session_state, session_id, include_completed
        )
        return result

    async def asuspend_session(self, session_id: str) -> bool:
        """Async twin of ``suspend_session``."""
        result: bool = await self._in_thread(self.suspend_session, session_id)
        return result

    async def aresume_session(self, session_id: str) -> bool:
        """Async twin of ``resume_session``."""
        result: bool = await self._in_thread(self.resume_session, session_id)
        return result

    async def adiscard_runtime(self, session_id: str) -> bool:
        """Async twin of ``discard_runtime``."""
        result: bool = await self._in_thread(self.discard_runtime, session_id)
        return result

    async def acomplete_session(self, session_id: str) -> bool:
        """Async twin of ``complete_session``."""
        result: bool = await self._in_thread(self.complete_session, session_id)
        return result

    async def adelete_session(self, session_id: str) -> bool:
        """Async twin of ``delete_session``."""
        result: bool = await self._in_thread(self.delete_session, session_id)
        return result

    async def alist_sessions(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """Async twin of ``list_sessions``."""
        result: list[dict[str, Any]] = await self._in_thread(self.list_sessions, *args, **kwargs)
        return result

    async def aget_session_info(self, session_id: str) -> dict[str, Any] | None:
        """Async twin of ``get_session_info``."""
        result: dict[str, Any] | None = await self._in_thread(self.get_session_info, session_id)
        return result

    async def asessions(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """Async twin of ``sessions``."""
        result: list[dict[str, Any]] = await self._in_thread(self.sessions, *args, **kwargs)
        return result

    async def acheckpoint(self, *args: Any, **kwargs: Any) -> int:
        """Async twin of ``checkpoint``."""
        result: int = await self._in_thread(self.checkpoint, *args, **kwargs)
        return result

    async def aload(self, session_id: str) -> dict[str, Any]:
        """Async twin of ``load``."""
        result: dict[str, Any] = await self._in_thread(self.load, session_id)
        return result

    async def aruntime(self, session_id: str) -> Any:
        """Async twin of ``runtime``."""
        return await self._in_thread(self.runtime, session_id)

    async def arun_in_actor(self, *args: Any, **kwargs: Any) -> Any:
        """Async twin of ``run_in_actor``."""
        return await self._in_thread(self.run_in_actor, *args, **kwargs)

    def aunit_of_work(
        self, session_id: str, **options: Any
    ) -> AbstractAsyncContextManager[UnitOfWork]:
        """Async twin of ``unit_of_work`` (the owner check runs when it is entered)."""
        return _CheckedAsyncWork(self, session_id, options)

    async def arequest_approval(self, *args: Any, **kwargs: Any) -> str:
        """Async twin of ``request_approval``."""
        result: str = await self._in_thread(self.request_approval, *args, **kwargs)
        return result

    async def aresolve_approval(self, *args: Any, **kwargs: Any) -> bool:
        """Async twin of ``resolve_approval``."""
        result: bool = await self._in_thread(self.resolve_approval, *args, **kwargs)
        return result

    async def aget_approval(self, approval_id: str) -> dict[str, Any] | None:
        """Async twin of ``get_approval``."""
        result: dict[str, Any] | None = await self._in_thread(self.get_approval, approval_id)
        return result

    async def await_for_approval(
        self, approval_id: str, timeout: float | timedelta | None
    ) -> dict[str, Any]:
        """Async twin of ``wait_for_approval``."""
        await self._in_thread(self._owned_approval, approval_id)
        return await self._manager.await_for_approval(approval_id, timeout)


class _CheckedAsyncWork(AbstractAsyncContextManager["UnitOfWork"]):
    """``aunit_of_work`` of a scope: check the owner off the loop, then enter the manager's."""

    def __init__(self, scope: UserScope, session_id: str, options: dict[str, Any]) -> None:
        self._scope = scope
        self._session_id = session_id
        self._options = options
        self._inner: AbstractAsyncContextManager[UnitOfWork] | None = None

    async def __aenter__(self) -> UnitOfWork:
        scope = self._scope
        await scope._in_thread(scope._check, self._session_id)
        manager = scope._manager
        self._inner = manager.aunit_of_work(self._session_id, **self._options)
        return await self._inner.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._inner is not None  # noqa: S101 - set by __aenter__
        return await self._inner.__aexit__(*exc_info)
