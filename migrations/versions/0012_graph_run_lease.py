"""Graph run leases: a running run's worker renews `lease_until`; a run whose lease ran out
(its worker died) is queued again (`attempts` counts the claims) or failed after the last try.

Revision ID: 0012
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("graph_runs") as batch:
        batch.add_column(sa.Column("lease_until", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("acting_for", sa.Text(), nullable=True))
        batch.add_column(sa.Column("claimed_by", sa.String(100), nullable=True))
    op.create_index("ix_graph_runs_state_lease", "graph_runs", ["state", "lease_until"])


def downgrade() -> None:
    op.drop_index("ix_graph_runs_state_lease", table_name="graph_runs")
    with op.batch_alter_table("graph_runs") as batch:
        batch.drop_column("claimed_by")
        batch.drop_column("acting_for")
        batch.drop_column("attempts")
        batch.drop_column("lease_until")
