"""The value rules every way into the store shares: the façade's arguments and an import.

:mod:`actors._validate` applies them to the API's arguments and :mod:`persistence._import`
to an imported document, so that a value one refuses the other refuses too, on both
backends: a text must fit its column (SQLite would store a longer one, PostgreSQL
refuses it), carry no NUL (PostgreSQL's text cannot) and be valid unicode; an integer
column is 32 bits wide (PostgreSQL's ``integer``).
"""

from __future__ import annotations

from typing import Any

from persistence._errors import InvalidArgument

#: The range of an ``Integer`` column (PostgreSQL's 32-bit ``integer``).
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def check_text(name: str, value: str, *, allow_empty: bool, max_length: int) -> str:
    """``value`` (a ``str``) if it fits a column of ``max_length`` characters, else raise.

    Raises:
        InvalidArgument: empty (unless ``allow_empty``), too long, a NUL character, or not
            valid unicode (a lone surrogate).
    """
    if not value and not allow_empty:
        raise InvalidArgument(f"{name} must not be empty")
    if len(value) > max_length:
        raise InvalidArgument(f"{name} is {len(value)} characters long; at most {max_length}")
    if "\x00" in value:
        raise InvalidArgument(f"{name} must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument(f"{name} is not valid unicode") from None
    return value


def check_int32(name: str, value: Any, *, minimum: int = INT32_MIN) -> int:
    """``value`` if it is an ``int`` (not ``bool``) that fits an ``Integer`` column.

    Raises:
        InvalidArgument: another type, or out of ``[minimum, 2**31 - 1]``.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise InvalidArgument(f"{name} must be >= {minimum}, not {value}")
    if value > INT32_MAX:
        raise InvalidArgument(
            f"{name} {value} is out of range (a 32-bit integer, at most {INT32_MAX})"
        )
    return value
