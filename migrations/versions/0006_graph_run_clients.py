"""The clients each graph run writes to, so their readers may see the run.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "graph_run_clients",
        sa.Column(
            "run_id",
            sa.Integer(),
            sa.ForeignKey("graph_runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "client_cid",
            sa.Integer(),
            sa.ForeignKey("clients.cid", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_index("ix_graph_run_clients_client_cid", "graph_run_clients", ["client_cid"])


def downgrade() -> None:
    op.drop_index("ix_graph_run_clients_client_cid", table_name="graph_run_clients")
    op.drop_table("graph_run_clients")
