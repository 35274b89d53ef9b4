"""The write-ahead table `pending`: points a write acknowledged before they are merged into
their day blocks (signals/store.py, "Write-ahead"). Downgrade merges nothing, and refuses
while points are pending (they would be lost): run any read first, which merges them.

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
    if op.get_bind().dialect.name == "postgresql":
        # A row's points are zstd-compressed already (store.pack): PostgreSQL's own
        # compression (pglz, on every row past 2 KB) would cost the writer's backend time for
        # nothing; a row of up to a page stays in the table, a longer one goes to TOAST as it
        # is. Rows live until the next merge: autovacuum (where it is on) visits after 1,000
        # dead ones plus 5 % (the server's own vacuum does the same when it is off).
        op.execute("ALTER TABLE pending ALTER COLUMN body SET STORAGE EXTERNAL")
        op.execute(
            "ALTER TABLE pending SET (toast_tuple_target = 8160, "
            "autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_threshold = 1000)"
        )


def downgrade() -> None:
    left = op.get_bind().execute(sa.text("SELECT count(*) FROM pending")).scalar_one()
    if left:
        raise RuntimeError(
            f"{left} rows of points are still pending: merge them first (any read of the "
            "server, or `besmart vee worker`, does), then downgrade"
        )
    op.drop_index("ix_pending_series_id_id", table_name="pending")
    op.drop_table("pending")
