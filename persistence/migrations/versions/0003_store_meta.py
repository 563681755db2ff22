"""store_meta: facts about the store that every process sharing it reads

Two rows: ``sweep`` (when the last expiry sweep started, and which process ran it, so
that N processes cost one sweep per interval, not N) and ``compatible_from`` (the oldest
code revision, the head revision a release was built with, that may still run against
this schema: a process older than it refuses to start). Only adds a table, so the code of
revision 0002 keeps working against it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import persistence._models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Code of this revision or newer may run against this schema (it only adds a table).
COMPATIBLE_FROM = "0002"


def upgrade() -> None:
    table = op.create_table(
        "store_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=True),
        sa.Column("updated_at", persistence._models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.bulk_insert(
        table,
        [
            {"key": "sweep", "value": None, "updated_at": None},
            {"key": "compatible_from", "value": COMPATIBLE_FROM, "updated_at": None},
        ],
    )


def downgrade() -> None:
    op.drop_table("store_meta")
