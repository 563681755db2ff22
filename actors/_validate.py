"""Argument checks shared by the façade's methods: clear, typed errors before any work."""

from __future__ import annotations

from typing import Any

from persistence import InvalidArgument

MAX_ID_LENGTH = 255
#: The longest timeout accepted: past it a deadline only overflows the date types.
MAX_SECONDS = 100 * 365 * 24 * 3600


def require_str(
    name: str, value: Any, *, allow_empty: bool = False, max_length: int = MAX_ID_LENGTH
) -> str:
    """Return ``value`` as a plain ``str`` if it is a (non-empty) ``str`` without NUL, else raise.

    ``max_length`` is the width of the column the value is stored in. A ``str`` subclass
    (a ``StrEnum``, say) comes back as a plain ``str`` with the same characters, so its own
    ``__hash__`` or ``__eq__`` can never make one session look like two.
    """
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a str, not {type(value).__name__}")
    text: str = value if type(value) is str else str.__str__(value)
    if not text and not allow_empty:
        raise InvalidArgument(f"{name} must not be empty")
    if len(text) > max_length:
        raise InvalidArgument(f"{name} is {len(text)} characters long; at most {max_length}")
    if "\x00" in text:
        raise InvalidArgument(f"{name} must not contain NUL characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument(f"{name} is not valid unicode") from None
    return text


def require_optional_str(name: str, value: Any) -> str | None:
    """Like :func:`require_str`, but ``None`` is allowed."""
    return None if value is None else require_str(name, value)


def require_step(value: Any) -> int | None:
    """A step number is ``None`` or an ``int`` that fits a database INTEGER."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"current_step must be an int or None, not {type(value).__name__}")
    if not -(2**31) <= value < 2**31:
        raise InvalidArgument(f"current_step {value} is out of range (32-bit integer)")
    return value


def require_seconds(name: str, value: Any) -> float:
    """A positive, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not 0 < value <= MAX_SECONDS:  # NaN and infinity fail this too
        raise InvalidArgument(
            f"{name} must be a positive number of seconds, at most {MAX_SECONDS} (100 years),"
            f" not {value!r}"
        )
    return float(value)
