"""The (series_id, origin, day) index of 0005 keeps only the blocks of origins other than
measured, and on PostgreSQL a block stays in its row up to a page and `blocks` gets its own
autovacuum thresholds.

The index of every block cost 0.3 bytes a point on PostgreSQL (each rewrite of a block that
is not a HOT update adds an entry) and a write to maintain; measured blocks, most of the
table, find their counter neighbours by the primary key (series_id, day, origin) just as
well. A block of 2-8 KB (a 1-minute day is ~2.5 KB) went to TOAST, two chunks and an index
entry each; with `toast_tuple_target` at a page's worth it stays inline. Every rewrite of a
block leaves a dead row, so autovacuum (where it is on) visits `blocks` after 1,000 + 5 % of
its rows are dead, not 50 + 20 %: what the server's own vacuum does when it is off. With
either vacuuming, pages are best filled whole (`fillfactor` 100, not 0011's 90): the room
left for HOT updates held too few of a page's rewritten blocks to pay for itself (the
benchmark's year in-process with the server's vacuum: 3.68 B/pt at 90, 3.55 at 100).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_MEASURED = 1  # wire.ORIGIN_MEASURED, written out: a migration keeps its meaning
_PG_OPTIONS = {
    "fillfactor": "100",
    "toast_tuple_target": "8160",
    "autovacuum_vacuum_scale_factor": "0.05",
    "autovacuum_vacuum_threshold": "1000",
}


def upgrade() -> None:
    op.drop_index("ix_blocks_series_origin_day", table_name="blocks")
    where = sa.text(f"origin <> {_MEASURED}")
    op.create_index(
        "ix_blocks_other_origins",
        "blocks",
        ["series_id", "origin", "day"],
        sqlite_where=where,
        postgresql_where=where,
    )
    if op.get_bind().dialect.name == "postgresql":
        options = ", ".join(f"{k} = {v}" for k, v in _PG_OPTIONS.items())
        op.execute(f"ALTER TABLE blocks SET ({options})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE blocks RESET ({', '.join(_PG_OPTIONS)})")
        op.execute("ALTER TABLE blocks SET (fillfactor = 90)")  # 0011's
    op.drop_index("ix_blocks_other_origins", table_name="blocks")
    op.create_index("ix_blocks_series_origin_day", "blocks", ["series_id", "origin", "day"])
