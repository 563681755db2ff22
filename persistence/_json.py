"""Strict JSON validation and encoding of session data.

Everything stored is plain JSON: dicts with ``str`` keys, lists, ``str``, ``int``, finite
``float``, ``bool`` and ``None``. Anything else (tuples, sets, bytes, datetimes, NaN,
cycles, lone surrogates) is refused with :class:`NotSerializable` naming the offending
path, so that what is loaded back always equals what was saved.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from persistence._errors import NotSerializable, PayloadTooLarge, SessionSupervisorError

MAX_DEPTH = 100

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_DECODER = json.JSONDecoder()


def check(value: Any, path: str = "$") -> None:
    """Raise :class:`NotSerializable` unless ``value`` is plain, finite, acyclic JSON."""
    _check(value, path, 0, set())


def unreadable(path: str, error: BaseException) -> NotSerializable:
    """The error for a value whose own methods raised while it was read (a hostile subclass)."""
    return NotSerializable(path, f"reading it raised {type(error).__name__}: {error}")


def _key_text(key: Any) -> str:
    try:
        return repr(key)
    except Exception:  # noqa: BLE001 - a key whose __repr__ raises is named by its type
        return f"<{type(key).__name__}>"


def _check_str(value: str, path: str) -> None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise NotSerializable(path, f"invalid unicode ({exc.reason})") from None


#: Ints this wide always convert to text (Python allows at least 640 digits, 4300 by default).
_SAFE_INT_BITS = 2000


def _check_int_digits(value: int, path: str) -> None:
    try:
        str(value)
    except ValueError:
        limit = sys.get_int_max_str_digits()
        raise NotSerializable(path, f"an int of more than {limit} digits") from None


def _check(value: Any, path: str, depth: int, seen: set[int]) -> None:
    if value is None or value is True or value is False:
        return
    if isinstance(value, str):
        _check_str(value, path)
        return
    if isinstance(value, int):
        if value.bit_length() > _SAFE_INT_BITS:
            _check_int_digits(value, path)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotSerializable(path, f"{value!r} is not a finite number")
        return
    if depth >= MAX_DEPTH:
        raise NotSerializable(path, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict | list):
        marker = id(value)
        if marker in seen:
            raise NotSerializable(path, "it contains itself (a cycle)")
        seen.add(marker)
        try:
            _check_items(value, path, depth, seen)
        except SessionSupervisorError:  # NotSerializable, PayloadTooLarge
            raise
        except Exception as exc:  # its own methods raised (items, __iter__, __eq__ ...)
            raise unreadable(path, exc) from exc
        seen.discard(marker)
        return
    hint = " (use a list)" if isinstance(value, tuple) else ""
    raise NotSerializable(path, f"a {type(value).__name__} is not JSON{hint}")


def _check_items(value: dict[Any, Any] | list[Any], path: str, depth: int, seen: set[int]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                name = _key_text(key)
                raise NotSerializable(
                    f"{path}[{name}]", f"key {name} is a {type(key).__name__}, not str"
                )
            _check_str(key, f"{path}.{key}")
            _check(item, f"{path}.{key}", depth + 1, seen)
    else:
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1, seen)


def _faithful_text(value: Any) -> str | None:
    """``value``'s JSON text if C-speed checks prove it plain JSON, else ``None``.

    The encoder refuses what JSON cannot hold (NaN, infinities, cycles, unknown types,
    ints too long for text); what it would silently change instead (tuples, non-``str``
    keys, colliding keys) makes the text decode to something unequal to ``value``. Lone
    surrogates survive a round trip, so the text must also be valid UTF-8; and the count of
    brackets (in strings too) bounds the nesting depth from above. ``None`` only means
    "not proven": :func:`check` then finds the precise fault.
    """
    try:
        text = _ENCODER.encode(value)
    except Exception:  # noqa: BLE001 - anything not plain JSON, hostile subclasses too
        return None
    if text.count("[") + text.count("{") > MAX_DEPTH:
        return None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return None
    try:
        if _DECODER.decode(text) != value:
            return None
    except Exception:  # noqa: BLE001 - a hostile __eq__: let check() have a closer look
        return None
    return text


def encode(value: Any, path: str = "$", limit: int | None = None) -> str:
    """Validate ``value`` and return its compact JSON text.

    Raises:
        NotSerializable: the value is not plain JSON.
        PayloadTooLarge: the text is longer than ``limit`` bytes.
    """
    text = _faithful_text(value)
    if text is None:
        check(value, path)  # raises, naming the offending path
        try:
            text = _ENCODER.encode(value)  # plain after all (e.g. deeply nested brackets)
        except Exception as exc:  # raised by the value's own methods
            raise unreadable(path, exc) from exc
    if limit is not None:
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
        if size > limit:
            raise PayloadTooLarge(path, size, limit)
    return text


def decode(text: str | None) -> Any:
    """Decode JSON text written by :func:`encode` (``None`` stays ``None``)."""
    if text is None:
        return None
    return _DECODER.decode(text)


def clone(value: Any) -> Any:
    """Return a deep copy of plain JSON data, detached from the caller's objects."""
    return _DECODER.decode(_ENCODER.encode(value))
