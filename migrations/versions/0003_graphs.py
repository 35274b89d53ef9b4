"""Estimation graphs: stored graphs by name and the record of every graph run.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG = sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "graphs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column(
            "owner_cid",
            sa.Integer(),
            sa.ForeignKey("clients.cid", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("created_at", BIG, nullable=False),
        sa.Column("updated_at", BIG, nullable=False),
        sa.UniqueConstraint("owner_cid", "name", name="uq_graphs_owner_cid_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "graph_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("graph_name", sa.String(200), nullable=False),
        sa.Column("since", BIG, nullable=False),
        sa.Column("till", BIG, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("executor", sa.String(20), nullable=False),
        sa.Column("record", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("created_at", BIG, nullable=False),
        sa.Column("started_at", BIG, nullable=True),
        sa.Column("finished_at", BIG, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_graph_runs_user_id", "graph_runs", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_graph_runs_user_id", table_name="graph_runs")
    op.drop_table("graph_runs")
    op.drop_table("graphs")
