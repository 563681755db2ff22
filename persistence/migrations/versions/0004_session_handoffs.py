"""session_handoffs: a process asking another to hand a session over

A row per session whose live owner another process wants it from (the doorbell on
PostgreSQL is a ``NOTIFY session_handoff``; on SQLite the owners poll this table). Only
adds a table, so the code of revision 0003 keeps working against it (it never asks, and
is never asked: its sessions change hands when their leases lapse, as before).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import persistence._models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "session_handoffs",
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("requested_at", persistence._models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
    )
    op.create_index("ix_session_handoffs_owner", "session_handoffs", ["owner"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_session_handoffs_owner", table_name="session_handoffs")
    op.drop_table("session_handoffs")
