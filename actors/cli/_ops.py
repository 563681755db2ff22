"""The changing subcommands of ``sessions``: lifecycle, delete, purge, stats and db."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import click
from alembic.script import ScriptDirectory

from actors._clock import utc_now
from actors.cli._support import (
    CliError,
    Env,
    ExitCode,
    age,
    duration_option,
    emit_json,
    iso,
    pairs,
    size,
    split_choices,
    table,
    when,
)
from persistence import (
    SESSION_STATUSES,
    Database,
    InvalidTransition,
    SessionNotFound,
    StoreOverview,
    head_revision,
)
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
        help=f"{summary} Fails with exit code 5 while a live worker owns it.",
        short_help=summary,
    )
    @click.argument("session_id")
    @json_option
    @click.pass_obj
    def command(env: Env, session_id: str, as_json: bool) -> None:
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
        """Delete a session with its history and approvals (asks first unless --yes)."""
        db = env.db()
        if db.store.session_info(session_id) is None:
            raise SessionNotFound(session_id)
        if not yes:
            click.confirm(f"Delete session {session_id} and its history?", abort=True, err=True)
        env.manager().delete(session_id)
        if as_json:
            emit_json({"session_id": session_id, "deleted": True})
        else:
            click.echo(f"deleted session {session_id}")

    return delete


# ---------------------------------------------------------------------- purge


def purge_batch(
    db: Database, statuses: Sequence[str], cutoff: datetime, now: datetime, limit: int
) -> list[str]:
    """Delete one batch (one transaction); the tests replace it to simulate Ctrl-C."""
    deleted: list[str] = db.store.purge(statuses, cutoff, now, limit)
    return deleted


def _purge_command(json_option: JsonOption) -> click.Command:
    @click.command("purge", short_help="Delete old sessions in batches (interruptible).")
    @click.option(
        "--older-than", "older_than", callback=duration_option, required=True,
        metavar="DURATION",
        help="Only sessions not updated for this long: 30d, 12h, 1d12h, 2w ...",
    )  # fmt: skip
    @click.option(
        "--status", "status_text", default="completed,expired", show_default=True,
        metavar="STATUS[,STATUS]", help=f"Statuses to purge, from {', '.join(SESSION_STATUSES)}.",
    )  # fmt: skip
    @click.option(
        "--batch-size", type=click.IntRange(min=1, max=10_000), default=500, show_default=True,
        help="Sessions deleted per transaction.",
    )  # fmt: skip
    @click.option("--dry-run", is_flag=True, help="Only count what would be purged.")
    @click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
    @json_option
    @click.pass_obj
    def purge(  # noqa: PLR0917
        env: Env,
        older_than: timedelta,
        status_text: str,
        batch_size: int,
        dry_run: bool,
        yes: bool,
        as_json: bool,
    ) -> None:
        """Delete old sessions in batches, with a progress bar; safe to interrupt.

        Each batch is one transaction: after Ctrl-C every session is either wholly there
        or wholly gone, and running the command again purges the rest. Sessions a live
        worker holds are never purged.
        """
        statuses = split_choices(status_text, SESSION_STATUSES, "status", "'--status'")
        db = env.db()
        now = utc_now()
        cutoff = now - older_than
        total: int = db.store.count_purgeable(statuses, cutoff, now)
        result: dict[str, Any] = {
            "statuses": statuses,
            "cutoff": iso(cutoff),
            "matching": total,
            "purged": 0,
            "dry_run": dry_run,
            "interrupted": False,
        }
        described = f"{'/'.join(statuses)} sessions not updated since {when(cutoff)} UTC"
        if dry_run or total == 0:
            if as_json:
                emit_json(result)
            else:
                text = f"{total} {described} would be purged" if dry_run else "nothing to purge"
                click.echo(text)
            return
        if not yes:
            click.confirm(f"Purge {total} {described}?", abort=True, err=True)
        stderr = sys.stderr
        try:
            with click.progressbar(
                length=total, label="purging", file=stderr, hidden=as_json or not stderr.isatty()
            ) as bar:
                while True:
                    deleted = purge_batch(db, statuses, cutoff, now, batch_size)
                    result["purged"] += len(deleted)
                    bar.update(len(deleted))
                    if len(deleted) < batch_size:
                        break
        except KeyboardInterrupt:
            result["interrupted"] = True
            env.close()  # waits for the batch in flight: it commits whole or not at all
            if as_json:
                emit_json(result)
            raise CliError(
                f"interrupted after purging {result['purged']} sessions (a batch in flight"
                " committed whole or not at all); run the same command again for the rest",
                ExitCode.INTERRUPTED,
            ) from None
        if as_json:
            emit_json(result)
        else:
            click.echo(f"purged {result['purged']} {described}")

    return purge


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
        db.store.migrate(revision, timeout=600)
        after: str | None = db.store.schema_revision()
        if as_json:
            emit_json({"from": before, "to": after, "changed": before != after})
        elif before == after:
            click.echo(f"already at revision {after}")
        else:
            click.echo(f"upgraded from {before or 'an empty database'} to revision {after}")

    @db_group.command("current")
    @click.option("--check", is_flag=True, help="Exit with code 7 unless at the head revision.")
    @json_option
    @click.pass_obj
    def current(env: Env, check: bool, as_json: bool) -> None:
        """Show the schema revision of the database and the one this version needs."""
        db = env.db(check_schema=False)
        revision: str | None = db.store.schema_revision()
        head = head_revision()
        up_to_date = revision == head
        if as_json:
            emit_json({"current": revision, "head": head, "up_to_date": up_to_date})
        else:
            state = "up to date" if up_to_date else "behind: run `sessions db upgrade`"
            click.echo(f"{revision or '(empty)'} (head {head}; {state})")
        if check and not up_to_date:
            raise CliError(f"schema at {revision}, not {head}", ExitCode.SCHEMA)

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
    group.add_command(_purge_command(json_option))
    group.add_command(_stats_command(json_option))
    group.add_command(_db_group(json_option))
