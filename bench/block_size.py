"""Bytes per stored point and read times of the day blocks, in-process (no HTTP, no peers).

The benchmark's workload (bench.workload: meters, the 1-minute series, five versions; not
the weather grid) written through the store in the benchmark's batches, one server stamp per
batch, on a fresh database of each engine; then the size of the `blocks` table as bench.run
measures it (SQLite: dbstat pages of the table and its index; PostgreSQL:
pg_total_relation_size, heap + TOAST + indexes) and the medians of three store reads, the
engines taking turns: a year of one 15-minute series (bench.run's figure 2), its newest
versions over five (figure 3) and the 1-minute year that figure 4 averages. Each read
series also gets three twins in the same database whose blocks are the same points in each
format (3, written now; 2, whose byte planes format 3 keeps where bits gain too little; 1,
before format 2), read in turn with it: the formats' read times under the same load. The
twins' rows are written at once and lie together; the series as the workload wrote it has
its rows spread among the other series' (compare the twins with each other).

    .venv/bin/python -m bench.block_size                 # both engines, the full year
    .venv/bin/python -m bench.block_size --days 60 --reps 5 --pg-url ''   # SQLite alone
    .venv/bin/python -m bench.block_size --pg-url '' --page-sizes 4096,16384  # page sizes

With --page-sizes, one SQLite database per page size (its file made with that size before
the server opens it, which keeps the size it finds), all read in turn.
"""

from __future__ import annotations

import argparse
import dataclasses
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing

import numpy as np
import psycopg
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from bench.scratch import client_with_sensors, scratch_database
from bench.workload import FULL, MS_15MIN, MS_MINUTE, Workload, generate
from besmart_server.server import migrate
from besmart_server.server.db import Database, now_ms, psycopg_dsn
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.signals import blocks as codec
from besmart_server.server.signals.pipeline import Frame
from besmart_server.server.signals.store import COLUMNS, SeriesStore, stored_row
from besmart_server.server.signals.tables import blocks, series
from besmart_server.server.users import service as users
from besmart_server.wire import TYPE_DBL

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclasses.dataclass
class Engine:
    name: str
    db: Database
    store: SeriesStore
    ids: dict[tuple[str, int], int]  # (sensor, moid) -> series id
    size: int = 0
    reads: dict[str, list[float]] = dataclasses.field(default_factory=dict)


def ingest(db: Database, w: Workload) -> Engine:
    """The workload's meters, minute series and versions written to a migrated `db` through
    the store, in-process (bench.reencode writes its database with it too)."""
    migrate.upgrade(db)
    store = SeriesStore(db.dialect)
    names = sorted({s.sensor for s in (*w.meters, w.minute, *w.versions)})
    keys = sorted({(s.sensor, s.moid) for s in (*w.meters, w.minute, *w.versions)})
    with db.transaction() as conn:
        _, mids = client_with_sensors(conn, "size", names)
        found = store.series_ids(conn, [(mids[s], m) for s, m in keys], create=True)
    ids = {(s, m): found[(mids[s], m)] for s, m in keys}
    for batch in w.ingest_batches() + w.version_batches():
        sid = np.concatenate(
            [np.full(len(c), ids[(c.series.sensor, c.series.moid)]) for c in batch.chunks]
        )
        t = np.concatenate([c.time for c in batch.chunks])
        v = np.concatenate([c.value for c in batch.chunks])
        with db.transaction(write=True) as conn:
            # a live write: the store stamps each series (the acq given here is not read)
            f = Frame.from_columns(
                t, np.ones(len(t)), np.zeros(len(t)), np.full(len(t), TYPE_DBL), v
            )
            store.insert(conn, sid.astype(np.int64), f, live=np.ones(len(t), dtype=np.bool_))
    return Engine(db.dialect, db, store, ids)


def _size(e: Engine, url: str) -> int:
    if e.name.startswith("sqlite"):
        path = make_url(url).database
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            row = conn.execute(
                "SELECT sum(pgsize) FROM dbstat WHERE name IN"
                " (SELECT name FROM sqlite_master WHERE tbl_name = 'blocks')"
            ).fetchone()
        return int(row[0])
    plain = psycopg_dsn(url)
    with psycopg.connect(plain, autocommit=True) as conn:
        row = conn.execute("SELECT pg_total_relation_size('blocks')").fetchone()
    return int(row[0]) if row else 0


def _breakdown(url: str) -> list[str]:
    """Where a SQLite database's block bytes go: the leaves' free space, and per signal type
    the body, summary and latest bytes per point (the payload's parts)."""
    path = make_url(url).database
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        pages, unused = conn.execute(
            "SELECT sum(pgsize), sum(unused) FROM dbstat WHERE name = 'blocks'"
        ).fetchone()
        out = [f"  free space in the table's pages: {unused / pages:.1%}"]
        for moid, rows, points, body, hours, latest in conn.execute(
            "SELECT s.signal_type_moid, count(*), sum(b.n), sum(length(b.body)),"
            " sum(coalesce(length(b.hours), 0)), sum(coalesce(length(b.latest), 0))"
            " FROM blocks b JOIN series s ON s.id = b.series_id GROUP BY 1 ORDER BY 1"
        ):
            out.append(
                f"  signal {moid}: {rows:,} blocks, {points:,} points; B/pt body"
                f" {body / points:.2f}, summary {hours / points:.2f}, latest {latest / points:.2f}"
            )
    return out


def _create_sqlite(url: str, page_size: int) -> None:
    """An empty SQLite file in WAL mode with this page size (fixed from then on)."""
    with closing(sqlite3.connect(make_url(url).database or "")) as conn:
        conn.execute(f"PRAGMA page_size={page_size}")
        conn.execute("PRAGMA journal_mode=WAL")


def _page_size(url: str) -> int:
    with closing(sqlite3.connect(make_url(url).database or "")) as conn:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])


def _twin(e: Engine, sid: int, fmt: int) -> int:
    """A new series holding series `sid`'s blocks re-encoded in format `fmt`."""
    with e.db.transaction() as conn:
        cid = users.create_client(conn, name=f"twin{sid}.{fmt}")
        mid = conn.execute(
            insert(sensors)
            .values(client_cid=cid, name=f"twin{sid}.{fmt}", created_at=now_ms())
            .returning(sensors.c.mid)
        ).scalar_one()
        moid = conn.execute(
            select(series.c.signal_type_moid).where(series.c.id == sid)
        ).scalar_one()
        twin = conn.execute(
            insert(series).values(sensor_mid=mid, signal_type_moid=moid).returning(series.c.id)
        ).scalar_one()
        stored = conn.execute(
            select(blocks.c.day, blocks.c.origin, blocks.c.body)
            .where(blocks.c.series_id == sid)
            .order_by(blocks.c.day, blocks.c.origin)
        ).all()
        f, _ = codec.decode_batch([(r.day, r.origin, bytes(r.body)) for r in stored])
        col = np.full(len(f), twin, dtype=np.int64)
        rows = [
            dict(zip(COLUMNS, (*stored_row(twin, b)[:-1], hours), strict=True))
            for _, b in codec.encode_batch(col, f, fmt=fmt)
            for hours in [None if fmt == codec.LEGACY_FORMAT else b.hours]
        ]  # format 1 without summaries: it was read by decoding
        conn.execute(insert(blocks), rows)
    return int(twin)


def _reads(e: Engine, w: Workload) -> dict[str, Callable[[], int]]:
    meter = next(s for s in w.meters if s.moid == 1001)  # bench.run's raw read (P+)
    out: dict[str, Callable[[], int]] = {}
    for label, s, step, latest in (
        ("raw year (2)", meter, MS_15MIN, False),
        ("get_last (3)", w.versions[-1], MS_15MIN, True),
        ("1-min year (4)", w.minute, MS_MINUTE, False),
    ):
        lo, hi = int(s.time[0]), int(s.time[-1]) + step
        sid = e.ids[(s.sensor, s.moid)]
        out[f"{label}, as written (format {codec.FORMAT})"] = _read(e, sid, lo, hi, latest)
        # Twins are written at once, so their rows lie together: they compare with each other
        for fmt in (codec.FORMAT, codec.FORMAT_2, codec.LEGACY_FORMAT):
            out[f"{label}, format {fmt}"] = _read(e, _twin(e, sid, fmt), lo, hi, latest)
    return out


def _read(e: Engine, sid: int, lo: int, hi: int, latest: bool) -> Callable[[], int]:
    def run() -> int:
        with e.db.transaction(write=False) as conn:
            if latest:
                got = e.store.read_latest(
                    conn, sid, lo, hi, origin=None, limit=10**9, acq_before=None
                )
            else:
                got = e.store.read(conn, sid, lo, hi, origin=None, limit=10**9)
            return len(got)

    return run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.block_size", description=__doc__)
    ap.add_argument("--days", type=int, default=FULL.days, help="days of data (default 365)")
    ap.add_argument("--reps", type=int, default=15, help="timed runs of each read")
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL, help="'' for SQLite alone")
    ap.add_argument(
        "--page-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[],
        help="SQLite page sizes to compare, e.g. 4096,16384 (default: the server's)",
    )
    args = ap.parse_args(argv)
    spec = dataclasses.replace(FULL, days=args.days, minute_days=args.days, version_days=args.days)
    w = generate(spec)
    stored = sum(len(s) for s in (*w.meters, w.minute, *w.versions))
    print(f"{stored:,} points (weather grid not included)")
    with ExitStack() as stack:
        urls = []
        for size in args.page_sizes or [0]:
            url = stack.enter_context(scratch_database(None, f"size{size}"))
            if size:
                _create_sqlite(url, size)
            urls.append(url)
        if args.pg_url:
            urls.append(stack.enter_context(scratch_database(args.pg_url, "size")))
        engines: list[Engine] = []
        for url in urls:
            db = Database(url)
            stack.callback(db.dispose)
            t0 = time.perf_counter()
            e = ingest(db, w)
            took = time.perf_counter() - t0
            if e.name == "sqlite":
                e.name = f"sqlite ({_page_size(url)} B pages)"
            e.size = _size(e, url)
            print(f"{e.name}: ingest {stored / took:,.0f} pts/s, {e.size:,} bytes,"
                  f" {e.size / stored:.2f} B/pt")  # fmt: skip
            if e.name.startswith("sqlite"):
                print("\n".join(_breakdown(url)))
            engines.append(e)
        reads = {e.name: _reads(e, w) for e in engines}
        for k in range(args.reps + 1):  # the first round warms up, untimed
            for e in _turns(engines, k):
                for label, fn in reads[e.name].items():
                    t0 = time.perf_counter()
                    fn()
                    if k:
                        e.reads.setdefault(label, []).append(time.perf_counter() - t0)
        for e in engines:
            print(f"{e.name}: {e.size / stored:.2f} B/pt; read medians:")
            for label, s in e.reads.items():
                print(f"  {label}: {statistics.median(s) * 1000:.1f} ms")


def _turns(engines: list[Engine], k: int) -> Iterator[Engine]:
    """The engines in turn, the first one rotating, so load weighs on all alike."""
    for i in range(len(engines)):
        yield engines[(k + i) % len(engines)]


if __name__ == "__main__":
    main()
