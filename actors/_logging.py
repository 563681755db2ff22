"""One call to make the library's structlog events readable or machine-parsable."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog


def configure_logging(
    *, json: bool = False, level: str | int = "INFO", stream: TextIO | None = None
) -> None:
    """Configure structlog for this process.

    Args:
        json: one JSON object per line (production) instead of a readable console format.
        level: the lowest level printed (``DEBUG`` shows every checkpoint).
        stream: where to write (default ``sys.stderr``).
    """
    numeric = logging.getLevelName(level) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        msg = f"unknown log level {level!r}"
        raise ValueError(msg)  # noqa: TRY004 - a bad value, not a bad type
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
