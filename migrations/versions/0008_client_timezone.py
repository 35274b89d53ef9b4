"""A client's time zone (`clients.timezone`, an IANA name, default UTC): what the CLI counts
calendar buckets (local days, months) in when a read names no `tz`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
# After 0007 (whole-ms stamps) as main had it when this branch was rebased.
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("timezone")
