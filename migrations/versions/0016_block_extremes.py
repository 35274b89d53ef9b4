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

import numpy as np
import sqlalchemy as sa
from alembic import op

from besmart_server.server.signals.blocks import decode_batch, hour_summaries

revision = "0016"
down_revision = "0015"
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


def _rewrite(*, extremes: bool) -> None:
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
            sums = hour_summaries(sid, f, first, extremes=extremes)
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
    _rewrite(extremes=True)


def downgrade() -> None:
    _rewrite(extremes=False)
