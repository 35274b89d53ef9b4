"""A version clock per series (`series.acq_us`) instead of the single-row `version_clock`.

Every write used to lock the one clock row until it committed, so all writes ran one at a
time. Stamps now only have to increase per series (signals/store.py): each series keeps its
newest stamp and a write locks only the series it touches. Every series starts from the old
clock's value, which is at least every stamp stored, so the next live write of any series is
newer than every version stored before. Downgrade puts the newest series clock back into
`version_clock`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BIG = sa.BigInteger()


def upgrade() -> None:
    op.add_column("series", sa.Column("acq_us", BIG, nullable=False, server_default="0"))
    op.execute(
        "UPDATE series SET acq_us = coalesce((SELECT last_us FROM version_clock WHERE id = 1), 0)"
    )
    op.drop_table("version_clock")


def downgrade() -> None:
    op.create_table(
        "version_clock",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_us", BIG, nullable=False),
    )
    op.execute(
        "INSERT INTO version_clock (id, last_us) SELECT 1, coalesce(max(acq_us), 0) FROM series"
    )
    # Both engines drop a column in place (SQLite since 3.35); a batch copy of `series` would
    # lose SQLite's AUTOINCREMENT, which keeps deleted ids from being handed out again.
    op.execute("ALTER TABLE series DROP COLUMN acq_us")
