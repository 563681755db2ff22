"""Strict JSON: what is stored is what comes back, or a typed error names the culprit."""

from __future__ import annotations

import math
from typing import Any

import pytest

from persistence import NotSerializable, PayloadTooLarge, _json, decode_message, encode_message


def _cyclic() -> dict[str, Any]:
    value: dict[str, Any] = {"a": []}
    value["a"].append(value)
    return value


class TestValidation:
    """Anything that would not round-trip exactly is refused with its path."""

    @pytest.mark.parametrize(
        ("value", "path"),
        [
            ({"t": (1, 2)}, "$.t"),
            ({"s": {1, 2}}, "$.s"),
            ({"b": b"x"}, "$.b"),
            ({"n": math.nan}, "$.n"),
            ({"i": [1, math.inf]}, "$.i[1]"),
            ({1: "int key"}, "$[1]"),
            ({"o": object()}, "$.o"),
            ({"u": "\ud800"}, "$.u"),
            (_cyclic(), "$.a[0]"),
            ({"k": {1: "a", "1": "b"}}, "$.k[1]"),
            ({True: "bool key"}, "$[True]"),
            ({"x": [{"\udfff": 1}]}, "$.x[0].\udfff"),
            ({"deep": [[(1,)]]}, "$.deep[0][0]"),
        ],
    )
    def test_refused_with_path(self, value: Any, path: str) -> None:
        """The error's path points at the offending part."""
        with pytest.raises(NotSerializable) as caught:
            _json.encode(value)
        assert caught.value.path == path

    def test_depth_limit(self) -> None:
        """Nesting deeper than the limit is refused before it could break a reader."""
        value: Any = "leaf"
        for _ in range(_json.MAX_DEPTH + 5):
            value = [value]
        with pytest.raises(NotSerializable, match="nested deeper"):
            _json.encode(value)

    def test_exactly_at_the_depth_limit_is_stored(self) -> None:
        """The limit refuses deeper nesting only, and brackets inside strings are not nesting."""
        value: Any = "[[[{{{" * 50
        for _ in range(_json.MAX_DEPTH):
            value = [value]
        assert _json.decode(_json.encode(value)) == value

    def test_size_limit_counts_utf8_bytes(self) -> None:
        """The limit is in bytes of the encoded JSON."""
        assert _json.encode("é" * 10, limit=22) == '"' + "é" * 10 + '"'
        with pytest.raises(PayloadTooLarge):
            _json.encode("é" * 10, limit=21)

    @pytest.mark.parametrize(
        "value",
        [
            {"nested": {"list": [1, 2.5, True, None, "x"]}},
            {"unicode": "héllo ✓ 🎉", "nul": "a\x00b", "sql": "'; DROP TABLE sessions; --"},
            {"big": 2**80, "neg": -1.5e-300},
        ],
    )
    def test_round_trip(self, value: Any) -> None:
        """Plain JSON comes back equal."""
        assert _json.decode(_json.encode(value)) == value


class TestMessageCodec:
    """Messages are split into columns and rebuilt equal."""

    @pytest.mark.parametrize(
        "message",
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
            {"role": "tool", "agent": "planner", "content": "x\x00y", "timestamp": "t"},
            {"content": ["part", {"type": "image"}], "role": 5},
            {},
        ],
    )
    def test_round_trip(self, message: dict[str, Any]) -> None:
        """decode(encode(m)) == m for every shape of message."""
        assert decode_message(encode_message(message, "$", None)) == message

    def test_non_dict_message_is_refused(self) -> None:
        """A message must be an object."""
        with pytest.raises(NotSerializable, match="must be a dict"):
            encode_message(["role", "user"], "history[3]", None)

    def test_lone_surrogate_in_a_column_is_refused_by_path(self) -> None:
        """A column string that is not valid UTF-8 is refused, naming its key."""
        with pytest.raises(NotSerializable, match=r"history\[2\]\.content.*invalid unicode"):
            encode_message({"role": "user", "content": "ok \ud800"}, "history[2]", None)

    def test_column_sizes_count_utf8_bytes(self) -> None:
        """The limit counts a column's UTF-8 bytes, not its characters."""
        message = {"content": "é" * 10}  # 20 bytes
        assert encode_message(message, "history[0]", 20)[2] == "é" * 10
        with pytest.raises(PayloadTooLarge):
            encode_message(message, "history[0]", 19)

    def test_too_wide_or_non_string_values_go_to_extra(self) -> None:
        """Values a column cannot hold (too wide, NUL, not str) round-trip through extra."""
        message = {"role": "r" * 65, "agent": "a\x00", "timestamp": 5, "content": "c"}
        row = encode_message(message, "$", None)
        assert row[:4] == (None, None, "c", None)
        assert decode_message(row) == message

    def test_oversized_message_is_refused(self) -> None:
        """max_message_bytes applies to the whole message."""
        with pytest.raises(PayloadTooLarge):
            encode_message({"role": "user", "content": "x" * 100}, "history[0]", 50)
