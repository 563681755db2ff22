"""Values and layout of the ``sessions`` command: durations, times, sizes, tables, JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import click

from actors._clock import utc_now
from actors._validate import MAX_SECONDS

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)", re.IGNORECASE)
_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``1d12h``, ``90m``, ``2w``, ``45s`` as a timedelta.

    Raises:
        ValueError: anything else (a bare number has no unit and is refused), zero, or
            more than 100 years (the longest duration the library accepts anywhere).
    """
    cleaned = text.strip().replace(" ", "")
    if not cleaned or _DURATION_PART.sub("", cleaned):
        msg = f"{text!r} is not a duration; use e.g. 30d, 12h, 1d12h, 90m, 2w or 45s"
        raise ValueError(msg)
    seconds = 0.0
    for amount, unit in _DURATION_PART.findall(cleaned):
        seconds += float(amount) * _SECONDS[unit.lower()]  # a float: never overflows
    if seconds <= 0:
        msg = f"{text!r} must be longer than zero"
        raise ValueError(msg)
    if seconds > MAX_SECONDS:
        msg = f"{text!r} is longer than 100 years (36500d), the longest accepted"
        raise ValueError(msg)
    return timedelta(seconds=seconds)


def duration_option(ctx: click.Context, param: click.Parameter, value: Any) -> timedelta | None:
    """A click callback that parses a duration option (see :func:`parse_duration`).

    Raises:
        click.BadParameter: not a duration.
    """
    if value is None or isinstance(value, timedelta):
        return value
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def split_choices(text: str, allowed: Sequence[str], what: str, option: str) -> list[str]:
    """``a,b`` as ``["a", "b"]``, each one of ``allowed``.

    Raises:
        click.BadParameter: an unknown or empty value.
    """
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values:
        raise click.BadParameter(f"give at least one {what}", param_hint=option)
    unknown = [value for value in values if value not in allowed]
    if unknown:
        raise click.BadParameter(
            f"unknown {what} {', '.join(unknown)} (choose from {', '.join(allowed)})",
            param_hint=option,
        )
    return list(dict.fromkeys(values))


def when(value: datetime | None) -> str:
    """A UTC time for a table: ``2030-01-01 12:00:00``."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def iso(value: datetime | None) -> str | None:
    """An ISO 8601 time for JSON."""
    return None if value is None else value.isoformat()


def age(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``value`` was, roughly: ``3d 4h``, ``12m``."""
    if value is None:
        return "-"
    seconds = int(((now or utc_now()) - value).total_seconds())
    sign = "" if seconds >= 0 else "in "
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        text = f"{days}d {hours}h"
    elif hours:
        text = f"{hours}h {minutes}m"
    elif minutes:
        text = f"{minutes}m"
    else:
        text = f"{seconds}s"
    return f"{sign}{text}" if sign else f"{text} ago"


def size(count: int | None) -> str:
    """A number of bytes for people: ``84.0 KiB``."""
    if count is None:
        return "unknown"
    amount = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"  # pragma: no cover - the loop always returns


def shorten(text: Any, width: int) -> str:
    """One line of at most ``width`` characters."""
    line = " ".join(str(text).split()) if text is not None else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces, for a terminal."""
    cells = [[("-" if cell is None else str(cell)) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *cells]
    ]
    return "\n".join(lines)


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def pairs(items: Sequence[tuple[str, Any]]) -> str:
    """``key  value`` lines with aligned values."""
    width = max(len(key) for key, _ in items)
    return "\n".join(f"{key.ljust(width)}  {'-' if v is None else v}" for key, v in items)
