"""What a write would cost if it did not merge into the day blocks: a measurement of a design
that is NOT built (bench/README.md, "Row 1d: live pushes").

Today a write reads the day blocks its points fall in, decodes them, merges and encodes them
again, and SQLite writes every touched B-tree page (16 KiB, one per series) to its WAL. The
sketch replaces `SeriesStore.insert` in this process only by what the write side of a
write-ahead table would do: lock and stamp the series as today, then append one row per
series (the points' columns as raw bytes) to a `pending` table, nothing read or encoded; a
compactor would merge those rows into the blocks later, off the request. Row 1's requests and
row 1d's pushes (after the year is written as today) go through the multi-series PUT's own
function, as in bench.profile_write; the median of each, today's insert and the sketch's.

    .venv/bin/python -m bench.pending_sketch              # SQLite in a temporary file
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
from sqlalchemy import Connection

from bench.inproc import YEAR, InProcess, bench_app
from besmart_server.server.db import dbapi_connection
from besmart_server.server.signals import router
from besmart_server.server.signals.pipeline import I64, Frame
from besmart_server.server.signals.store import SeriesKey, SeriesStore

WARM = 20


def _appended(
    self: SeriesStore,
    conn: Connection,
    series_id: I64,
    frame: Frame,
    *,
    live: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
    keys: Mapping[int, SeriesKey] | None = None,
) -> int:
    """The write side of a write-ahead table: the series locked and stamped as today (no
    stored block read), then a row per series appended."""
    if not len(frame):
        return 0
    live = np.zeros(len(frame), dtype=np.bool_) if live is None else live
    cur = dbapi_connection(conn).cursor()
    frame, _ = self._stamp(cur, series_id, frame, live, keys, [])
    order = np.argsort(series_id, kind="stable")
    sid, f = series_id[order], frame.take(order)
    cuts = np.flatnonzero(np.diff(sid)) + 1
    starts = [0, *cuts.tolist()]
    ends = [*cuts.tolist(), len(sid)]
    t, a, v = f.time.tobytes(), f.acq.tobytes(), f.value.tobytes()
    o = f.origin.astype(np.int8).tobytes()
    rows = [
        (int(sid[s]), t[8 * s : 8 * e] + o[s:e] + a[8 * s : 8 * e] + v[8 * s : 8 * e])
        for s, e in zip(starts, ends, strict=True)
    ]
    cur.executemany("INSERT INTO pending (series_id, body) VALUES (?, ?)", rows)
    return len(frame)


def _median_ms(ip: InProcess, bodies: list[bytes]) -> float:
    request: Any = SimpleNamespace(app=ip.app)
    walls = []
    for raw in bodies:
        t0 = time.perf_counter()
        router._write_many(request, ip.token, raw, None)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls[WARM:]) * 1000


def _run(what: str, insert: Callable[..., int]) -> float:
    with bench_app(None, YEAR, "sketch") as ip:
        with ip.app.state.db.transaction() as conn:
            cur = dbapi_connection(conn).cursor()
            cur.execute(
                "CREATE TABLE pending (id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL, "
                "body BLOB NOT NULL)"
            )
            cur.execute("CREATE INDEX ix_pending ON pending (series_id, id)")
        if what == "row 1":
            SeriesStore.insert = insert  # type: ignore[method-assign]
            return _median_ms(ip, ip.bodies[:170])
        _median_ms(ip, ip.bodies)  # the year, merged into blocks as today
        SeriesStore.insert = insert  # type: ignore[method-assign]
        return _median_ms(ip, ip.pushes)


def main(argv: list[str]) -> None:
    del argv
    today = SeriesStore.insert
    for what, unit in (("row 1", "10,000-point request"), ("row 1d", "100-point push")):
        merged = _run(what, today)
        appended = _run(what, _appended)
        SeriesStore.insert = today  # type: ignore[method-assign]
        print(
            f"sqlite {what}: {merged:.2f} ms per {unit} merging into blocks, "
            f"{appended:.2f} ms appending to a pending table ({merged / appended:.1f}x)"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
