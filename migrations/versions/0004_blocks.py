"""Points as day blocks: one compressed row per (series, UTC day, origin) replaces a row per point.

Upgrade re-encodes every stored point into `blocks` (signals/blocks.py) and drops `points`;
downgrade decodes every block back into rows of `points`. Both read a series at a time in
whole UTC days, about `CHUNK` rows per query, so neither holds the table in memory.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

from besmart_server.server.signals.blocks import DAY_MS, decode, encode_batch
from besmart_server.server.signals.pipeline import TYPE_RM, TYPE_STR, Frame
from besmart_server.server.signals.reformat import migration_chunk

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BIG = sa.BigInteger()
# Rows (points on the way up, blocks on the way down) read per query, and points buffered per
# insert on the way down. The tests set a small one through the Alembic config's attributes
# ("blocks_chunk") to cross chunk edges with a few points.
CHUNK = 50_000

_points = sa.table(
    "points",
    sa.column("series_id", sa.Integer),
    sa.column("time", BIG),
    sa.column("origin", sa.SmallInteger),
    sa.column("acq", BIG),
    sa.column("type", sa.SmallInteger),
    sa.column("value", sa.Float),
    sa.column("text", sa.Text),
)
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


def _series_ids(bind: sa.Connection, table: sa.TableClause) -> Iterator[int]:
    """The series ids present in `table`, ascending, one index lookup each."""
    last: int | None = None
    while True:
        query = sa.select(sa.func.min(table.c.series_id))
        if last is not None:
            query = query.where(table.c.series_id > last)
        found = bind.execute(query).scalar()
        if found is None:
            return
        last = int(found)
        yield last


def _whole_days(
    bind: sa.Connection, query: sa.Select[Any], key: sa.ColumnElement[int], scale: int, chunk: int
) -> Iterator[Sequence[sa.Row[Any]]]:
    """The rows of `query`, which is ordered by `key` first and selects it first, in runs of
    whole UTC days of about `chunk` rows (a day holding more is read alone). A row's day is
    key // scale."""
    lo: int | None = None
    while True:
        q = query if lo is None else query.where(key >= lo)
        rows = bind.execute(q.limit(chunk)).all()
        if len(rows) < chunk:
            if rows:
                yield rows
            return
        day = int(rows[-1][0]) // scale  # the last day may go on past this chunk
        cut = bisect_left(rows, day * scale, key=lambda r: int(r[0]))
        if cut:
            yield rows[:cut]
            lo = day * scale
        else:  # the chunk lies within one day: that whole day, then the next
            yield bind.execute(q.where(key < (day + 1) * scale)).all()
            lo = (day + 1) * scale


def _create_points() -> None:
    """`points` as 0001 creates it."""
    op.create_table(
        "points",
        sa.Column("series_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("time", BIG, primary_key=True, autoincrement=False),
        sa.Column("origin", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("acq", BIG, primary_key=True, autoincrement=False),
        sa.Column("type", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sqlite_with_rowid=False,
    )


def _frame(rows: Sequence[sa.Row[Any]]) -> Frame:
    """Rows of (time, origin, acq, type, value, text) as a frame: a NULL value is NaN, and so
    is any value of an RM or STR point; text is kept for STR points only."""
    time, origin, acq, kind_, value_, text_ = zip(*rows, strict=True)
    kind = np.array(kind_, dtype=np.int8)
    value = np.array(value_, dtype=np.float64)  # None becomes NaN
    is_text = kind == TYPE_STR
    value[is_text | (kind == TYPE_RM)] = np.nan
    text = None
    if bool(is_text.any()):
        text = [s if k == TYPE_STR else None for s, k in zip(text_, kind_, strict=True)]
    return Frame.from_columns(time, origin, acq, kind, value, text)


def upgrade() -> None:
    op.create_table(
        "blocks",
        sa.Column("series_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("day", BIG, primary_key=True, autoincrement=False),
        sa.Column("origin", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("t_last", BIG, nullable=False),
        sa.Column("num_first", BIG, nullable=True),
        sa.Column("num_last", BIG, nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("latest", sa.LargeBinary(), nullable=True),
        sqlite_with_rowid=False,
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # Bodies are zstd already: TOAST's pglz would only spend time failing to shrink them.
        op.execute("ALTER TABLE blocks ALTER COLUMN body SET STORAGE EXTERNAL")
        op.execute("ALTER TABLE blocks ALTER COLUMN latest SET STORAGE EXTERNAL")
    chunk = migration_chunk(CHUNK)
    p = _points.c
    for sid in _series_ids(bind, _points):
        query = (
            sa.select(p.time, p.origin, p.acq, p.type, p.value, p.text)
            .where(p.series_id == sid)
            .order_by(p.time, p.origin, p.acq)
        )
        for rows in _whole_days(bind, query, p.time, DAY_MS, chunk):
            f = _frame(rows)
            f = f.take(np.lexsort((f.acq, f.time, f.origin)))  # each block's points together
            out = [
                {
                    "series_id": sid,
                    "day": e.day,
                    "origin": e.origin,
                    "n": e.n,
                    "t_last": e.t_last,
                    "num_first": e.num_first,
                    "num_last": e.num_last,
                    "body": e.body,
                    "latest": e.latest,
                }
                for _, e in encode_batch(np.full(len(f), sid, dtype=np.int64), f)
            ]
            bind.execute(_blocks.insert(), out)
    op.drop_table("points")


def downgrade() -> None:
    _create_points()
    bind = op.get_bind()
    chunk = migration_chunk(CHUNK)
    b = _blocks.c
    out: list[dict[str, Any]] = []
    for sid in _series_ids(bind, _blocks):
        query = (
            sa.select(b.day, b.origin, b.body).where(b.series_id == sid).order_by(b.day, b.origin)
        )
        for rows in _whole_days(bind, query, b.day, 1, chunk):
            for row in rows:
                origin = int(row.origin)
                f = decode(int(row.day), origin, bytes(row.body))
                text = f.text if f.text is not None else (None,) * len(f)
                for t, a, k, v, s in zip(
                    f.time.tolist(),
                    f.acq.tolist(),
                    f.type.tolist(),
                    f.value.tolist(),
                    text,
                    strict=True,
                ):
                    out.append(
                        {
                            "series_id": sid,
                            "time": t,
                            "origin": origin,
                            "acq": a,
                            "type": k,
                            # RM, STR (and any NaN) as NULL: the old reads take NULL as NaN
                            "value": None if k in (TYPE_STR, TYPE_RM) or math.isnan(v) else v,
                            "text": s if k == TYPE_STR else None,
                        }
                    )
                if len(out) >= chunk:
                    bind.execute(_points.insert(), out)
                    out = []
    if out:
        bind.execute(_points.insert(), out)
    op.drop_table("blocks")
