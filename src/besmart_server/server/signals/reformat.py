"""Every stored block rewritten: what the migrations that change how blocks are kept run, up
and down — a new body format (0011: formats 1 and 2; 0019: 2 and 3) or new summaries (0015,
0016: the hour summaries' layouts).

The table is walked in key order, `chunk` blocks per query (keyset, so it is never held in
memory); a chunk's blocks are decoded at once and rewritten. What a rewrite leaves alone
describes the same points and stays.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection, Row

from besmart_server.server.signals.blocks import (
    decode_batch,
    encode_batch,
    format_of,
    hour_summaries,
    keeps_summary,
)
from besmart_server.server.signals.pipeline import I64, Frame

CHUNK = 2_000  # blocks read per query; the migrations' tests set a small one ("blocks_chunk")

# The key and the columns a rewrite reads or writes (`hours` from 0015 on).
_blocks = sa.table(
    "blocks",
    sa.column("series_id", sa.Integer),
    sa.column("day", sa.BigInteger()),
    sa.column("origin", sa.SmallInteger),
    sa.column("n", sa.Integer),
    sa.column("body", sa.LargeBinary),
    sa.column("latest", sa.LargeBinary),
    sa.column("hours", sa.LargeBinary),
)


def migration_chunk(default: int = CHUNK) -> int:
    """The running migration's chunk: `default`, or its config's "blocks_chunk"."""
    cfg = op.get_context().config
    size = cfg.attributes.get("blocks_chunk", default) if cfg is not None else default
    return int(size)


def _walk(
    bind: Connection, body: sa.ColumnElement[bytes], chunk: int
) -> Iterator[Sequence[Row[tuple[int, int, int, int, bytes]]]]:
    """The blocks' (series_id, day, origin, n, body) in key order, `chunk` at a time."""
    b = _blocks.c
    after: tuple[int, int, int] | None = None
    while True:
        query = sa.select(b.series_id, b.day, b.origin, b.n, body.label("body")).order_by(
            b.series_id, b.day, b.origin
        )
        if after is not None:
            query = query.where(sa.tuple_(b.series_id, b.day, b.origin) > after)
        rows = bind.execute(query.limit(chunk)).all()
        yield rows
        if len(rows) < chunk:
            return
        last = rows[-1]
        after = (int(last.series_id), int(last.day), int(last.origin))


def _update(*columns: str) -> sa.Update:
    """UPDATE of `columns` (parameters v_<column>) of the block with key k_sid, k_day,
    k_origin."""
    b = _blocks.c
    return (
        _blocks.update()
        .where(
            b.series_id == sa.bindparam("k_sid"),
            b.day == sa.bindparam("k_day"),
            b.origin == sa.bindparam("k_origin"),
        )
        .values({c: sa.bindparam(f"v_{c}") for c in columns})
    )


def _points(rows: Sequence[Row[tuple[int, int, int, int, bytes]]]) -> tuple[Frame, I64, I64]:
    """The rows' bodies decoded: (frame, each point's series id, each block's count)."""
    f, counts = decode_batch([(int(r.day), int(r.origin), bytes(r.body)) for r in rows])
    sid = np.repeat(np.array([int(r.series_id) for r in rows], dtype=np.int64), counts)
    return f, sid, counts


def reencode(bind: Connection, to: int, chunk: int = CHUNK) -> int:
    """Every block not in format `to` rewritten in it (body and latest); returns how many."""
    update = _update("body", "latest")
    done = 0
    for rows in _walk(bind, _blocks.c.body, chunk):
        stale = [r for r in rows if format_of(bytes(r.body)) != to]
        if not stale:
            continue
        f, sid, _ = _points(stale)
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
    return done


def resummarize(bind: Connection, *, extremes: bool, chunk: int = CHUNK) -> None:
    """Every block's summary (`hours`) computed again as a write gives it: with each hour's
    extremes (layouts 4 and 5) or without (1-3), and none for a block of few points
    (blocks.keeps_summary)."""
    update = _update("hours")
    newest = sa.func.coalesce(_blocks.c.latest, _blocks.c.body)
    for rows in _walk(bind, newest, chunk):
        if not rows:
            continue
        f, sid, counts = _points(rows)
        first = np.zeros(len(f), dtype=np.bool_)
        first[np.cumsum(counts) - counts] = True
        # A `latest` body and a body alike: the newest of each time is its last version.
        sums = hour_summaries(sid, f, first, extremes=extremes)
        kept = keeps_summary(np.array([int(r.n) for r in rows], dtype=np.int64)).tolist()
        bind.execute(
            update,
            [
                {
                    "k_sid": r.series_id,
                    "k_day": r.day,
                    "k_origin": r.origin,
                    "v_hours": h if k else None,
                }
                for r, h, k in zip(rows, sums, kept, strict=True)
            ],
        )
