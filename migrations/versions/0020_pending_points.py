"""The write-ahead table `pending`: points a write acknowledged before they are merged into
their day blocks (signals/store.py, "Write-ahead"). Downgrade merges nothing: run the server
(or any read) first so that the table is empty, or its points are lost.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pending"),
    )
    op.create_index("ix_pending_series_id_id", "pending", ["series_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_pending_series_id_id", table_name="pending")
    op.drop_table("pending")
