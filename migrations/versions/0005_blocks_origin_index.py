"""An index on blocks (series_id, origin, day): a counter's neighbour search finds the nearest
block of each origin before and after a window however far, without scanning the days of the
other origins (the primary key orders blocks by day first).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_blocks_series_origin_day", "blocks", ["series_id", "origin", "day"])


def downgrade() -> None:
    op.drop_index("ix_blocks_series_origin_day", table_name="blocks")
