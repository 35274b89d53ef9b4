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

import numpy as np
import sqlalchemy as sa
from alembic import op

from besmart_server.server.signals.blocks import decode_batch, hour_summaries

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

BIG = sa.BigInteger()
CHUNK = 2_000  # blocks read per query; the tests set a small one ("blocks_chunk")

_blocks = sa.table(
    "blocks",
    sa.column("series_id", sa.Integer),
    sa.column("day", BIG),
    sa.column("origin", sa.SmallInteger),
    sa.column("body", sa.LargeBinary),
    sa.column("latest", sa.LargeBinary),
    sa.column("hours", sa.LargeBinary),
)


def _chunk() -> int:
    cfg = op.get_context().config
    size = cfg.attributes.get("blocks_chunk", CHUNK) if cfg is not None else CHUNK
    return int(size)


def _backfill() -> None:
    bind = op.get_bind()
    chunk = _chunk()
    b = _blocks.c
    update = (
        _blocks.update()
        .where(
            b.series_id == sa.bindparam("k_sid"),
            b.day == sa.bindparam("k_day"),
            b.origin == sa.bindparam("k_origin"),
        )
        .values(hours=sa.bindparam("v_hours"))
    )
    after: tuple[int, int, int] | None = None
    while True:
        query = sa.select(
            b.series_id, b.day, b.origin, sa.func.coalesce(b.latest, b.body).label("newest")
        ).order_by(b.series_id, b.day, b.origin)
        if after is not None:
            query = query.where(sa.tuple_(b.series_id, b.day, b.origin) > after)
        rows = bind.execute(query.limit(chunk)).all()
        if rows:
            f, counts = decode_batch([(int(r.day), int(r.origin), bytes(r.newest)) for r in rows])
            sid = np.repeat(np.array([int(r.series_id) for r in rows], dtype=np.int64), counts)
            first = np.zeros(len(f), dtype=np.bool_)
            first[np.cumsum(counts) - counts] = True
            # A `latest` body and a body alike: the newest of each time is its last version.
            sums = hour_summaries(sid, f, first, extremes=False)  # layouts 1-3 (0016 adds 4-6)
            bind.execute(
                update,
                [
                    {"k_sid": r.series_id, "k_day": r.day, "k_origin": r.origin, "v_hours": h}
                    for r, h in zip(rows, sums, strict=True)
                ],
            )
        if len(rows) < chunk:
            return
        last = rows[-1]
        after = (int(last.series_id), int(last.day), int(last.origin))


def upgrade() -> None:
    op.add_column("blocks", sa.Column("hours", sa.LargeBinary(), nullable=True))
    _backfill()


def downgrade() -> None:
    # Plain SQL on both engines: SQLite (3.35+) drops a column in place, where alembic's
    # batch mode would rebuild the table without its WITHOUT ROWID.
    op.execute("ALTER TABLE blocks DROP COLUMN hours")
