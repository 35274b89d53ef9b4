"""VEE: quality events, threshold overrides, the validation queue and the audit of edits.

Revision ID: 0013
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

BIG = sa.BigInteger()


def _series_fk() -> sa.ForeignKey:
    return sa.ForeignKey("series.id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "quality_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("series_id", sa.Integer(), _series_fk(), nullable=False),
        sa.Column("since", BIG, nullable=False),
        sa.Column("till", BIG, nullable=False),
        sa.Column("rule", sa.String(40), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("found_at", BIG, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("accepted_by", sa.String(200), nullable=True),
        sa.Column("accepted_at", BIG, nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_quality_events_series_since", "quality_events", ["series_id", "since"])
    op.create_table(
        "vee_thresholds",
        sa.Column(
            "client_cid",
            sa.Integer(),
            sa.ForeignKey("clients.cid", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("sensor_type_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("overrides", sa.Text(), nullable=False),
        sa.Column("updated_at", BIG, nullable=False),
    )
    op.create_table(
        "vee_queue",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("client_cid", sa.Integer(), nullable=False),
        sa.Column("sensor_mid", sa.Integer(), nullable=False),
        sa.Column("signal_type_moid", sa.Integer(), nullable=False),
        sa.Column("since", BIG, nullable=False),
        sa.Column("till", BIG, nullable=False),
        sa.Column("origins", sa.String(20), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("who", sa.String(200), nullable=True),
        sa.Column("method", sa.String(40), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("enqueued_at", BIG, nullable=False),
        sa.Column("claimed_at", BIG, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "vee_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("series_id", sa.Integer(), _series_fk(), nullable=False),
        sa.Column("since", BIG, nullable=False),
        sa.Column("till", BIG, nullable=False),
        sa.Column("origin", sa.Integer(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("acq_time", BIG, nullable=False),
        sa.Column("who", sa.String(200), nullable=False),
        sa.Column("method", sa.String(40), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_vee_audit_series_since", "vee_audit", ["series_id", "since"])


def downgrade() -> None:
    op.drop_index("ix_vee_audit_series_since", table_name="vee_audit")
    op.drop_table("vee_audit")
    op.drop_table("vee_queue")
    op.drop_table("vee_thresholds")
    op.drop_index("ix_quality_events_series_since", table_name="quality_events")
    op.drop_table("quality_events")
