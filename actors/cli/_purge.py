"""``sessions purge``: delete old finished sessions in batches, safely interruptible.

Each batch is one transaction, so after Ctrl-C every session is wholly there or wholly
gone. Sessions a live worker holds are never purged; the command names them. ``--vacuum``
gives the freed pages back to the file system on SQLite.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from actors._clock import utc_now
from actors.cli._format import duration_option, emit_json, iso, size, split_choices, when
from actors.cli._support import CliError, Env, ExitCode
from persistence import SESSION_STATUSES, Database, resolve_url
from persistence._inspect import held_fn, vacuum_sqlite

JsonOption = Callable[[Callable[..., Any]], Callable[..., Any]]
#: How many held session ids the text output names.
_NAMED = 5


def purge_batch(
    db: Database, statuses: Sequence[str], cutoff: datetime, now: datetime, limit: int
) -> list[str]:
    """Delete one batch (one transaction); the tests replace it to simulate Ctrl-C."""
    deleted: list[str] = db.store.purge(statuses, cutoff, now, limit)
    return deleted


def _held_note(held: list[str]) -> str:
    named = ", ".join(held[:_NAMED]) + (", ..." if len(held) > _NAMED else "")
    return f"skipped {len(held)} held by a live worker (purge them once it lets go): {named}"


def _vacuum(env: Env, result: dict[str, Any], as_json: bool) -> None:
    url = resolve_url(env.database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        click.echo(
            "--vacuum only applies to SQLite (PostgreSQL's autovacuum reuses the space)",
            err=True,
        )
        return
    env.close()  # VACUUM cannot run inside the store's transactions
    before, after = vacuum_sqlite(Path(url.database))
    result["vacuum"] = {"bytes_before": before, "bytes_after": after}
    if not as_json:
        click.echo(f"vacuumed {url.database}: {size(before)} -> {size(after)}")


def _run_batches(  # noqa: PLR0917
    env: Env,
    statuses: list[str],
    cutoff: datetime,
    now: datetime,
    batch_size: int,
    total: int,
    result: dict[str, Any],
    as_json: bool,
) -> None:
    stderr = sys.stderr
    db = env.db()
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


def purge_command(json_option: JsonOption) -> click.Command:
    """The ``purge`` subcommand."""

    @click.command("purge", short_help="Delete old sessions in batches (interruptible).")
    @click.option(
        "--older-than", "older_than", callback=duration_option, required=True,
        metavar="DURATION",
        help="Only sessions not updated for this long: 30d, 12h, 1d12h, 2w ... (at most 36500d).",
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
    @click.option("--vacuum", is_flag=True, help="SQLite: give the freed space back afterwards.")
    @click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
    @json_option
    @click.pass_obj
    def purge(  # noqa: PLR0917
        env: Env,
        older_than: timedelta,
        status_text: str,
        batch_size: int,
        dry_run: bool,
        vacuum: bool,
        yes: bool,
        as_json: bool,
    ) -> None:
        """Delete old sessions in batches, with a progress bar; safe to interrupt.

        Each batch is one transaction: after Ctrl-C every session is either wholly there
        or wholly gone, and running the command again purges the rest. Sessions a live
        worker holds are never purged; they are reported as skipped.
        """
        statuses = split_choices(status_text, SESSION_STATUSES, "status", "'--status'")
        db = env.db()
        now = utc_now()
        cutoff = now - older_than
        total: int = db.store.count_purgeable(statuses, cutoff, now)
        held: list[str] = db.store.read(held_fn(statuses, cutoff, now))
        result: dict[str, Any] = {
            "statuses": statuses,
            "cutoff": iso(cutoff),
            "matching": total,
            "purged": 0,
            "skipped_held": held,
            "dry_run": dry_run,
            "interrupted": False,
            "vacuum": None,
        }
        described = f"{'/'.join(statuses)} sessions not updated since {when(cutoff)} UTC"
        if dry_run:
            text = f"{total} {described} would be purged"
        elif total == 0:
            text = "nothing to purge"
        else:
            if not yes:
                click.confirm(f"Purge {total} {described}?", abort=True, err=True)
            _run_batches(env, statuses, cutoff, now, batch_size, total, result, as_json)
            text = f"purged {result['purged']} {described}"
        if not as_json:
            click.echo(text)
            if held:
                click.echo(_held_note(held), err=True)
        if vacuum and not dry_run:
            _vacuum(env, result, as_json)
        if as_json:
            emit_json(result)

    return purge
