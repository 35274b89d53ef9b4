"""Every stored block rewritten in another body format (signals/blocks.py): what the
migrations that change the format run, up and down (0011: formats 1 and 2; 0019: 2 and 3).

The table is walked in key order, `chunk` blocks per query (keyset, so the table is never
held in memory); a chunk's blocks not yet in the format are decoded at once and rewritten
(body and latest). The summary columns (n, the times, the hour summaries) describe the same
points and stay.
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

from besmart_server.server.signals.blocks import decode_batch, encode_batch, format_of

CHUNK = 2_000  # blocks read per query; the migrations' tests set a small one ("blocks_chunk")

# The columns every revision since 0004 has, whatever else a block row holds then.
_blocks = sa.table(
    "blocks",
    sa.column("series_id", sa.Integer),
    sa.column("day", sa.BigInteger()),
    sa.column("origin", sa.SmallInteger),
    sa.column("body", sa.LargeBinary),
    sa.column("latest", sa.LargeBinary),
)


def migration_chunk() -> int:
    """The chunk of the running migration: CHUNK, or its config's "blocks_chunk"."""
    cfg = op.get_context().config
    size = cfg.attributes.get("blocks_chunk", CHUNK) if cfg is not None else CHUNK
    return int(size)


def reencode(bind: Connection, to: int, chunk: int = CHUNK) -> int:
    """Every block not in format `to` rewritten in it; returns how many were."""
    b = _blocks.c
    update = (
        _blocks.update()
        .where(
            b.series_id == sa.bindparam("k_sid"),
            b.day == sa.bindparam("k_day"),
            b.origin == sa.bindparam("k_origin"),
        )
        .values(body=sa.bindparam("v_body"), latest=sa.bindparam("v_latest"))
    )
    after: tuple[int, int, int] | None = None
    done = 0
    while True:
        query = sa.select(b.series_id, b.day, b.origin, b.body).order_by(
            b.series_id, b.day, b.origin
        )
        if after is not None:
            query = query.where(sa.tuple_(b.series_id, b.day, b.origin) > after)
        rows = bind.execute(query.limit(chunk)).all()
        stale = [r for r in rows if format_of(bytes(r.body)) != to]
        if stale:
            f, counts = decode_batch([(int(r.day), int(r.origin), bytes(r.body)) for r in stale])
            sid = np.repeat(np.array([int(r.series_id) for r in stale], dtype=np.int64), counts)
            # One block out per block in: key order, each block's points contiguous and sorted.
            fresh = encode_batch(sid, f, fmt=to)
            bind.execute(
                update,
                [
                    {
                        "k_sid": s,
                        "k_day": e.day,
                        "k_origin": e.origin,
                        "v_body": e.body,
                        "v_latest": e.latest,
                    }
                    for s, e in fresh
                ],
            )
            done += len(fresh)
        if len(rows) < chunk:
            return done
        last = rows[-1]
        after = (int(last.series_id), int(last.day), int(last.origin))
