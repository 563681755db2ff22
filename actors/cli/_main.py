"""The ``sessions`` group, its reading subcommands, export and import.

Run ``sessions --help``; every subcommand has ``--help`` too. The database is
``--database-url`` or ``$SESSIONS_DATABASE_URL``. Reading commands never take a session
from the worker that runs it; changing commands (suspend, resume, complete, expire,
delete) take its lease for the change and fail with exit code 5 while a live worker
holds it. Exit codes: see :class:`~actors.cli._support.ExitCode` and the README.
"""

from __future__ import annotations

from typing import Any

import click

from actors._clock import utc_now
from actors._logging import configure_logging
from actors.cli import _check, _ops, _transfer
from actors.cli._format import age, emit_json, iso, pairs, shorten, table, when
from actors.cli._support import CliError, Env, ExitCode, translate
from persistence import (
    DATABASE_URL_ENV,
    SESSION_STATUSES,
    ApprovalRecord,
    SessionNotFound,
    SessionSummary,
    SessionSupervisorError,
    StateRecord,
    _json,
)
from persistence._inspect import Page, page_fn


class _Group(click.Group):
    """A group that reports the library's errors with their exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; map typed errors and Ctrl-C to exit codes."""
        try:
            return super().invoke(ctx)
        except SessionSupervisorError as error:
            env = ctx.obj
            raise translate(error, env.where if isinstance(env, Env) else None) from error
        except KeyboardInterrupt:
            raise CliError("interrupted", ExitCode.INTERRUPTED) from None


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit codes: 0 ok, 1 unexpected error or declined prompt, 2 bad arguments,"
    " 3 unknown session, 4 refused by the lifecycle or already exists, 5 owned by a live"
    " worker, 6 database unavailable or not a valid session database, 7 schema not this"
    " version's (empty, behind: run `sessions db upgrade`, or newer), 8 `sessions check`"
    " found problems, 130 interrupted. A SESSION_ID may be given by its first 4 or more"
    " characters when they name one session.",
)
@click.option(
    "--database-url",
    envvar=DATABASE_URL_ENV,
    show_envvar=True,
    metavar="URL",
    help="sqlite:///path/sessions.db (or a plain path) or postgresql://user@host/db"
    " (default ./sessions.db).",
)
@click.option("-v", "--verbose", count=True, help="Show library log events (-v info, -vv debug).")
@click.option("--log-json", is_flag=True, help="Log events as JSON lines (with -v).")
@click.version_option(package_name="session-supervisor", prog_name="sessions")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, verbose: int, log_json: bool) -> None:
    """See and steer the sessions of a session-supervisor database."""
    configure_logging(json=log_json, level=("WARNING", "INFO", "DEBUG")[min(verbose, 2)])
    env = Env(database_url)
    ctx.obj = env
    ctx.call_on_close(env.close)


# ---------------------------------------------------------------------- reading


def _summary_json(row: SessionSummary) -> dict[str, Any]:
    return {
        "session_id": row.session_id,
        "name": row.name,
        "user_id": row.user_id,
        "mode": row.mode,
        "status": row.status,
        "current_phase": row.current_phase,
        "current_step": row.current_step,
        "message_count": row.message_count,
        "version": row.version,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "last_active_at": iso(row.last_active_at),
        "owner": row.owner,
        "lease_expires_at": iso(row.lease_expires_at),
    }


#: The most rows one page of ``list`` prints (``--all`` has no limit).
MAX_LIMIT = 100_000
#: The largest ``--offset``, ``--tail`` or ``-n`` (a database INTEGER).
MAX_COUNT = 2**31 - 1


@cli.command("list")
@click.option("--user", "user_id", metavar="USER_ID", help="Only this user's sessions.")
@click.option("--status", type=click.Choice(SESSION_STATUSES), help="Only sessions in this status.")
@click.option("--mode", help="Only sessions of this mode.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True)
@click.option(
    "--offset", type=click.IntRange(0, MAX_COUNT), default=0, show_default=True,
    help="Skip this many sessions first (the next page: --offset 50).",
)  # fmt: skip
@click.option("--all", "show_all", is_flag=True, help="Every matching session (no --limit).")
@click.option(
    "--sort",
    type=click.Choice(["created", "updated"]),
    default="created",
    show_default=True,
    help="Newest first by creation time or by last update.",
)
@json_option
@click.pass_obj
def list_sessions(  # noqa: PLR0917
    env: Env,
    user_id: str | None,
    status: str | None,
    mode: str | None,
    limit: int,
    offset: int,
    show_all: bool,
    sort: str,
    as_json: bool,
) -> None:
    """List sessions, newest first; says how many of how many it shows."""
    db = env.db()
    page: Page = db.store.read(
        page_fn(user_id, status, mode, None if show_all else limit, offset, f"{sort}_at")
    )
    rows = page.rows
    has_more = offset + len(rows) < page.total
    if as_json:
        emit_json(
            {
                "sessions": [_summary_json(row) for row in rows],
                "total": page.total,
                "offset": offset,
                "limit": None if show_all else limit,
                "has_more": has_more,
            }
        )
        return
    if rows:
        headers = ("ID", "USER", "MODE", "STATUS", "PHASE", "STEP", "MSGS", "CREATED", "UPDATED")
        click.echo(
            table(
                headers,
                [
                    (
                        r.session_id,
                        shorten(r.user_id, 20),
                        shorten(r.mode, 16),
                        r.status,
                        shorten(r.current_phase, 20),
                        r.current_step,
                        r.message_count,
                        when(r.created_at),
                        when(r.updated_at),
                    )
                    for r in rows
                ],
            )
        )
    click.echo(_page_note(len(rows), page.total, offset, has_more), err=True)


def _page_note(shown: int, total: int, offset: int, has_more: bool) -> str:
    if total == 0:
        return "no sessions match"
    if shown == 0:
        return f"showing 0 of {total} (--offset {offset} is past the last one)"
    span = f"{offset + 1}-{offset + shown} of {total}" if offset else f"{shown} of {total}"
    more = f"; next page: --offset {offset + shown}, or --all" if has_more else ""
    return f"showing {span}{more}"


def _lease_text(summary: SessionSummary) -> str:
    if summary.owner is None:
        return "none (no live worker holds it)"
    now = utc_now()
    expires = summary.lease_expires_at
    if expires is not None and expires >= now:
        return f"held by {summary.owner} until {when(expires)} ({age(expires, now)})"
    return f"lapsed (was {summary.owner}, until {when(expires)})"


def _message_json(seq: int, message: dict[str, Any]) -> dict[str, Any]:
    return {"seq": seq, "message": message}


def _message_lines(seq: int, message: dict[str, Any], width: int | None) -> list[str]:
    role = message.get("role", "?")
    agent = message.get("agent")
    head = f"[{seq}] {role}" + (f" ({agent})" if agent else "")
    if isinstance(message.get("timestamp"), str):
        head += f"  {message['timestamp']}"
    content = message.get("content")
    if not isinstance(content, str):
        content = _json.encode(content) if content is not None else ""
    extra = {k: v for k, v in message.items() if k not in ("role", "agent", "content", "timestamp")}
    if width is not None:
        lines = [f"{head}: {shorten(content, width)}"]
    else:
        lines = [head, *(f"    {line}" for line in content.splitlines() or [""])]
    if extra:
        lines.append(f"    extra: {shorten(_json.encode(extra), width or 200)}")
    return lines


@cli.command(short_help="Show one session's state, lease and last messages.")
@click.argument("session_id")
@click.option(
    "-n", "--messages", type=click.IntRange(0, MAX_COUNT), default=5, show_default=True,
    help="How many of the last messages to show.",
)  # fmt: skip
@json_option
@click.pass_obj
def show(env: Env, session_id: str, messages: int, as_json: bool) -> None:
    """Show one session: state, phase, step, version, owner and lease, last messages.

    SESSION_ID may be the start of an id (at least 4 characters) that names one session.
    """
    db = env.db()
    session_id = env.resolve(session_id)
    summary: SessionSummary | None = db.store.session_info(session_id)
    if summary is None:
        raise SessionNotFound(session_id)
    state: StateRecord | None = db.store.state(session_id)
    last: list[tuple[int, dict[str, Any]]] | None = []
    if messages:
        last = db.store.history(session_id, messages)
    last = last or []
    pending: list[ApprovalRecord] = db.store.pending_approvals(session_id)
    context = _json.decode(state.context_json) if state is not None else None
    plan = _json.decode(state.plan_json) if state is not None else None
    if as_json:
        document = _summary_json(summary)
        document.update(
            config=summary.config,
            context_variables=context,
            plan_data=plan,
            expires_at=iso(state.expires_at) if state is not None else None,
            epoch=state.epoch if state is not None else None,
            pending_approvals=[
                {
                    "approval_id": a.approval_id,
                    "approval_type": a.approval_type,
                    "created_at": iso(a.created_at),
                    "expires_at": iso(a.expires_at),
                }
                for a in pending
            ],
            last_messages=[_message_json(seq, m) for seq, m in last],
        )
        emit_json(document)
        return
    items: list[tuple[str, Any]] = [
        ("session", summary.session_id),
        ("name", summary.name),
        ("user", summary.user_id),
        ("mode", summary.mode),
        ("status", summary.status),
        ("phase", summary.current_phase),
        ("step", summary.current_step),
        ("version", summary.version),
        ("messages", summary.message_count),
        ("created", when(summary.created_at)),
        ("updated", f"{when(summary.updated_at)} ({age(summary.updated_at)})"),
        ("expires", when(state.expires_at) if state is not None else None),
        ("owner/lease", _lease_text(summary)),
        ("context keys", ", ".join(sorted(context)) if context else "(none)"),
        ("plan", "yes" if plan is not None else "no"),
        ("approvals", f"{len(pending)} pending"),
    ]
    click.echo(pairs(items))
    for a in pending:
        click.echo(f"  {a.approval_id}  {a.approval_type}  expires {when(a.expires_at)}")
    if last:
        click.echo(f"last {len(last)} messages:")
        for seq, message in last:
            click.echo("\n".join(f"  {line}" for line in _message_lines(seq, message, 100)))


@cli.command()
@click.argument("session_id")
@click.option(
    "--tail", type=click.IntRange(1, MAX_COUNT), default=None, metavar="N",
    help="Only the last N messages (default: all).",
)  # fmt: skip
@json_option
@click.pass_obj
def history(env: Env, session_id: str, tail: int | None, as_json: bool) -> None:
    """Print a session's conversation history, oldest first (SESSION_ID or its start)."""
    db = env.db()
    session_id = env.resolve(session_id)
    found: list[tuple[int, dict[str, Any]]] | None = db.store.history(session_id, tail)
    if found is None:
        raise SessionNotFound(session_id)
    if as_json:
        emit_json([_message_json(seq, message) for seq, message in found])
        return
    if not found:
        click.echo("no messages", err=True)
    for seq, message in found:
        click.echo("\n".join(_message_lines(seq, message, None)))


_ops.register(cli, json_option)


_transfer.register(cli, json_option)
_check.register(cli, json_option)


def main() -> None:
    """The ``sessions`` console script."""
    cli.main(prog_name="sessions")


__all__ = ["cli", "main"]
