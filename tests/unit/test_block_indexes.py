"""Which index each lookup of `blocks` takes (migration 0017): measured blocks, most of the
table, are found by the key; the origins other than measured by their partial index, so a
counter's neighbour search for an origin a series does not hold does not walk its days."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy import Connection

from besmart_server.server.db import Database, dbapi_connection
from besmart_server.server.signals.pipeline import Frame
from besmart_server.server.signals.store import SeriesStore
from besmart_server.web.service import newest_measured
from besmart_server.wire import (
    ORIGIN_ESTIMATED,
    ORIGIN_MEASURED,
    ORIGIN_PREDICTED,
    TYPE_DBL,
)
from tests.api.signal_helpers import make_sensor, moid
from tests.factories import make_client

DAY = 86_400_000
D0 = 1_699_920_000_000  # a UTC midnight


def _plan(conn: Connection, dialect: str, sql: str, params: list[int]) -> str:
    cur = dbapi_connection(conn).cursor()
    if dialect == "sqlite":
        cur.execute("EXPLAIN QUERY PLAN " + sql, params)
        return "\n".join(str(r[-1]) for r in cur.fetchall())
    # A table of a few rows is cheapest read whole: ask for what the planner does with an
    # index available, as it does once the table is large.
    cur.execute("SET LOCAL enable_seqscan = off")
    cur.execute("EXPLAIN " + sql, params)
    return "\n".join(str(r[0]) for r in cur.fetchall())


def _write(
    db: Database, store: SeriesStore, sid: int, times: list[int], origin: int, acq: int
) -> None:
    n = len(times)
    f = Frame.from_columns(times, [origin] * n, [acq] * n, [TYPE_DBL] * n, [1.0] * n)
    with db.transaction() as conn:
        store.insert(conn, np.full(n, sid, dtype=np.int64), f)


@pytest.mark.parametrize(
    ("origin", "index"),
    [(ORIGIN_MEASURED, "pk"), (ORIGIN_PREDICTED, "ix_blocks_other_origins")],
)
def test_neighbour_search_takes_the_key_or_the_other_origins_index(
    db: Database, origin: int, index: str
) -> None:
    store = SeriesStore(db.dialect)
    mid = make_sensor(db, make_client(db))
    with db.transaction() as conn:
        sid = store.series_ids(conn, [(mid, moid("A+"))], create=True)[(mid, moid("A+"))]
    pending = {(True, origin): 20_000, (False, origin): 20_010}
    sql, params = store.edge_statement("body", sid, pending, D0, D0 + DAY, 4)
    with db.transaction() as conn:
        plan = _plan(conn, db.dialect, sql, params)
    if index == "pk":
        assert "ix_blocks_other_origins" not in plan
        assert ("PRIMARY KEY" in plan) if db.dialect == "sqlite" else ("blocks_pkey" in plan)
    else:
        assert plan.count("ix_blocks_other_origins") == 2, plan


def test_neighbours_of_every_origin_are_found_across_the_others_days(db: Database) -> None:
    """Measured days between an estimated reading and the window, and estimated days
    between a measured one and it: each origin's neighbour is its own nearest reading."""
    store = SeriesStore(db.dialect)
    mid = make_sensor(db, make_client(db))
    with db.transaction() as conn:
        sid = store.series_ids(conn, [(mid, moid("A+"))], create=True)[(mid, moid("A+"))]
    _write(db, store, sid, [D0 + 5], ORIGIN_ESTIMATED, 1_000)
    _write(db, store, sid, [D0 + d * DAY for d in range(1, 40)], ORIGIN_MEASURED, 1_000)
    _write(db, store, sid, [D0 + 45 * DAY], ORIGIN_MEASURED, 1_000)
    _write(db, store, sid, [D0 + d * DAY + 7 for d in range(41, 45)], ORIGIN_PREDICTED, 1_000)
    with db.transaction(write=False) as conn:
        f = store.neighbours(conn, sid, D0 + 40 * DAY, D0 + 41 * DAY, origin=None, acq_before=None)
    got = sorted(zip(f.origin.tolist(), f.time.tolist(), strict=True))
    assert got == [
        (ORIGIN_MEASURED, D0 + 39 * DAY),
        (ORIGIN_MEASURED, D0 + 45 * DAY),
        (ORIGIN_PREDICTED, D0 + 41 * DAY + 7),
        (ORIGIN_ESTIMATED, D0 + 5),
    ]


def test_newest_measured_reading_per_sensor(db: Database) -> None:
    """The newest measured capture time of any of a sensor's series; newer predicted blocks
    and older measured days do not count; a sensor without measured points is left out."""
    store = SeriesStore(db.dialect)
    cid = make_client(db)
    a, b = make_sensor(db, cid), make_sensor(db, cid)
    keys: list[Any] = [(a, moid("A+")), (a, moid("P+")), (b, moid("P+"))]
    with db.transaction() as conn:
        ids = store.series_ids(conn, keys, create=True)
    _write(db, store, ids[keys[0]], [D0 + d * DAY + 60_000 for d in range(10)], 1, 1_000)
    _write(db, store, ids[keys[1]], [D0 + 3 * DAY + 5, D0 + 12 * DAY + 9], 1, 1_000)
    _write(db, store, ids[keys[1]], [D0 + 30 * DAY], ORIGIN_PREDICTED, 1_000)
    _write(db, store, ids[keys[2]], [D0 + 50 * DAY], ORIGIN_PREDICTED, 1_000)
    with db.transaction(write=False) as conn:
        assert newest_measured(conn, [a, b]) == {a: D0 + 12 * DAY + 9}
