"""Hostile input: each case gets a clear typed error or is stored faithfully.

On a refusal nothing stored changes: the full loaded state, summary and version of the
session (and the number of sessions) are compared before and after. Every case runs on
SQLite and on PostgreSQL, against one manager per backend for the module (so the 70-odd
cases cost milliseconds each), with ``max_message_bytes=4096`` and ``max_state_bytes=65536``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from actors import (
    ApprovalNotFound,
    InvalidArgument,
    NotSerializable,
    PayloadTooLarge,
    SessionManager,
    SessionNotFound,
    SessionSupervisorError,
    StaleSession,
    create_session_manager,
)
from tests.conftest import _pg_admin, history
from tests.robustness._support import snapshot

MESSAGE_LIMIT = 4096
STATE_LIMIT = 65536
SQL = "'; DROP TABLE session_states; --"
Payload = tuple[Any, Any, Any, Any, Any]


@pytest.fixture(autouse=True)
def _stop_every_actor() -> None:
    """Overrides the suite's per-test actor cleanup: the managers here live for the module."""


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def hostile_manager(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SessionManager]:
    """One manager per backend for every case of the module, with small size limits."""
    database = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('hostile') / 'h.db'}"
    else:
        admin = request.getfixturevalue("pg_server")
        database = f"ss_test_{uuid.uuid4().hex[:12]}"
        _pg_admin(f'CREATE DATABASE "{database}"')
        host = admin.split("@", 1)[1].rsplit("/", 1)[0]
        url = f"postgresql+asyncpg://postgres@{host}/{database}"
    manager = create_session_manager(
        url, max_message_bytes=MESSAGE_LIMIT, max_state_bytes=STATE_LIMIT, call_timeout=10
    )
    try:
        yield manager
    finally:
        manager.close()
        if database is not None:
            _pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture
def session(hostile_manager: SessionManager) -> str:
    """A session with some history, context and plan, saved once."""
    session_id = hostile_manager.create_session("copilot", {"model": "m"}, user_id="u")
    assert hostile_manager.save_session_state(
        session_id, history(4), {"k": [1, 2]}, "execution", 2, {"plan": "p"}
    )
    return session_id


def _count(manager: SessionManager) -> int:
    return len(manager.list_sessions(limit=100_000))


# ---------------------------------------------------------------------------- refused saves


def _cycle_dict() -> dict[str, Any]:
    value: dict[str, Any] = {"a": 1}
    value["self"] = {"again": value}
    return value


def _cycle_list() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def _save(
    history_: Any = None,
    context: Any = None,
    phase: Any = "p",
    step: Any = 1,
    plan: Any = None,
) -> Callable[[], Payload]:
    def build() -> Payload:
        return (
            history(2) if history_ is None else history_(),
            {} if context is None else context(),
            phase,
            step,
            plan() if plan is not None else None,
        )

    return build


def _msg(**fields: Any) -> Callable[[], list[Any]]:
    return lambda: [*history(2), {"role": "user", **fields}]


class _Raises(RuntimeError):
    """What the hostile subclasses below raise when read."""


class _ItemsRaise(dict[str, Any]):
    """A dict whose items() raises: a caller's own broken mapping."""

    def items(self) -> Any:
        raise _Raises("items() is broken")


class _IterRaises(list[Any]):
    """A list whose iteration and length raise."""

    def __iter__(self) -> Any:
        raise _Raises("__iter__ is broken")

    def __len__(self) -> int:
        raise _Raises("__len__ is broken")


class _EqRaises(str):
    """A str whose comparison raises (met when the stored prefix is compared)."""

    __hash__ = str.__hash__

    def __eq__(self, other: object) -> bool:
        raise _Raises("__eq__ is broken")


class _ReprRaises:
    """A dict key whose repr raises."""

    def __repr__(self) -> str:
        raise _Raises("__repr__ is broken")


def _prefix_with_hostile_eq() -> list[Any]:
    # The session's stored history is history(4): a same-length prefix whose first message
    # compares by raising, then a new message.
    stored = history(4)
    stored[0] = {key: _EqRaises(value) for key, value in stored[0].items()}
    return [*stored, {"role": "user", "content": "new"}]


REFUSED_SAVES: dict[str, tuple[Callable[[], Payload], type[Exception]]] = {
    "history-not-a-list": (_save(history_=lambda: {"role": "user"}), InvalidArgument),
    "history-is-a-string": (_save(history_=lambda: "hello"), InvalidArgument),
    "history-is-none": (lambda: (None, {}, "p", 1, None), InvalidArgument),
    "message-not-a-dict": (_save(history_=lambda: [*history(2), "hi"]), NotSerializable),
    "message-is-a-list": (_save(history_=lambda: [["role", "user"]]), NotSerializable),
    "context-not-a-dict": (_save(context=lambda: [1, 2]), InvalidArgument),
    # A context (or phase) of None keeps the stored one: tests/actors/test_callers.py
    "context-set": (_save(context=lambda: {"s": {1, 2}}), NotSerializable),
    "context-bytes": (_save(context=lambda: {"b": b"\x00\x01"}), NotSerializable),
    "context-datetime": (_save(context=lambda: {"t": dt.datetime.now(dt.UTC)}), NotSerializable),
    "context-decimal": (_save(context=lambda: {"d": Decimal("1.1")}), NotSerializable),
    "context-tuple": (_save(context=lambda: {"t": (1, 2)}), NotSerializable),
    "context-object": (_save(context=lambda: {"o": object()}), NotSerializable),
    "context-function": (_save(context=lambda: {"f": print}), NotSerializable),
    "context-cycle": (_save(context=_cycle_dict), NotSerializable),
    "message-cycle": (_save(history_=lambda: [{"role": "u", "x": _cycle_list()}]), NotSerializable),
    "plan-cycle": (_save(plan=_cycle_dict), NotSerializable),
    "context-nan": (_save(context=lambda: {"x": float("nan")}), NotSerializable),
    "context-inf": (_save(context=lambda: {"x": [1.0, float("inf")]}), NotSerializable),
    "plan-minus-inf": (_save(plan=lambda: {"x": float("-inf")}), NotSerializable),
    "message-nan": (_save(history_=_msg(score=float("nan"))), NotSerializable),
    "context-int-key": (_save(context=lambda: {1: "one"}), NotSerializable),
    "context-none-key": (_save(context=lambda: {"a": {None: 1}}), NotSerializable),
    "message-tuple-key": (_save(history_=_msg(x={(1, 2): 3})), NotSerializable),
    "context-lone-surrogate": (_save(context=lambda: {"s": "a\ud800b"}), NotSerializable),
    "message-lone-surrogate": (_save(history_=_msg(content="\udfff")), NotSerializable),
    "key-lone-surrogate": (_save(context=lambda: {"\ud83d": 1}), NotSerializable),
    "phase-lone-surrogate": (_save(phase="p\ud800"), InvalidArgument),
    "too-deep": (_save(context=lambda: {"d": _deep(200)}), NotSerializable),
    "huge-int-digits": (_save(context=lambda: {"n": 10**5000}), NotSerializable),
    "message-over-limit": (
        _save(history_=_msg(content="x" * (MESSAGE_LIMIT + 1))),
        PayloadTooLarge,
    ),
    "message-extra-over-limit": (
        _save(history_=_msg(blob=["y" * 100] * 50)),
        PayloadTooLarge,
    ),
    "unicode-message-over-limit": (
        _save(history_=_msg(content="é" * (MESSAGE_LIMIT // 2 + 1))),
        PayloadTooLarge,
    ),
    "context-over-limit": (_save(context=lambda: {"big": "z" * STATE_LIMIT}), PayloadTooLarge),
    "plan-over-limit": (_save(plan=lambda: {"big": ["z" * 1000] * 70}), PayloadTooLarge),
    "phase-not-a-str": (_save(phase=3), InvalidArgument),
    "phase-with-nul": (_save(phase="exec\x00ution"), InvalidArgument),
    "phase-too-long": (_save(phase="p" * 300), InvalidArgument),
    "step-a-str": (_save(step="3"), InvalidArgument),
    "step-a-float": (_save(step=3.0), InvalidArgument),
    "step-a-bool": (_save(step=True), InvalidArgument),
    "step-huge": (_save(step=2**63), InvalidArgument),
    "plan-not-a-dict-of-json": (_save(plan=lambda: {"p": {1, 2}}), NotSerializable),
    "message-items-raise": (
        _save(history_=lambda: [*history(4), _ItemsRaise(role="user")]),
        NotSerializable,
    ),
    "history-iteration-raises": (_save(history_=lambda: _IterRaises(history(5))), NotSerializable),
    "context-items-raise": (_save(context=lambda: _ItemsRaise(a=1)), NotSerializable),
    "stored-prefix-eq-raises": (_save(history_=_prefix_with_hostile_eq), NotSerializable),
    "key-repr-raises": (_save(context=lambda: {"a": {_ReprRaises(): 1}}), NotSerializable),
}


class TestRefusedSaves:
    """Saves with bad values: a typed error, the seed façade's False, nothing changed."""

    @pytest.mark.parametrize("case", list(REFUSED_SAVES))
    def test_refused_save_changes_nothing(
        self, hostile_manager: SessionManager, session: str, case: str
    ) -> None:
        """The typed API raises the named error, the seed façade returns False; nothing changes."""
        build, error = REFUSED_SAVES[case]
        before = snapshot(hostile_manager, session)
        crashes = hostile_manager.stats()["crashes"]
        with pytest.raises(error) as raised:
            hostile_manager.checkpoint(session, *build())
        assert isinstance(raised.value, SessionSupervisorError)
        assert str(raised.value)  # a message that says what is wrong
        assert hostile_manager.save_session_state(session, *build()) is False
        assert snapshot(hostile_manager, session) == before
        live = hostile_manager.live(session)
        assert (live.version, live.message_count) == (before["state"]["version"], 4)
        assert hostile_manager.stats()["crashes"] == crashes  # a refusal, not a crash


# ---------------------------------------------------------------------------- stored faithfully


def _stored(**fields: Any) -> Callable[[], Payload]:
    return _save(history_=lambda: [*history(2), {"role": "user", **fields}])


FAITHFUL_SAVES: dict[str, Callable[[], Payload]] = {
    "sql-in-content": _stored(content=SQL),
    "sql-in-context-and-phase": _save(context=lambda: {SQL: SQL}, phase=SQL),
    "sql-in-role-and-agent": _stored(role=SQL, agent=SQL),
    "nul-in-content": _stored(content="before\x00after"),
    "nul-in-context-key-and-value": _save(context=lambda: {"k\x00": "v\x00"}),
    "nul-in-role": _stored(role="us\x00er"),
    "emoji-rtl-combining": _stored(content="👩‍💻 مرحبا e\u0301 \u200b 中文 \U0010ffff"),
    "unicode-keys": _save(context=lambda: {"ключ": {"鍵": "🔑"}}),
    "control-characters": _stored(content="\x01\x02\x1b[31mred\x1b[0m\r\n\t\x7f"),
    "big-int-in-range": _save(context=lambda: {"n": 2**200, "m": -(10**300)}),
    "float-edges": _save(context=lambda: {"a": -0.0, "b": 1e308, "c": 5e-324, "d": 0.1}),
    "empty-strings": _save(context=lambda: {"": ""}, phase=""),
    "column-names-with-other-types": _stored(content=None, agent=5, timestamp=[1], extra={}),
    "long-role-and-timestamp": _stored(role="r" * 200, timestamp="t" * 100, agent="a" * 300),
    "dotted-and-bracket-keys": _save(context=lambda: {"a.b[0]": {"$ref": "#/x", "__proto__": 1}}),
    "message-at-the-limit": _stored(content="x" * (MESSAGE_LIMIT - 200)),
    "deep-but-allowed": _save(context=lambda: {"d": _deep(90)}),
    "step-extremes": _save(step=-(2**31)),
    "step-none": _save(step=None),
    "json-looking-strings": _stored(content='{"role": "system"}', extra='"\\u0000"'),
}


class TestStoredFaithfully:
    """Hostile-looking but valid values: loaded back exactly as saved."""

    @pytest.mark.parametrize("case", list(FAITHFUL_SAVES))
    def test_stored_faithfully(
        self, hostile_manager: SessionManager, session: str, case: str
    ) -> None:
        """What is loaded back equals what was saved, exactly, on this backend."""
        saved_history, context, phase, step, plan = FAITHFUL_SAVES[case]()
        assert hostile_manager.save_session_state(
            session, saved_history, context, phase, step, plan
        )
        state = hostile_manager.load(session)
        assert state["conversation_history"] == saved_history
        assert state["context_variables"] == context
        assert (state["current_phase"], state["current_step"]) == (phase, step)
        if plan is not None:
            assert state["plan_data"] == plan
        # And the next save, an append, still sees the history as it is.
        longer = [*saved_history, {"role": "assistant", "content": "next"}]
        assert hostile_manager.save_session_state(session, longer, context, phase, step)
        assert hostile_manager.load(session)["conversation_history"] == longer


# ---------------------------------------------------------------------------- ids and others

BAD_IDS: dict[str, tuple[Any, type[Exception]]] = {
    "empty": ("", InvalidArgument),
    "none": (None, InvalidArgument),
    "int": (123, InvalidArgument),
    "bytes": (b"abc", InvalidArgument),
    "list": (["a"], InvalidArgument),
    "nul": ("abc\x00def", InvalidArgument),
    "lone-surrogate": ("\ud800", InvalidArgument),
    "very-long": ("x" * 10_000, InvalidArgument),
    "unknown-uuid": (str(uuid.uuid4()), SessionNotFound),
    "not-a-uuid": ("not-a-session", SessionNotFound),
    "sql": (SQL, SessionNotFound),
    "sql-like-wildcard": ("%", SessionNotFound),
    "unicode": ("séssion-🙂", SessionNotFound),
}


class TestSessionIds:
    """Malformed and unknown session ids, on every call that takes one."""

    @pytest.mark.parametrize("case", list(BAD_IDS))
    def test_bad_session_id_everywhere(
        self, hostile_manager: SessionManager, session: str, case: str
    ) -> None:
        """Every call taking a session id refuses a malformed or unknown one, typed; seed: falsy."""
        bad, error = BAD_IDS[case]
        before, count = snapshot(hostile_manager, session), _count(hostile_manager)
        calls: list[Callable[[], Any]] = [
            lambda: hostile_manager.checkpoint(bad, history(2), {}, "p"),
            lambda: hostile_manager.load(bad),
            lambda: hostile_manager.info(bad),
            lambda: hostile_manager.suspend(bad),
            lambda: hostile_manager.resume(bad),
            lambda: hostile_manager.complete(bad),
            lambda: hostile_manager.delete(bad),
            lambda: hostile_manager.live(bad),
            lambda: hostile_manager.request_approval(bad, "plan", {}),
        ]
        for call in calls:
            with pytest.raises(error):
                call()
        assert hostile_manager.save_session_state(bad, history(2), {}, "p") is False
        assert hostile_manager.load_session_state(bad) is None
        assert hostile_manager.get_session_info(bad) is None
        assert hostile_manager.suspend_session(bad) is False
        assert hostile_manager.resume_session(bad) is False
        assert hostile_manager.complete_session(bad) is False
        assert hostile_manager.delete_session(bad) is False
        assert snapshot(hostile_manager, session) == before
        assert _count(hostile_manager) == count

    def test_a_str_subclass_id_is_the_same_session(
        self, hostile_manager: SessionManager, session: str
    ) -> None:
        """An id that is a str subclass with its own hash and equality names the same session.

        It is used as a plain str, so it reaches the session's one live actor: no second
        actor, no lease refusal for the genuine id afterwards.
        """

        class OddId(str):
            __slots__ = ()

            def __hash__(self) -> int:
                return 7

            def __eq__(self, other: object) -> bool:
                return False

        odd = OddId(session)
        longer = [*history(4), {"role": "user", "content": "via the odd id"}]
        assert hostile_manager.save_session_state(odd, longer, {}, "p", 3)
        assert hostile_manager.save_session_state(session, [*longer, *history(1)], {}, "p", 4)
        assert hostile_manager.load(odd)["current_step"] == 4
        assert hostile_manager.stats()["lease_takeovers"] == 0

    @pytest.mark.parametrize("bad", [123, "\x00", "\ud800", ["a"], b"s"])
    def test_list_connections_refuses_a_bad_session_id(
        self, hostile_manager: SessionManager, bad: Any
    ) -> None:
        """A malformed session id is InvalidArgument, not a database error."""
        with pytest.raises(InvalidArgument):
            hostile_manager.list_connections(bad)


CREATE_REFUSED: dict[str, tuple[tuple[Any, ...], type[Exception]]] = {
    "mode-none": ((None, {}), InvalidArgument),
    "mode-int": ((5, {}), InvalidArgument),
    "mode-nul": (("co\x00pilot", {}), InvalidArgument),
    "mode-too-long": (("m" * 65, {}), InvalidArgument),
    "config-list": (("copilot", [1]), InvalidArgument),
    "config-nan": (("copilot", {"t": float("nan")}), NotSerializable),
    "config-cycle": (("copilot", _cycle_dict()), NotSerializable),
    "config-over-limit": (("copilot", {"x": "y" * STATE_LIMIT}), PayloadTooLarge),
    "user-id-int": (("copilot", {}, 7), InvalidArgument),
    "name-too-long": (("copilot", {}, None, "n" * 300), InvalidArgument),
    "name-surrogate": (("copilot", {}, None, "\udc80"), InvalidArgument),
}


class TestCreate:
    """create_session with bad and with hostile-but-valid arguments."""

    @pytest.mark.parametrize("case", list(CREATE_REFUSED))
    def test_refused_create_adds_nothing(self, hostile_manager: SessionManager, case: str) -> None:
        """A refused create_session raises the typed error and no session appears."""
        args, error = CREATE_REFUSED[case]
        count = _count(hostile_manager)
        with pytest.raises(error):
            hostile_manager.create_session(*args)
        assert _count(hostile_manager) == count

    def test_create_with_hostile_but_valid_text(self, hostile_manager: SessionManager) -> None:
        """SQL, NUL-free unicode and limits-sized names are stored as given."""
        session_id = hostile_manager.create_session(
            "m" * 64, {SQL: "👩‍💻\x00"}, user_id=SQL, name="ñ" * 255
        )
        info = hostile_manager.get_session_info(session_id)
        assert info is not None
        assert (info["mode"], info["user_id"], info["name"]) == ("m" * 64, SQL, "ñ" * 255)
        assert info["config"] == {SQL: "👩‍💻\x00"}
        assert [s["session_id"] for s in hostile_manager.list_sessions(user_id=SQL)] == [session_id]


class TestListing:
    """Listing with extreme arguments."""

    @pytest.mark.parametrize("limit", [2**31, 2**63, 10**20])
    def test_list_sessions_with_a_huge_limit_lists_them_all(
        self, hostile_manager: SessionManager, session: str, limit: int
    ) -> None:
        """A limit wider than the databases' integers means all, not a silent empty list."""
        listed = hostile_manager.list_sessions(limit=limit)
        assert session in {row["session_id"] for row in listed}
        assert len(listed) == _count(hostile_manager)


class TestApprovals:
    """Approval requests and answers with bad and hostile values."""

    def test_hostile_approvals(self, hostile_manager: SessionManager, session: str) -> None:
        """Approval calls refuse bad input typed, and store hostile-but-valid text faithfully."""
        before = snapshot(hostile_manager, session)
        with pytest.raises(NotSerializable):
            hostile_manager.request_approval(session, "plan", {"x": float("nan")})
        with pytest.raises(InvalidArgument):
            hostile_manager.request_approval(session, "t" * 65, {})
        timeouts: tuple[Any, ...] = (
            float("nan"), float("inf"), -1, 0, 10**400, 1e300, dt.timedelta.max, "5"
        )  # fmt: skip
        for timeout in timeouts:
            with pytest.raises(InvalidArgument):
                hostile_manager.request_approval(session, "plan", {}, timeout=timeout)
        assert hostile_manager.list_pending_approvals(session) == []
        approval = hostile_manager.request_approval(session, SQL[:60], {SQL: "\x00"})
        with pytest.raises(InvalidArgument):
            hostile_manager.resolve_approval(approval, "maybe")
        with pytest.raises(NotSerializable):
            hostile_manager.resolve_approval(approval, "approved", {"r": {1}})
        with pytest.raises(ApprovalNotFound):
            hostile_manager.resolve_approval(str(uuid.uuid4()), "approved")
        assert hostile_manager.resolve_approval(approval, "modified", {"edited": SQL})
        record = hostile_manager.get_approval(approval)
        assert record is not None
        assert (record["approval_type"], record["context"]) == (SQL[:60], {SQL: "\x00"})
        assert record["result"] == {"edited": SQL}
        assert snapshot(hostile_manager, session) == before


# ---------------------------------------------------------------------------- concurrency


class TestConcurrentSaves:
    """Many saves of one session at the same time."""

    def test_concurrent_saves_on_one_session(
        self, hostile_manager: SessionManager, session: str
    ) -> None:
        """32 threads save one session at once: each gets a version, and the last one is stored."""
        start_version = hostile_manager.load(session)["version"]
        results: dict[int, int] = {}
        errors: list[BaseException] = []
        barrier = threading.Barrier(32)

        def save(n: int) -> None:
            barrier.wait(10)
            try:
                results[n] = hostile_manager.checkpoint(
                    session, history(n % 7 + 1, start=n), {"n": n}, f"phase-{n}", n
                )
            except StaleSession as error:  # a clear, typed refusal is allowed; nothing else
                errors.append(error)

        threads = [threading.Thread(target=save, args=(n,)) for n in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors, errors
        versions = sorted(results.values())
        assert versions == list(range(start_version + 1, start_version + 33))
        last = max(results, key=results.__getitem__)
        state = hostile_manager.load(session)
        assert state["version"] == start_version + 32
        assert state["conversation_history"] == history(last % 7 + 1, start=last)
        assert (state["context_variables"], state["current_step"]) == ({"n": last}, last)

    def test_concurrent_async_saves_on_one_session(
        self, hostile_manager: SessionManager, session: str
    ) -> None:
        """The async twins from one event loop: same guarantees as threads."""

        async def run() -> dict[int, int]:
            async def one(n: int) -> tuple[int, int]:
                ok = await hostile_manager.asave_session_state(
                    session, history(3, start=n), {"n": n}, "p", n
                )
                assert ok
                return n, hostile_manager.load(session)["version"]

            return dict(await asyncio.gather(*(one(n) for n in range(16))))

        start_version = hostile_manager.load(session)["version"]
        asyncio.run(run())
        state = hostile_manager.load(session)
        assert state["version"] == start_version + 16
        n = state["current_step"]
        assert state["conversation_history"] == history(3, start=n)
        assert state["context_variables"] == {"n": n}
