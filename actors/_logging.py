"""One call to make the library's structlog events readable or machine-parsable.

Every event of a session carries ``session_id`` (the README lists the events). Use
:func:`configure_logging` once at start-up::

    configure_logging(json=True)            # production: one JSON object per line
    configure_logging(level="DEBUG")        # a terminal: readable, every checkpoint
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO, cast

import structlog


class _StandardError:
    """``sys.stderr`` looked up at each write, so a swapped stream (pytest, click) works."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(
    *,
    json: bool = False,
    level: str | int = "INFO",
    stream: TextIO | None = None,
    colors: bool = False,
) -> None:
    """Configure structlog for this process (call it again to change the settings).

    Args:
        json: one JSON object per line (production; exceptions as structured
            tracebacks) instead of a readable console format.
        level: the lowest level printed: ``DEBUG`` shows every checkpoint, ``INFO`` the
            lifecycle, ``WARNING`` only what needs attention.
        stream: where to write (default: the current ``sys.stderr``, looked up at each
            write).
        colors: colour the console format (needs a terminal).

    Raises:
        ValueError: an unknown level.
    """
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        msg = f"unknown log level {level!r} (use DEBUG, INFO, WARNING or ERROR)"
        raise ValueError(msg)  # noqa: TRY004 - a bad value, not a bad type
    renderer: Any
    if json:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
        # No local variables in tracebacks: they would copy conversations into the logs.
        exceptions: Any = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
        exceptions = structlog.dev.set_exc_info
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            exceptions,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream or cast("TextIO", _StandardError())),
        cache_logger_on_first_use=False,
    )
