"""The store's operations: plain synchronous calls, from any thread.

Each write is one operation of :mod:`persistence._lifecycle`, :mod:`persistence._approvals`,
:mod:`persistence._connections`, :mod:`persistence._admin` or :mod:`persistence._transfer`,
run by the group-commit writer and returned once committed. Hot reads run on the
:class:`ReadPool` in the calling thread; the others run Core on the read engine's pool,
also in the calling thread. Reads never block writes (WAL on SQLite, MVCC on PostgreSQL).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection

from persistence import _admin, _approvals, _connections, _fork, _lifecycle, _sweep, _transfer
from persistence._backend import Backend
from persistence._errors import CreatedBeforeFork, StoreUnavailable
from persistence._migrate import check_schema, current_revision, downgrade_op, upgrade_op
from persistence._reads import ReadPool
from persistence._records import (
    ApprovalRecord,
    Checkpoint,
    Lease,
    MessageRow,
    NewSession,
    SessionDocument,
    SessionSummary,
    StateRecord,
    SweepCounts,
)
from persistence._write_ops import WriteOp
from persistence._writer import GroupCommitWriter

T = TypeVar("T")


class Store:
    """The session store's operations on one database.

    Every write waits at most ``timeout`` seconds (unless a call says otherwise) and
    raises :class:`StoreUnavailable` when the database refused it or did not answer.
    """

    def __init__(
        self, backend: Backend, writer: GroupCommitWriter, reads: ReadPool, timeout: float
    ) -> None:
        self._backend = backend
        self._writer = writer
        self._reads = reads
        self.timeout = timeout
        self._generation = _fork.generation()
        self._pid = os.getpid()

    @property
    def forked(self) -> bool:
        """Whether this is a forked child of the process that opened the store."""
        return self._generation != _fork.generation()

    def _usable(self) -> None:
        if self._generation != _fork.generation():
            raise CreatedBeforeFork("session store", self._pid)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._backend.name

    @property
    def backend(self) -> Backend:
        """The database's backend."""
        return self._backend

    @property
    def writer(self) -> GroupCommitWriter:
        """The group-commit writer (for its stats)."""
        return self._writer

    @property
    def reads(self) -> ReadPool:
        """The pool of the hot reads."""
        return self._reads

    def write(self, op: WriteOp, timeout: float | None = None) -> Any:
        """Run one write operation through the writer; its result once committed."""
        self._usable()
        return self._writer.call(op, self.timeout if timeout is None else timeout)

    def read(self, fn: Callable[[Connection], T]) -> T:
        """Run a Core read on a pooled connection of the read engine, in this thread.

        Raises:
            StoreUnavailable: the database could not be read.
        """
        self._usable()
        try:
            with self._backend.read_engine.connect() as connection:
                return fn(connection)
        except StoreUnavailable:
            raise
        except Exception as exc:
            if isinstance(exc, LookupError | ValueError | TypeError):
                raise
            raise StoreUnavailable(f"the database could not be read: {exc}") from exc

    # ------------------------------------------------------------------ a session's life

    def create_session(self, new: NewSession) -> bool:
        """Insert a session and its initial state (owned by ``new.owner`` if given).

        Returns ``False`` if a session with the caller-chosen id (``new.caller_id``) and
        the same arguments exists already: a retry of a create that committed.

        Raises:
            SessionExists: a different session has that caller-chosen id.
        """
        return bool(self.write(_lifecycle.create_session(new)))

    def take_lease(
        self,
        session_id: str,
        owner: str,
        now: datetime,
        lease_until: datetime,
        timeout: float | None = None,
    ) -> Lease:
        """Take (or re-take) a session for ``owner``, bumping its epoch.

        Raises:
            SessionNotFound: no such session.
            InvalidTransition: the session is completed or expired.
            SessionOwnedElsewhere: another owner's lease is still valid.
        """
        op = _lifecycle.take_lease(session_id, owner, now, lease_until)
        lease: Lease = self.write(op, timeout)
        return lease

    def checkpoint(self, cp: Checkpoint, timeout: float | None = None) -> int:
        """Durably apply one checkpoint; return the new version.

        Raises:
            SessionNotFound, SessionOwnedElsewhere, InvalidTransition, StaleSession: the
                guard did not match; nothing was written.
        """
        version: int = self.write(_lifecycle.checkpoint(cp), timeout)
        return version

    def transition(  # noqa: PLR0917
        self,
        session_id: str,
        epoch: int,
        version: int,
        from_statuses: Sequence[str],
        to_status: str,
        action: str,
        now: datetime,
        expires_at: datetime | None,
        release: bool,
        timeout: float | None = None,
    ) -> int:
        """Change a live session's status (fenced); return the new version."""
        op = _lifecycle.transition(
            session_id, epoch, version, from_statuses, to_status, action, now, expires_at, release
        )
        new_version: int = self.write(op, timeout)
        return new_version

    def delete_session(self, session_id: str, owner: str, now: datetime) -> bool:
        """Delete a session with everything attached; ``False`` when it does not exist.

        Raises:
            SessionOwnedElsewhere: another owner holds a valid lease on it.
        """
        return bool(self.write(_lifecycle.delete_session(session_id, owner, now)))

    def release_lease(self, session_id: str, owner: str, epoch: int) -> bool:
        """Give up a lease (no-op if it was taken over meanwhile)."""
        return bool(self.write(_lifecycle.release_lease(session_id, owner, epoch)))

    def release_all(self, owner: str) -> int:
        """Give up every lease ``owner`` holds."""
        return int(self.write(_lifecycle.release_all(owner)))

    def renew_leases(self, owner: str, lease_until: datetime, epochs: dict[str, int]) -> set[str]:
        """Extend the leases ``owner`` holds at exactly these ``epochs``; return those lost."""
        lost: set[str] = self.write(_lifecycle.renew_leases(owner, lease_until, epochs))
        return lost

    def sweep(
        self,
        now: datetime,
        connection_cutoff: datetime,
        *,
        sweeper: str | None = None,
        unless_swept_within: float | None = None,
        purge_before: datetime | None = None,
        batch: int = _sweep.SWEEP_BATCH,
    ) -> SweepCounts:
        """Expire idle sessions and stale approvals, drop dead connections, in batches.

        Args:
            now: the sweep's time.
            connection_cutoff: connections whose last heartbeat is older are dropped.
            sweeper: claim the sweep for this owner first (see :func:`_sweep.claim`).
            unless_swept_within: with ``sweeper``: do nothing (``skipped``) when another
                process started a sweep less than this many seconds before ``now``.
            purge_before: also delete completed and expired sessions not updated since.
            batch: rows of each kind per transaction.
        """
        if sweeper is not None and not self.write(_sweep.claim(sweeper, now, unless_swept_within)):
            return SweepCounts([], 0, 0, skipped=True)
        total = SweepCounts([], 0, 0)
        full = True
        while full:
            part, full = self.write(_sweep.sweep_batch(now, connection_cutoff, purge_before, batch))
            total = _sweep.merge(total, part)
        return total

    # ------------------------------------------------------------------ hot reads

    def load(self, session_id: str) -> SessionDocument | None:
        """The whole session with its history, or ``None`` if it does not exist."""
        self._usable()
        return self._reads.load(session_id)

    def state(self, session_id: str) -> StateRecord | None:
        """The state row of a session, without its history."""
        self._usable()
        return self._reads.state(session_id)

    def message_rows(self, session_id: str) -> list[MessageRow]:
        """A session's history as stored (encoded rows, oldest first)."""
        return self._reads.message_rows(session_id)

    def session_info(self, session_id: str) -> SessionSummary | None:
        """A session's summary, whatever its status."""
        self._usable()
        return self._reads.session_info(session_id)

    def list_sessions(
        self,
        user_id: str | None,
        status: str | None,
        mode: str | None,
        limit: int,
        *,
        newest_by: str = "updated_at",
    ) -> list[SessionSummary]:
        """Sessions matching the filters, most recently updated (or created) first."""
        self._usable()
        return self._reads.list_sessions(user_id, status, mode, limit, newest_by)

    # ------------------------------------------------------------------ approvals

    def create_approval(  # noqa: PLR0917
        self,
        approval_id: str,
        session_id: str,
        approval_type: str,
        context_json: str,
        now: datetime,
        expires_at: datetime | None,
    ) -> None:
        """Insert a pending approval request for an existing, live session."""
        self.write(
            _approvals.create_approval(
                approval_id, session_id, approval_type, context_json, now, expires_at
            )
        )

    def resolve_approval(
        self, approval_id: str, resolution: str, result_json: str | None, now: datetime
    ) -> bool:
        """Resolve a pending, unexpired approval; ``False`` if it is no longer pending.

        Raises:
            ApprovalNotFound: no such approval request.
        """
        op = _approvals.resolve_approval(approval_id, resolution, result_json, now)
        return bool(self.write(op))

    def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        """One approval request."""
        return self.read(_approvals.get_approval(approval_id))

    def pending_approvals(self, session_id: str) -> list[ApprovalRecord]:
        """The pending approval requests of a session, oldest first."""
        return self.read(_approvals.pending_approvals(session_id))

    # ------------------------------------------------------------------ connections

    def register_connection(
        self, task_id: str, session_id: str | None, instance: str, now: datetime
    ) -> None:
        """Record (or refresh) a live connection of a task."""
        self.write(_connections.register_connection(task_id, session_id, instance, now))

    def heartbeat(self, task_id: str, now: datetime) -> bool:
        """Refresh a connection's heartbeat; ``False`` if it is unknown (or was reaped)."""
        return bool(self.write(_connections.heartbeat(task_id, now)))

    def unregister_connection(self, task_id: str) -> bool:
        """Forget a connection; ``False`` if it was unknown."""
        return bool(self.write(_connections.unregister_connection(task_id)))

    def connections_of(self, session_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Live connections (of the given sessions, or all)."""
        return self.read(_connections.connections_of(session_ids))

    # ------------------------------------------------------------------ operators' tools

    def history(
        self, session_id: str, tail: int | None = None
    ) -> list[tuple[int, dict[str, Any]]] | None:
        """The last ``tail`` messages (all if ``None``) as ``(seq, message)``, oldest first.

        Returns ``None`` when the session does not exist.
        """
        return self.read(_admin.history_fn(session_id, tail))

    def count_purgeable(self, statuses: Sequence[str], cutoff: datetime, now: datetime) -> int:
        """How many sessions :meth:`purge` would delete."""
        return self.read(_admin.count_purgeable_fn(statuses, cutoff, now))

    def purge(
        self, statuses: Sequence[str], cutoff: datetime, now: datetime, limit: int
    ) -> list[str]:
        """Delete at most ``limit`` unowned sessions in ``statuses`` not updated since ``cutoff``.

        One transaction per call: interrupting a purge between calls (or during one)
        leaves whole sessions or none. Returns the ids deleted.
        """
        deleted: list[str] = self.write(_admin.purge_op(statuses, cutoff, now, limit))
        return deleted

    def overview(self, now: datetime) -> _admin.StoreOverview:
        """Counts by status and mode, database size, oldest active, pending approvals."""
        return self.read(_admin.overview_fn(now))

    def export_session(self, session_id: str) -> dict[str, Any] | None:
        """A session with its history and approvals as a JSON-ready document, or ``None``."""
        return self.read(_transfer.export_fn(session_id))

    def import_session(
        self, document: Any, now: datetime, *, replace: bool = False, new_id: str | None = None
    ) -> str:
        """Write a document of :meth:`export_session` (validated first); return its id.

        ``new_id`` imports a copy under that id (its approval requests get new ids too).

        Raises:
            InvalidArgument: not a valid export; nothing was written.
            SessionExists: the session exists and ``replace`` is false.
            SessionOwnedElsewhere: ``replace`` of a session a live owner holds.
        """
        session_id: str = self.write(
            _transfer.import_op(document, now, replace=replace, new_id=new_id)
        )
        return session_id

    def schema_revision(self) -> str | None:
        """The alembic revision the database is at (``None``: no schema yet)."""
        return self.read(current_revision)

    def check_schema(self, *, upgrade_allowed: bool) -> bool:
        """Whether this code may run against the schema; ``True`` if it must upgrade first.

        Raises:
            SchemaTooNew: the database needs newer code (see :mod:`persistence._migrate`).
            SchemaOutdated: the database is behind and ``upgrade_allowed`` is off.
        """
        return self.read(
            lambda connection: check_schema(connection, upgrade_allowed=upgrade_allowed)
        )

    def migrate(self, revision: str = "head", timeout: float | None = None) -> None:
        """Upgrade the schema to ``revision`` (one transaction, see :func:`upgrade_op`)."""
        self.write(upgrade_op(revision), timeout)

    def downgrade(self, revision: str, timeout: float | None = None) -> None:
        """Take the schema back to ``revision`` (``"base"``: empty)."""
        self.write(downgrade_op(revision), timeout)
