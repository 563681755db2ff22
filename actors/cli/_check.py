"""``sessions check``: is the database sound and consistent?

On SQLite it runs ``PRAGMA integrity_check`` and ``foreign_key_check``; on both backends
it checks what the store keeps true of every session (a state row with the same status,
an expiry while active, no pending request of a finished session, ...). Problems are
listed with a few example ids, and the exit code is 8; a file too damaged to read is
refused like everywhere else (exit code 6).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from actors.cli._format import emit_json
from actors.cli._support import CliError, Env, ExitCode
from persistence._inspect import Problem, consistency_fn, integrity_fn

JsonOption = Callable[[Callable[..., Any]], Callable[..., Any]]


def register(group: click.Group, json_option: JsonOption) -> None:
    """Add ``check`` to ``group``."""

    @group.command("check", short_help="Check the database's integrity and consistency.")
    @json_option
    @click.pass_obj
    def check(env: Env, as_json: bool) -> None:
        """Check the database: SQLite's integrity check, then the store's invariants.

        Exits 0 when all is well, 8 when a problem was found (each is listed), 6 when
        the file is not a readable database, 7 when the schema is not this version's.
        """
        db = env.db()
        problems: list[Problem] = db.store.read(integrity_fn(quick=False))
        if not problems:  # a damaged file's pages would only fail these queries
            problems = db.store.read(consistency_fn())
        if as_json:
            emit_json(
                {
                    "database": env.where,
                    "ok": not problems,
                    "problems": [
                        {"what": p.what, "count": p.count, "examples": p.examples} for p in problems
                    ],
                }
            )
        elif not problems:
            click.echo(f"{env.where}: no problems found")
        else:
            for problem in problems:
                click.echo(f"{problem.what}: {problem.count} (e.g. {', '.join(problem.examples)})")
        if problems:
            raise CliError(
                f"{len(problems)} kind(s) of problem found in {env.where}", ExitCode.DAMAGED
            )
