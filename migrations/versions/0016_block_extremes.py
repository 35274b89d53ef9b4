"""Block summaries of dense days keep each hour's min and max and the first time each is
reached (blocks.hour_summaries layouts 4 and 5), from which a chart's min/max per bucket of
whole hours is built without decoding the points.

Upgrade rewrites the summary of every stored block from its newest versions (`latest`, else
`body`), walking the table in key order `CHUNK` blocks per query (keyset, so the table is
never held in memory); a block whose newest numeric versions include a non-finite value gets
none (NULL: reads decode it). Downgrade writes them back without the extremes (layouts 1-3,
as 0015 does). A summary of either kind answers the sums reads, so the rewrite may be
interrupted without harm to them; a chart decodes while any summary it reads lacks extremes.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

from besmart_server.server.signals.reformat import migration_chunk, resummarize

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    resummarize(op.get_bind(), extremes=True, chunk=migration_chunk())


def downgrade() -> None:
    resummarize(op.get_bind(), extremes=False, chunk=migration_chunk())
