"""Day blocks in format 2 (signals/blocks.py): exact decimals as scaled integers, narrow
byte-planed differences; about a third of format 1's bytes for meter readings.

Upgrade re-encodes every format 1 block (body and latest) in format 2; downgrade re-encodes
every format 2 block in format 1, the only one the code before reads. Both walk the table in
key order, `CHUNK` blocks per query (keyset, so neither holds the table in memory), decode
a chunk's blocks at once and rewrite them; the summary columns (n, t_last, num_first,
num_last) describe the same points and stay.

On PostgreSQL, upgrade also leaves a tenth of each heap page free (fillfactor 90): a block
is rewritten whole by every write that touches it, and a rewrite that fits on its page is a
HOT update — no new index entries, and the page drops the dead versions itself, without
waiting for vacuum. Downgrade restores the default.

Revision ID: 0011
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from alembic import op

from besmart_server.server.signals.blocks import (
    FORMAT,
    LEGACY_FORMAT,
    decode_batch,
    encode_batch,
    format_of,
)

revision = "0011"
down_revision = "0010"
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
)


def _chunk() -> int:
    cfg = op.get_context().config
    size = cfg.attributes.get("blocks_chunk", CHUNK) if cfg is not None else CHUNK
    return int(size)


def _reencode(to: int) -> None:
    """Every block not in format `to` rewritten in it, a chunk of blocks at a time."""
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
        .values(body=sa.bindparam("v_body"), latest=sa.bindparam("v_latest"))
    )
    after: tuple[int, int, int] | None = None
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
            fresh = encode_batch(sid, f, legacy=to == LEGACY_FORMAT)
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
        if len(rows) < chunk:
            return
        last = rows[-1]
        after = (int(last.series_id), int(last.day), int(last.origin))


def upgrade() -> None:
    _reencode(FORMAT)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE blocks SET (fillfactor = 90)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE blocks RESET (fillfactor)")
    _reencode(LEGACY_FORMAT)
