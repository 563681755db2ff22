"""``create_session_manager`` and the process-wide ``get_session_manager``."""

from __future__ import annotations

import threading
from typing import Unpack, get_args

import structlog

from actors._logging import configure_logging
from actors._manager import SessionManager
from actors._settings import ManagerOptions, check_options
from actors._validate import Duration, require_duration
from persistence import DEFAULT_APPLICATION_NAME, Database, InvalidArgument
from persistence.sqlite import SqliteSynchronous

#: SQLite takes the busy timeout as a 32-bit count of milliseconds; a day is plenty.
_MAX_BUSY_SECONDS = 86_400
_SYNCHRONOUS = get_args(SqliteSynchronous)


def create_session_manager(
    database_url: str | None = None,
    *,
    sqlite_synchronous: SqliteSynchronous = "NORMAL",
    sqlite_busy_timeout: Duration = 5.0,
    pg_pool_size: int = 5,
    pg_application_name: str | None = None,
    pg_prepared_statements: bool = True,
    auto_migrate: bool = True,
    **options: Unpack[ManagerOptions],
) -> SessionManager:
    """Open the session store and start a manager on it.

    Every setting is checked first: a refused one raises ``InvalidArgument`` before
    anything is opened or created (no SQLite file, no thread). Durations take seconds
    (an ``int`` or a ``float``) or a ``timedelta``.

    Args:
        database_url: default ``$SESSIONS_DATABASE_URL``, else ``./sessions.db`` (a
            plain path is a SQLite file, as is ``sqlite:///path``); ``postgresql://...``
            for several processes. Migrations are applied on a fresh or older database.
        session_ttl: an active session idle for longer (default 24 h) is expired;
            ``timedelta.max`` (or ``float("inf")``, or 100 years or more): never.
        cleanup_interval: seconds between sweeps (default 60), from creation (see
            ``autostart``; at least 0.01, at most 100 years).
        clock: returns the current aware UTC datetime; inject one in tests.
        instance_id: this manager's name as a lease owner (default: random); a printable
            str of 1 to 64 characters.
        lease_ttl: how long this manager's claim on a session lasts without renewal (30 s);
            another process may take the session over after it lapses (at least 0.03 s:
            leases are renewed every third of it).
        max_live: most session actors kept in memory (default 1,000); the least
            recently used are passivated. Each live actor is a thread (one task of
            the container's pids limit), about 21 KiB resident and 8 MiB of reserved
            (not resident) stack; 1,000 stays well inside common limits (systemd's
            default of 4,915 tasks, a 4,096 pids limit).
        idle_timeout: a live actor unused for longer (default 10 min) is passivated;
            ``timedelta.max``: never (only ``max_live`` evicts).
        max_message_bytes: larger messages (default 1 MiB) are refused
            (``PayloadTooLarge``); ``None``: no limit.
        max_state_bytes: larger context / plan / config (default 16 MiB) are refused;
            ``None``: no limit.
        sqlite_synchronous: ``NORMAL`` (the default) or ``FULL``. ``NORMAL`` survives a
            crash or ``kill -9`` of the process, not a power loss or an OS crash (the
            last acknowledged checkpoints can roll back); ``FULL`` survives those too,
            at the cost of an fsync per commit.
        sqlite_busy_timeout: seconds a SQLite write waits for another process holding the
            file's write lock before it is refused (``StoreUnavailable``); at most 1 day.
        call_timeout: seconds a call waits for an actor or the store (default 30).
        max_restarts: crashes (default 5) within ``restart_window`` (1 min) after which
            a session is not restarted (``SessionFailed``).
        restart_window: see ``max_restarts``.
        restart_backoff: delay (default 1 s) before the automatic restart after a second
            crash in the window; it doubles with each further crash, up to
            ``restart_backoff_max``. The first crash is restarted at once; using the
            session restarts it at once. ``0``: no delay.
        restart_backoff_max: the longest delay between automatic restarts (60 s).
        runtime_factory: builds a session's live runtime (an orchestrator object that
            cannot be stored) from its state, the dict ``load()`` returns; one callable,
            or a mapping ``mode -> callable`` (a session of a mode it lacks is refused at
            creation). The session's actor builds it on first use of
            ``manager.runtime()`` (or ``unit_of_work`` / ``run_in_actor``), owns it, and
            closes it when it stops; the next use rebuilds it from the last checkpoint.
        runtime_closer: releases a runtime; default: its ``close()``, else ``aclose()``.
        pg_pool_size: PostgreSQL: connections kept for reads (the writer has its own).
        pg_application_name: PostgreSQL's ``application_name`` of this manager's
            connections, shown in ``pg_stat_activity``; default
            ``session-supervisor/<instance_id>``.
        pg_prepared_statements: PostgreSQL: prepare the hot statements once per
            connection (default). Turn it off behind PgBouncer in transaction mode, which
            hands each transaction to any server connection.
        autostart: run the housekeeping (lease renewals, restarts, and every
            ``cleanup_interval`` the sweep) on a thread from creation, without
            ``await manager.start()`` (default). ``False``: nothing runs until
            ``start()``; tests then call ``sweep()`` themselves.
        retention: completed and expired sessions not updated for longer are deleted
            with everything attached by the sweep, in batches (``None``, the default:
            kept until ``sessions purge``).
        auto_migrate: upgrade a database whose schema is behind this code when it is
            opened (the default). ``False`` for fleets that migrate once with
            ``sessions db upgrade`` before a deploy: then such a database is refused with
            ``SchemaOutdated``. A database newer than this code allows is refused either
            way (``SchemaTooNew``; see "Rolling deploys" in the README).
        history_check: how a save's history is compared with the stored one:
            ``"sampled"`` (the default: O(log n) sampled messages, so an in-place edit
            of a message that is not sampled goes unseen) or ``"full"`` (every message,
            at the cost of encoding the whole history on every save).
        handoff_wait: seconds (default 2) a write waits when another live process owns
            the session: it asks that process to hand the session over (it does within
            milliseconds, unless the session is inside a ``unit_of_work`` there) and then
            takes it. ``0``: refused at once with ``SessionOwnedElsewhere``, as before.

    Raises:
        InvalidArgument: a bad URL or setting; nothing was created.
        StoreUnavailable: the database cannot be opened or migrated.
    """
    if not structlog.is_configured():
        # structlog's own default prints every event, debug included, to stdout: the
        # host's output. Until the application configures logging, show warnings only.
        configure_logging(level="WARNING")
    # Before Database.open: a refused setting leaves nothing behind, not even a file.
    checked = check_options(**options)
    busy = require_duration("sqlite_busy_timeout", sqlite_busy_timeout, maximum=_MAX_BUSY_SECONDS)
    if sqlite_synchronous not in _SYNCHRONOUS:
        raise InvalidArgument(
            f"sqlite_synchronous must be NORMAL or FULL, not {sqlite_synchronous!r}"
        )
    if not isinstance(auto_migrate, bool):
        raise InvalidArgument(f"auto_migrate must be True or False, not {auto_migrate!r}")
    if not isinstance(pg_prepared_statements, bool):
        raise InvalidArgument(
            f"pg_prepared_statements must be True or False, not {pg_prepared_statements!r}"
        )
    options["instance_id"] = checked.instance_id
    application_name = pg_application_name or f"{DEFAULT_APPLICATION_NAME}/{checked.instance_id}"
    if not isinstance(application_name, str) or not application_name.isprintable():
        raise InvalidArgument(
            f"pg_application_name must be printable text, not {application_name!r}"
        )
    db = Database.open(
        database_url,
        sqlite_synchronous=sqlite_synchronous,
        busy_timeout_ms=max(1, round(busy.total_seconds() * 1000)),
        timeout=checked.call_timeout,
        pool_size=pg_pool_size,
        # PostgreSQL truncates longer names (63 bytes) itself; cut at a character here.
        application_name=application_name[:63],
        prepared_statements=pg_prepared_statements,
        auto_migrate=auto_migrate,
    )
    try:
        return SessionManager(db, **options)
    except BaseException:
        db.close()
        raise


class _Global:
    """Holder of the process-wide manager (one object, not a registry of sessions)."""

    lock = threading.Lock()
    manager: SessionManager | None = None


def get_session_manager() -> SessionManager:
    """The process-wide manager, created by :func:`create_session_manager` on first use.

    A closed global manager is replaced by a new one.
    """
    with _Global.lock:
        if _Global.manager is None or _Global.manager.closed:
            _Global.manager = create_session_manager()
        return _Global.manager
