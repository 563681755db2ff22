"""Plumbing of the ``sessions`` command: exit codes, errors, the database, tables, times."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path

import click

from actors._errors import SessionFailed
from actors._manager import SessionManager
from actors.cli._health import (
    Schema,
    damaged_reason,
    one_line,
    resolve_id,
    runs_against_newer,
    schema_message,
    schema_state,
)
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
    DAMAGED = 8
    """``sessions check`` found damage or inconsistencies (it lists them)."""
    INTERRUPTED = 130
    """Interrupted (Ctrl-C); whatever was committed is consistent."""


class CliError(click.ClickException):
    """An error reported as ``Error: message`` on stderr with a chosen exit code."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = int(code)  # type: ignore[misc] # click reads it from the instance


def translate(error: SessionSupervisorError, where: str | None = None) -> CliError:
    """The CLI error (message and exit code) of a library error.

    ``where`` names the database (a file path or a URL) in the message of a damaged file.
    """
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
            reason = damaged_reason(error)
            if reason is not None:
                return CliError(
                    f"not a valid session database: {where or 'the database'}: {reason}",
                    ExitCode.UNAVAILABLE,
                )
            code = ExitCode.UNAVAILABLE
        case _:
            code = ExitCode.FAILED
    return CliError(one_line(str(error)), code)


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
            try:
                self._db = Database.open(url, migrate=False)
            except StoreUnavailable as error:
                raise translate(error, self.where) from error
            if check_schema:
                current = self._db.store.schema_revision()
                head = head_revision()
                if current != head and not (
                    schema_state(current, head) is Schema.NEWER and runs_against_newer(self._db)
                ):
                    raise CliError(schema_message(current, head), ExitCode.SCHEMA)
        return self._db

    @property
    def where(self) -> str:
        """The database for messages: a SQLite file's path, else the URL without password."""
        try:
            url = resolve_url(self.database_url)
        except InvalidArgument:
            return str(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database:
            return url.database
        return url.render_as_string(hide_password=True)

    def resolve(self, given: str) -> str:
        """The session id ``given`` names: exactly, or as a unique prefix (4+ characters).

        Raises:
            SessionNotFound: no such session.
            InvalidArgument: an ambiguous prefix (exit code 2, the candidates listed).
        """
        return resolve_id(self.db(), given)

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
