"""``sessions export`` and ``sessions import``: one session as a JSON file, and back.

The import reads the file with limits of its own (a nesting too deep for Python's parser
is refused naming where, not with a RecursionError) and hands the document to the
store, which checks all of it with the API's rules before writing anything.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any, TextIO

import click

from actors._clock import utc_now
from actors.cli._format import emit_json
from actors.cli._support import CliError, Env, ExitCode
from persistence import SessionNotFound

JsonOption = Callable[[Callable[..., Any]], Callable[..., Any]]

#: Deeper than any valid export (stored values nest at most 100 levels, inside 3).
_MAX_NESTING = 200
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]')


def nesting_path(text: str, limit: int = _MAX_NESTING) -> str | None:
    """The JSON path where ``text`` nests deeper than ``limit`` levels (``None``: it does not).

    Only strings and punctuation are scanned, so the path is found without parsing.
    """
    stack: list[list[Any]] = []  # [opener, key or index] per open container
    last_string = ""
    for match in _TOKENS.finditer(text):
        piece = match.group()
        if piece[0] == '"':
            last_string = piece
        elif piece in "[{":
            if len(stack) >= limit:
                return _path(stack)
            stack.append([piece, 0 if piece == "[" else None])
        elif piece in "]}":
            if stack:
                stack.pop()
        elif piece == ":" and stack and stack[-1][0] == "{":
            try:
                stack[-1][1] = json.loads(last_string)
            except ValueError:
                stack[-1][1] = last_string
        elif piece == "," and stack and stack[-1][0] == "[":
            stack[-1][1] += 1
    return None


def _path(stack: list[list[Any]]) -> str:
    parts = [
        f"[{step}]" if opener == "[" else (f".{step}" if isinstance(step, str) else ".?")
        for opener, step in stack
    ]
    if len(parts) > 12:
        parts = [*parts[:8], f"...({len(parts) - 10} more)...", *parts[-2:]]
    return "$" + "".join(parts)


def read_json(file: TextIO) -> Any:
    """The document in ``file``.

    Raises:
        CliError: not JSON, or nested too deeply (exit code 2, naming where).
    """
    name = getattr(file, "name", "the file")
    try:
        text = file.read()
    except UnicodeDecodeError as exc:
        raise CliError(f"{name} is not a JSON file: {exc}", ExitCode.USAGE) from None
    deep = nesting_path(text)
    if deep is not None:
        raise CliError(
            f"{name}: {deep} is nested deeper than {_MAX_NESTING} levels (no export is)",
            ExitCode.USAGE,
        )
    try:
        return json.loads(text)
    except RecursionError:  # pragma: no cover - nesting_path refuses these first
        raise CliError(f"{name} is nested too deeply to read", ExitCode.USAGE) from None
    except ValueError as exc:  # JSONDecodeError, or an integer of too many digits
        raise CliError(f"{name} is not a JSON file: {exc}", ExitCode.USAGE) from None


def register(group: click.Group, json_option: JsonOption) -> None:
    """Add ``export`` and ``import`` to ``group``."""

    @group.command("export", short_help="Write a session as JSON (stdout or -o FILE).")
    @click.argument("session_id")
    @click.option(
        "-o", "--output", type=click.File("w", encoding="utf-8"), default="-",
        help="Write to this file instead of stdout.",
    )  # fmt: skip
    @click.pass_obj
    def export_session(env: Env, session_id: str, output: TextIO) -> None:
        """Write a session (state, history, approvals) as JSON: `sessions export ID > s.json`.

        SESSION_ID may be the start of an id (at least 4 characters) that names one session.
        """
        db = env.db()
        session_id = env.resolve(session_id)
        document: dict[str, Any] | None = db.store.export_session(session_id)
        if document is None:
            raise SessionNotFound(session_id)
        output.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")

    @group.command("import", short_help="Create a session from an export file.")
    @click.argument("file", type=click.File("r", encoding="utf-8"))
    @click.option("--replace", is_flag=True, help="Overwrite a session with the same id.")
    @click.option(
        "--new-id", is_flag=True,
        help="Import a copy under a new session id (its approval requests get new ids too).",
    )  # fmt: skip
    @json_option
    @click.pass_obj
    def import_session(env: Env, file: TextIO, replace: bool, new_id: bool, as_json: bool) -> None:
        """Create a session from a file written by `sessions export` (`-` reads stdin).

        The whole file is checked with the rules the API applies before anything is
        written; a refused file (exit code 2, naming the JSON path) changes nothing.
        """
        if replace and new_id:
            raise click.UsageError("--replace and --new-id exclude each other")
        document = read_json(file)
        db = env.db()
        session_id: str = db.store.import_session(
            document, utc_now(), replace=replace, new_id=str(uuid.uuid4()) if new_id else None
        )
        count = len(document.get("messages") or [])
        if as_json:
            emit_json(
                {"session_id": session_id, "messages": count, "replace": replace,
                 "new_id": new_id}
            )  # fmt: skip
        else:
            click.echo(f"imported session {session_id} ({count} messages)")
