"""Day blocks keep sums per UTC hour (blocks.HOURS) in a new column `hours`, from which a
read of hour-aligned buckets adds up the whole days of its window without decoding them.

Upgrade adds the column and fills it for every stored block from its newest versions
(`latest`, else `body`), walking the table in key order `CHUNK` blocks per query (keyset,
so the table is never held in memory). A block left NULL is decoded by reads, as every
block is before this revision, so the backfill may be interrupted without harm to reads.
Downgrade drops the column.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from besmart_server.server.signals.reformat import migration_chunk, resummarize

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("blocks", sa.Column("hours", sa.LargeBinary(), nullable=True))
    # layouts 1-3 (0016 adds 4 and 5)
    resummarize(op.get_bind(), extremes=False, chunk=migration_chunk())


def downgrade() -> None:
    # Plain SQL on both engines: SQLite (3.35+) drops a column in place, where alembic's
    # batch mode would rebuild the table without its WITHOUT ROWID.
    op.execute("ALTER TABLE blocks DROP COLUMN hours")
