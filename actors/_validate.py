"""Argument checks shared by the façade's methods: clear, typed errors before any work."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from persistence import InvalidArgument
from persistence._checks import check_text

MAX_ID_LENGTH = 255
#: The longest timeout accepted: past it a deadline only overflows the date types.
MAX_SECONDS = 100 * 365 * 24 * 3600
#: The widest ``instance_id``: the ``owner`` column is ``String(64)`` on PostgreSQL.
MAX_INSTANCE_ID_LENGTH = 64

Duration = float | timedelta
"""A duration setting: seconds (an ``int`` or a ``float``) or a ``timedelta``."""


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
    # The same rules as an import's (persistence._checks), so neither stores what the other refuses.
    return check_text(name, text, allow_empty=allow_empty, max_length=max_length)


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


def require_duration(
    name: str,
    value: Any,
    *,
    minimum: float = 0.0,
    maximum: float = MAX_SECONDS,
    allow_zero: bool = False,
    forever: bool = False,
) -> timedelta:
    """A duration given as seconds (``int`` / ``float``, not ``bool``) or a ``timedelta``.

    Args:
        name: the setting, named in the error.
        value: what the caller gave.
        minimum: the shortest duration accepted, in seconds (zero aside).
        maximum: the longest, in seconds.
        allow_zero: whether ``0`` is meaningful (e.g. "no backoff").
        forever: whether "never" is meaningful: then infinity, ``timedelta.max`` and
            anything of at least ``maximum`` come back as ``timedelta.max``.

    Raises:
        InvalidArgument: another type, NaN, a negative value, zero or infinity where they
            are meaningless, or a value out of ``[minimum, maximum]``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        raise InvalidArgument(
            f"{name} must be a number of seconds or a timedelta, not {type(value).__name__}"
        )
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    else:
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf if value > 0 else -math.inf
    if math.isnan(seconds):
        raise InvalidArgument(f"{name} must be a number of seconds, not NaN")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "positive"
        raise InvalidArgument(f"{name} must be {bound}, not {value!r}")
    if forever and seconds >= maximum:
        return timedelta.max
    if seconds > maximum:
        raise InvalidArgument(
            f"{name} must be at most {maximum:g} seconds ({_spell(maximum)}), not {value!r}"
        )
    if seconds < minimum and seconds != 0:
        raise InvalidArgument(f"{name} must be at least {minimum:g} seconds, not {value!r}")
    delta = value if isinstance(value, timedelta) else timedelta(seconds=seconds)
    if delta <= timedelta(0) and not allow_zero:
        raise InvalidArgument(f"{name} must be at least a microsecond, not {value!r}")
    return delta


def _spell(seconds: float) -> str:
    if seconds >= 365 * 24 * 3600:
        return f"{seconds / (365 * 24 * 3600):g} years"
    if seconds >= 24 * 3600:
        return f"{seconds / (24 * 3600):g} days"
    return f"{seconds:g} s"


def require_count(name: str, value: Any) -> int:
    """A positive ``int`` (not ``bool``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be a positive int, not {type(value).__name__}")
    if value < 1:
        raise InvalidArgument(f"{name} must be >= 1, not {value!r}")
    return int(value)


def require_optional_count(name: str, value: Any) -> int | None:
    """A positive ``int`` (not ``bool``) or ``None``."""
    return None if value is None else require_count(name, value)


def require_instance_id(value: Any) -> str:
    """A manager's name as a lease owner: a printable ``str`` of 1 to 64 characters."""
    if not isinstance(value, str):
        raise InvalidArgument(f"instance_id must be a str, not {type(value).__name__}")
    text: str = value if type(value) is str else str.__str__(value)
    if not 1 <= len(text) <= MAX_INSTANCE_ID_LENGTH:
        raise InvalidArgument(
            f"instance_id must be 1 to {MAX_INSTANCE_ID_LENGTH} characters long (the width"
            f" of the owner column), not {len(text)}"
        )
    if not text.isprintable():
        raise InvalidArgument(
            f"instance_id must be printable (no control characters, no lone surrogates),"
            f" not {text!r}"
        )
    return text
