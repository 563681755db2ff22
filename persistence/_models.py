"""SQLAlchemy models: the tables of the session store.

JSON values are stored as text that :mod:`persistence._json` wrote, so that what is read
back is exactly what was validated, on every dialect. The alembic migrations in
``persistence/migrations`` are the source of the schema; ``tests/persistence`` proves that
they and these models agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SESSION_STATUSES = ("active", "suspended", "completed", "expired")
#: The statuses in which a session can be owned, written and leased.
LIVE_STATUSES = ("active", "suspended")
APPROVAL_STATUSES = ("pending", "resolved", "expired", "cancelled")
APPROVAL_RESOLUTIONS = ("approved", "rejected", "modified")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every dialect (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            msg = f"naive datetime {value!r}: the clock must return aware UTC datetimes"
            raise ValueError(msg)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Return aware UTC datetimes."""
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)  # noqa: S101 - driver contract
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the session store."""


class SessionRow(Base):
    """A session: identity, owner user, configuration."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_active_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))
    meta: Mapped[str] = mapped_column(Text)
    resource_limits: Mapped[str | None] = mapped_column(Text)


class SessionStateRow(Base):
    """The resumable state of a session, fenced by ``version`` and the lease ``epoch``."""

    __tablename__ = "session_states"
    __table_args__ = (
        Index("ix_session_states_status_expires_at", "status", "expires_at"),
        # No index over updated_at alone: each one is pages written by every checkpoint,
        # and (status, updated_at) serves the listing and the purge (migration 0002).
        Index("ix_session_states_status_updated_at", "status", "updated_at"),
        Index("ix_session_states_owner", "owner"),
    )

    session_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    mode: Mapped[str] = mapped_column(String(64))
    context_variables: Mapped[str] = mapped_column(Text)
    plan_data: Mapped[str | None] = mapped_column(Text)
    current_phase: Mapped[str] = mapped_column(String(255))
    current_step: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer)
    message_count: Mapped[int] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(64))
    epoch: Mapped[int] = mapped_column(Integer)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SessionMessageRow(Base):
    """One message of a session's history; append-only, keyed ``(session_id, seq)``."""

    __tablename__ = "session_messages"
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012 - SQLAlchemy API

    session_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    role: Mapped[str | None] = mapped_column(String(64))
    agent: Mapped[str | None] = mapped_column(String(255))
    content: Mapped[str | None] = mapped_column(Text)
    timestamp: Mapped[str | None] = mapped_column(String(64))
    extra: Mapped[str | None] = mapped_column(Text)


class ApprovalRequestRow(Base):
    """A human-in-the-loop approval request attached to a session."""

    __tablename__ = "approval_requests"
    __table_args__ = (
        Index("ix_approval_requests_status_expires_at", "status", "expires_at"),
        Index("ix_approval_requests_session_id_status", "session_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("sessions.id", ondelete="CASCADE")
    )
    approval_type: Mapped[str] = mapped_column(String(64))
    context: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    resolution: Mapped[str | None] = mapped_column(String(16))
    result: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ActiveConnectionRow(Base):
    """A live client connection (e.g. a websocket of a running task)."""

    __tablename__ = "active_connections"
    __table_args__ = (Index("ix_active_connections_last_heartbeat", "last_heartbeat"),)

    task_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    session_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    server_instance: Mapped[str] = mapped_column(String(64))
    connected_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_heartbeat: Mapped[datetime] = mapped_column(UTCDateTime())


class StoreMetaRow(Base):
    """A fact about the store itself, shared by every process (see migration 0003)."""

    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class HandoffRequestRow(Base):
    """A process asking the owner of a session to hand it over (see migration 0004)."""

    __tablename__ = "session_handoffs"
    __table_args__ = (Index("ix_session_handoffs_owner", "owner"),)

    session_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: The owner asked to hand the session over.
    owner: Mapped[str] = mapped_column(String(64))
    #: The process that asked, which gets the lease.
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
