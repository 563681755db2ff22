"""Plumbing of the ``sessions`` command: exit codes, errors, the database, tables, times."""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from enum import IntEnum
from pathlib import Path
from typing import Any

import click

from actors._clock import utc_now
from actors._errors import SessionFailed
from actors._manager import SessionManager
from persistence import (
    Database,
    InvalidArgument,
    InvalidTransition,
    NotSerializable,
    SessionExists,
    SessionNotFound,
    SessionOwnedElsewhere,
    SessionSupervisorError,
    StaleSession,
    StoreUnavailable,
    head_revision,
    resolve_url,
)


class ExitCode(IntEnum):
    """The exit codes of ``sessions`` (also listed in the README)."""

    OK = 0
    """Done."""
    FAILED = 1
    """An unexpected error (a bug or a broken environment); or a prompt was declined."""
    USAGE = 2
    """Bad arguments or options, or an import file that is not a valid export."""
    NOT_FOUND = 3
    """No session with this id."""
    REFUSED = 4
    """The lifecycle forbids it (e.g. resume a completed session), or it already exists."""
    BUSY = 5
    """A live worker owns the session (its lease is valid): retry later."""
    UNAVAILABLE = 6
    """The database cannot be opened or reached."""
    SCHEMA = 7
    """The database schema is not at this version's revision: run ``sessions db upgrade``."""
    INTERRUPTED = 130
    """Interrupted (Ctrl-C); whatever was committed is consistent."""


class CliError(click.ClickException):
    """An error reported as ``Error: message`` on stderr with a chosen exit code."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = int(code)  # type: ignore[misc] # click reads it from the instance


def translate(error: SessionSupervisorError) -> CliError:
    """The CLI error (message and exit code) of a library error."""
    code: ExitCode
    match error:
        case SessionNotFound():
            code = ExitCode.NOT_FOUND
        case SessionOwnedElsewhere():
            return CliError(
                f"{error}. A live worker holds it; stop that worker or retry once its lease"
                " lapses.",
                ExitCode.BUSY,
            )
        case SessionExists():
            return CliError(f"{error} (use --replace to overwrite it)", ExitCode.REFUSED)
        case InvalidTransition() | StaleSession() | SessionFailed():
            code = ExitCode.REFUSED
        case InvalidArgument() | NotSerializable():
            code = ExitCode.USAGE
        case StoreUnavailable():
            code = ExitCode.UNAVAILABLE
        case _:
            code = ExitCode.FAILED
    return CliError(str(error), code)


class Env:
    """What every subcommand shares: the database URL and what was opened from it."""

    def __init__(self, database_url: str | None) -> None:
        self.database_url = database_url
        self._db: Database | None = None
        self._manager: SessionManager | None = None

    def _url_or_fail(self, *, must_exist: bool) -> str:
        url = resolve_url(self.database_url)
        if must_exist and url.get_backend_name() == "sqlite" and url.database:
            path = Path(url.database)
            if not path.exists():
                raise CliError(
                    f"no session database at {path.absolute()} (check --database-url or"
                    " $SESSIONS_DATABASE_URL; `sessions db upgrade` creates a new one)",
                    ExitCode.UNAVAILABLE,
                )
        return url.render_as_string(hide_password=False)

    def db(self, *, check_schema: bool = True, must_exist: bool = True) -> Database:
        """The open store (never migrated implicitly).

        Raises:
            CliError: no such SQLite file, the database is unreachable, or (with
                ``check_schema``) its schema is not at this version's head revision.
        """
        if self._db is None:
            url = self._url_or_fail(must_exist=must_exist)
            self._db = Database.open(url, migrate=False)
            if check_schema:
                current = self._db.store.schema_revision()
                head = head_revision()
                if current != head:
                    found = "no session schema" if current is None else f"revision {current}"
                    raise CliError(
                        f"the database has {found}, this version needs {head}:"
                        " run `sessions db upgrade`",
                        ExitCode.SCHEMA,
                    )
        return self._db

    def manager(self) -> SessionManager:
        """A manager on the same store, for changes that go through a session's actor.

        It takes the session's lease for the change and releases it when the command ends.
        """
        if self._manager is None:
            db = self.db()
            self._manager = SessionManager(
                db,
                instance_id=f"cli-{socket.gethostname()}-{os.getpid()}"[:64],
                cleanup_interval=3600.0,
            )
        return self._manager

    def close(self) -> None:
        """Close whatever was opened (the manager closes its store)."""
        manager, self._manager = self._manager, None
        db, self._db = self._db, None
        if manager is not None:
            manager.close()
        elif db is not None:
            db.close()


@contextmanager
def library_errors() -> Iterator[None]:
    """Turn the library's typed errors into CLI errors with their exit codes."""
    try:
        yield
    except SessionSupervisorError as error:
        raise translate(error) from error


# ---------------------------------------------------------------------- values

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)", re.IGNORECASE)
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``1d12h``, ``90m``, ``2w``, ``45s`` as a timedelta.

    Raises:
        ValueError: anything else (a bare number has no unit and is refused).
    """
    cleaned = text.strip().replace(" ", "")
    if not cleaned or _DURATION_PART.sub("", cleaned):
        msg = f"{text!r} is not a duration; use e.g. 30d, 12h, 1d12h, 90m, 2w or 45s"
        raise ValueError(msg)
    total = timedelta()
    for amount, unit in _DURATION_PART.findall(cleaned):
        total += timedelta(**{_UNITS[unit.lower()]: float(amount)})
    if total <= timedelta(0):
        msg = f"{text!r} must be longer than zero"
        raise ValueError(msg)
    return total


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
