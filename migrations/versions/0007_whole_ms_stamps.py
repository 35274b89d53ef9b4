"""Version stamps as whole milliseconds: the µs stamps written before become distinct ms.

The wire's `acq_time` is ms. Stamps used to be µs (never a whole ms), so versions written
within one millisecond showed the same `acq_time` and an export collapsed them on import.
The store now stamps whole ms (signals/store.py); this moves every older server stamp (a
stamp that is not a whole ms; imports are stored as ms x 1000 and stay) to a whole ms of its
own, in order: the n-th stamp becomes max(its ms rounded up, the previous one's + 1 ms),
skipping any ms an import holds. The version clock is then set past the newest, so the next
live write is newer than all.

Two passes over the blocks, a series and about `CHUNK` blocks at a time: the stamps in use,
then each block holding one re-encoded. Downgrade leaves the stamps as they are (whole ms are
valid stamps for the older code too).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

from besmart_server.server.signals.blocks import decode, encode_batch
from besmart_server.server.signals.pipeline import Frame
from besmart_server.server.signals.reformat import migration_chunk

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BIG = sa.BigInteger()
CHUNK = 5_000  # blocks read per query

_blocks = sa.table(
    "blocks",
    sa.column("series_id", sa.Integer),
    sa.column("day", BIG),
    sa.column("origin", sa.SmallInteger),
    sa.column("n", sa.Integer),
    sa.column("t_last", BIG),
    sa.column("num_first", BIG),
    sa.column("num_last", BIG),
    sa.column("body", sa.LargeBinary),
    sa.column("latest", sa.LargeBinary),
)
_clock = sa.table("version_clock", sa.column("id", sa.Integer), sa.column("last_us", BIG))


def _blocks_of_every_series(bind: sa.Connection, chunk: int) -> Iterator[tuple[int, Frame]]:
    """(series id, points) of every block, in key order, `chunk` blocks per query."""
    b = _blocks.c
    after: tuple[int, int, int] | None = None
    while True:
        query = sa.select(b.series_id, b.day, b.origin, b.body).order_by(
            b.series_id, b.day, b.origin
        )
        if after is not None:
            query = query.where(sa.tuple_(b.series_id, b.day, b.origin) > after)
        rows = bind.execute(query.limit(chunk)).all()
        for r in rows:
            yield int(r.series_id), decode(int(r.day), int(r.origin), bytes(r.body))
        if len(rows) < chunk:
            return
        last = rows[-1]
        after = (int(last.series_id), int(last.day), int(last.origin))


def restamped(
    old: np.ndarray[Any, np.dtype[np.int64]], taken: np.ndarray[Any, np.dtype[np.int64]]
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """New whole-ms stamps (µs) for sorted distinct µs stamps: each its own ms, in order, at
    or after its own ms, and none an imported stamp in use (`taken`), so no version meets
    another. A loop over the distinct stamps (one per write transaction), run once."""
    skip = set(taken.tolist())
    out = np.empty(len(old), dtype=np.int64)
    ms = None
    for i, stamp in enumerate(old.tolist()):
        ms = max(-(-stamp // 1000), ms + 1 if ms is not None else -(2**62))
        while ms * 1000 in skip:
            ms += 1
        out[i] = ms * 1000
    return out


def upgrade() -> None:
    bind = op.get_bind()
    chunk = migration_chunk(CHUNK)
    found: list[np.ndarray[Any, np.dtype[np.int64]]] = []
    imported: list[np.ndarray[Any, np.dtype[np.int64]]] = []
    for _, f in _blocks_of_every_series(bind, chunk):
        server = f.acq % 1000 != 0
        found.append(np.unique(f.acq[server]))
        imported.append(np.unique(f.acq[~server]))
    old = np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)
    if not len(old):
        return
    new = restamped(old, np.unique(np.concatenate(imported)))
    b = _blocks.c
    for sid, f in _blocks_of_every_series(bind, chunk):
        server = f.acq % 1000 != 0
        if not bool(server.any()):
            continue
        acq = f.acq.copy()
        acq[server] = new[np.searchsorted(old, acq[server])]
        g = Frame(f.time, f.origin, acq, f.type, f.value, f.text)
        g = g.take(np.lexsort((g.acq, g.time)))
        ((_, e),) = encode_batch(np.full(len(g), sid, dtype=np.int64), g)
        bind.execute(
            _blocks.update()
            .where(b.series_id == sid, b.day == e.day, b.origin == e.origin)
            .values(
                n=e.n,
                t_last=e.t_last,
                num_first=e.num_first,
                num_last=e.num_last,
                body=e.body,
                latest=e.latest,
            )
        )
    top = int(new[-1])
    bind.execute(
        _clock.update().where(_clock.c.id == 1, _clock.c.last_us < top).values(last_us=top)
    )


def downgrade() -> None:
    """Nothing to undo: whole-ms stamps are valid stamps for the older code."""
