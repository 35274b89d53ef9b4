"""`pending.stamp`: a live write's stamp of its series, every point's acq (store.py,
"Write-ahead"), so a deferring write on PostgreSQL stamps its series and appends its rows in
one statement (the stamp is not known before it). Rows from before keep their points' acq in
their bodies (stamp NULL). Downgrade refuses while rows with a stamp are pending (their
points' acq would be lost): run any read first, which merges them.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pending", sa.Column("stamp", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    left = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM pending WHERE stamp IS NOT NULL"))
        .scalar_one()
    )
    if left:
        raise RuntimeError(
            f"{left} rows of points are still pending with their stamp apart: merge them "
            "first (any read of the server, or `besmart vee worker`, does), then downgrade"
        )
    with op.batch_alter_table("pending") as batch:
        batch.drop_column("stamp")
