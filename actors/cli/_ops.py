"""The changing subcommands of ``sessions``: lifecycle, delete, purge, stats and db."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from alembic.script import ScriptDirectory

from actors._clock import utc_now
from actors.cli._format import (
    age,
    emit_json,
    iso,
    pairs,
    size,
    table,
    when,
)
from actors.cli._health import Schema, runs_against_newer, schema_message, schema_state
from actors.cli._purge import purge_command
from actors.cli._support import CliError, Env, ExitCode
from persistence import (
    SESSION_STATUSES,
    Database,
    InvalidTransition,
    StoreOverview,
    head_revision,
)
from persistence._inspect import Problem, integrity_fn
from persistence._migrate import alembic_config

JsonOption = Callable[[Callable[..., Any]], Callable[..., Any]]

# command -> (manager method, status afterwards, help)
_LIFECYCLE = {
    "suspend": ("suspended", "Suspend an active session."),
    "resume": ("active", "Resume a suspended session."),
    "complete": ("completed", "Mark an active or suspended session completed."),
    "expire": ("expired", "Expire an active session now."),
}


def _lifecycle_command(action: str, json_option: JsonOption) -> click.Command:
    status, summary = _LIFECYCLE[action]

    @click.command(
        action,
        help=f"{summary} Fails with exit code 5 while a live worker owns it. SESSION_ID may"
        " be the start of an id (at least 4 characters) that names one session.",
        short_help=summary,
    )
    @click.argument("session_id")
    @json_option
    @click.pass_obj
    def command(env: Env, session_id: str, as_json: bool) -> None:
        session_id = env.resolve(session_id)
        manager = env.manager()
        try:
            version: int = getattr(manager, action)(session_id)
        except InvalidTransition as error:
            # A finished session refuses to be opened at all: name the action asked for.
            raise InvalidTransition(session_id, error.status, action) from None
        if as_json:
            emit_json({"session_id": session_id, "status": status, "version": version})
        else:
            click.echo(f"session {session_id} is {status} (version {version})")

    return command


def _delete_command(json_option: JsonOption) -> click.Command:
    @click.command("delete", short_help="Delete a session with its history.")
    @click.argument("session_id")
    @click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
    @json_option
    @click.pass_obj
    def delete(env: Env, session_id: str, yes: bool, as_json: bool) -> None:
        """Delete a session with its history and approvals (asks first unless --yes).

        SESSION_ID may be the start of an id (at least 4 characters) that names one session.
        """
        session_id = env.resolve(session_id)
        if not yes:
            click.confirm(f"Delete session {session_id} and its history?", abort=True, err=True)
        env.manager().delete(session_id)
        if as_json:
            emit_json({"session_id": session_id, "deleted": True})
        else:
            click.echo(f"deleted session {session_id}")

    return delete


# ---------------------------------------------------------------------- stats


def _overview_json(env: Env, overview: StoreOverview) -> dict[str, Any]:
    oldest = overview.oldest_active
    return {
        "database": env.db().url,
        "dialect": overview.dialect,
        "schema_revision": overview.schema_revision,
        "database_bytes": overview.database_bytes,
        "sessions": overview.sessions,
        "by_status": overview.by_status,
        "by_mode": overview.by_mode,
        "messages": overview.messages,
        "pending_approvals": overview.pending_approvals,
        "overdue_approvals": overview.overdue_approvals,
        "connections": overview.connections,
        "leased": overview.leased,
        "oldest_active": None
        if oldest is None
        else {
            "session_id": oldest.session_id,
            "created_at": iso(oldest.created_at),
            "updated_at": iso(oldest.updated_at),
        },
    }


def _stats_command(json_option: JsonOption) -> click.Command:
    @click.command("stats", short_help="Counts by status and mode, size, oldest, approvals.")
    @json_option
    @click.pass_obj
    def stats(env: Env, as_json: bool) -> None:
        """Counts by status and mode, database size, oldest active, pending approvals."""
        db = env.db()
        _refuse_damaged(env, db)
        now = utc_now()
        overview: StoreOverview = db.store.overview(now)
        if as_json:
            emit_json(_overview_json(env, overview))
            return
        by_status = ", ".join(f"{s} {n}" for s, n in overview.by_status.items())
        oldest = overview.oldest_active
        click.echo(
            pairs(
                [
                    ("database", f"{db.url} ({overview.dialect})"),
                    ("schema", overview.schema_revision),
                    ("size", size(overview.database_bytes)),
                    ("sessions", f"{overview.sessions} ({by_status})"),
                    ("messages", overview.messages),
                    (
                        "oldest active",
                        "none"
                        if oldest is None
                        else f"{oldest.session_id} created {when(oldest.created_at)}"
                        f" ({age(oldest.created_at, now)})",
                    ),
                    (
                        "approvals",
                        f"{overview.pending_approvals} pending"
                        f" ({overview.overdue_approvals} past their deadline)",
                    ),
                    ("connections", overview.connections),
                    ("leased", f"{overview.leased} held by live workers"),
                ]
            )
        )
        if overview.by_mode:
            click.echo("")
            click.echo(
                table(
                    ("MODE", *SESSION_STATUSES, "TOTAL"),
                    [
                        (mode, *(counts.get(s, 0) for s in SESSION_STATUSES), sum(counts.values()))
                        for mode, counts in overview.by_mode.items()
                    ],
                )
            )

    return stats


# ---------------------------------------------------------------------- db


def _refuse_damaged(env: Env, db: Database) -> None:
    """Exit 6 when SQLite's quick check finds the file damaged (nothing on PostgreSQL)."""
    problems: list[Problem] = db.store.read(integrity_fn(quick=True))
    if problems:
        raise CliError(
            f"not a valid session database: {env.where}: {problems[0].examples[0]}"
            " (`sessions check` lists what is wrong)",
            ExitCode.UNAVAILABLE,
        )


def _check_revision(revision: str) -> None:
    if revision in ("head", "base"):
        return
    scripts = ScriptDirectory.from_config(alembic_config())
    try:
        found = scripts.get_revision(revision)
    except Exception:  # noqa: BLE001 - alembic raises several types for a bad id
        found = None
    if found is None:
        known = ", ".join(s.revision for s in scripts.walk_revisions())
        raise click.BadParameter(f"unknown revision {revision!r} (known: {known}, head, base)")


def _db_group(json_option: JsonOption) -> click.Group:
    @click.group("db")
    def db_group() -> None:
        """Schema migrations (alembic) for upgrades in the field."""

    @db_group.command("upgrade")
    @click.argument("revision", default="head")
    @json_option
    @click.pass_obj
    def upgrade(env: Env, revision: str, as_json: bool) -> None:
        """Bring the schema to REVISION (default: head); creates a new SQLite file."""
        _check_revision(revision)
        db = env.db(check_schema=False, must_exist=False)
        before: str | None = db.store.schema_revision()
        if schema_state(before, head_revision()) is Schema.NEWER:
            raise CliError(schema_message(before, head_revision()), ExitCode.SCHEMA)
        db.store.migrate(revision, timeout=600)
        after: str | None = db.store.schema_revision()
        if as_json:
            emit_json({"from": before, "to": after, "changed": before != after})
        elif before == after:
            click.echo(f"already at revision {after}")
        else:
            click.echo(f"upgraded from {before or 'an empty database'} to revision {after}")

    @db_group.command("current")
    @click.option(
        "--check",
        is_flag=True,
        help="Exit with code 7 unless this version runs against it (the head, or newer"
        " within its compatible_from).",
    )
    @json_option
    @click.pass_obj
    def current(env: Env, check: bool, as_json: bool) -> None:
        """Show the schema revision of the database and the one this version needs."""
        db = env.db(check_schema=False)
        _refuse_damaged(env, db)
        revision: str | None = db.store.schema_revision()
        head = head_revision()
        state = schema_state(revision, head)
        usable = state is Schema.CURRENT or (state is Schema.NEWER and runs_against_newer(db))
        if as_json:
            emit_json(
                {"current": revision, "head": head, "up_to_date": state is Schema.CURRENT,
                 "state": str(state), "usable": usable}
            )  # fmt: skip
        elif state is Schema.CURRENT:
            click.echo(f"{revision} (head {head}; up to date)")
        elif usable:
            click.echo(
                f"{revision}, newer than this version's head {head}; a newer release migrated"
                " it and this version still runs against it (rolling deploy)"
            )
        else:
            click.echo(schema_message(revision, head))
        if check and not usable:
            raise CliError(schema_message(revision, head), ExitCode.SCHEMA)

    @db_group.command("downgrade")
    @click.argument("revision")
    @click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
    @click.pass_obj
    def downgrade(env: Env, revision: str, yes: bool) -> None:
        """Take the schema back to REVISION (`base` drops every table and all data)."""
        _check_revision(revision)
        db = env.db(check_schema=False)
        before: str | None = db.store.schema_revision()
        if not yes:
            click.confirm(
                f"Downgrade the schema from {before} to {revision}? Data in dropped tables"
                " is lost.",
                abort=True,
                err=True,
            )
        db.store.downgrade(revision, timeout=600)
        after: str | None = db.store.schema_revision()
        click.echo(f"downgraded from {before} to {after or 'base (empty)'}")

    return db_group


def register(group: click.Group, json_option: JsonOption) -> None:
    """Add the changing subcommands to ``group``."""
    for action in _LIFECYCLE:
        group.add_command(_lifecycle_command(action, json_option))
    group.add_command(_delete_command(json_option))
    group.add_command(purge_command(json_option))
    group.add_command(_stats_command(json_option))
    group.add_command(_db_group(json_option))
