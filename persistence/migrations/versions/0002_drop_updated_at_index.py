"""drop ix_session_states_updated_at

Every checkpoint moves a session's entry in each index over ``updated_at`` or
``expires_at``, so each such index costs pages written per checkpoint. The single-column
index over ``updated_at`` served no query the ``(status, updated_at)`` index does not
serve better: ``list_sessions`` orders a LEFT JOIN from ``sessions`` (SQLite sorts it
either way), and the purge filters by status first.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 11:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_session_states_updated_at", table_name="session_states")


def downgrade() -> None:
    op.create_index("ix_session_states_updated_at", "session_states", ["updated_at"], unique=False)
