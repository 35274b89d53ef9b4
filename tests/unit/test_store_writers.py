"""Many writers at once, and what every statement on `blocks` names (issue 18 item 1).

The store locks only the series a write touches (store.py): writers of other series go on,
writers of the same series queue, and nothing is lost or stored twice. Every statement on
`blocks` selects by `series_id`, so the table can be distributed by it.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Connection, event, text

from besmart_server.server.access import Principal
from besmart_server.server.db import Database
from besmart_server.server.sensors.service import delete_sensor
from besmart_server.server.signals import store as store_module
from besmart_server.server.signals.pipeline import Frame
from besmart_server.server.signals.store import SeriesStore
from besmart_server.web.service import newest_measured
from besmart_server.wire import TYPE_DBL
from tests.api.signal_helpers import make_sensor, moid
from tests.factories import make_client

DAY = 86_400_000
D0 = 1_699_920_000_000  # a UTC midnight
ADMIN = Principal(user_id=None, login="test-admin", is_admin=True)
# Only a failing run waits this long: a passing one is ordered by events, not by time.
STUCK_S = 120


@pytest.fixture
def store(db: Database) -> SeriesStore:
    return SeriesStore(db.dialect)


def new_series(db: Database, store: SeriesStore, n: int) -> tuple[int, list[int]]:
    """A sensor with `n` series; (its mid, their ids)."""
    mid = make_sensor(db, make_client(db))
    symbols = ["A+", "A-", "P+", "P-", "U1", "U2", "U3", "I1", "I2", "I3"][:n]
    keys = [(mid, moid(s)) for s in symbols]
    with db.transaction() as conn:
        ids = store.series_ids(conn, keys, create=True)
    return mid, [ids[k] for k in keys]


def points(times: list[int] | np.ndarray[Any, Any], value: float = 1.0) -> Frame:
    n = len(times)
    return Frame.from_columns(times, [1] * n, [0] * n, [TYPE_DBL] * n, [value] * n)


def live_write(
    conn: Connection, store: SeriesStore, sids: list[int], f: Frame, *, defer: bool = False
) -> int:
    """`f`'s points in each of `sids`, as one live write (`defer`: to the write-ahead table)."""
    n = len(f)
    frame = Frame.from_columns(
        np.tile(f.time, len(sids)),
        np.tile(f.origin, len(sids)),
        np.tile(f.acq, len(sids)),
        np.tile(f.type, len(sids)),
        np.tile(f.value, len(sids)),
    )
    series = np.repeat(np.array(sids, dtype=np.int64), n)
    return store.insert(conn, series, frame, live=np.ones(len(frame), dtype=np.bool_), defer=defer)


def every_version(conn: Connection, store: SeriesStore, sid: int) -> Frame:
    return store.read(conn, sid, -(2**62), 2**62, origin=None, limit=1_000_000)


def pg_only(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has one writer at a time by design")


def waiting_on_a_lock(db: Database, pid: int) -> bool:
    with db.engine.connect() as conn:
        row = conn.execute(
            text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        ).first()
    return row is not None and row[0] == "Lock"


def test_a_large_open_write_of_one_series_does_not_hold_up_another(
    db: Database, store: SeriesStore
) -> None:
    """Writer A stores 60 days of minute data in series A and keeps its transaction open
    until writer B, a small write to series B, has committed: B must get through (before,
    every write queued on the one clock row, and this waited until STUCK_S)."""
    pg_only(db)
    _, (a, b) = new_series(db, store, 2)
    a_wrote, b_done = threading.Event(), threading.Event()
    order: list[str] = []

    def writer_a() -> None:
        with db.transaction() as conn:
            live_write(conn, store, [a], points(D0 + np.arange(60 * 1440) * 60_000))
            a_wrote.set()
            b_done.wait(STUCK_S)
            order.append("A commits")

    def writer_b() -> None:
        with db.transaction() as conn:
            live_write(conn, store, [b], points([D0]))
        order.append("B committed")
        b_done.set()

    with ThreadPoolExecutor(2) as pool:
        fa = pool.submit(writer_a)
        assert a_wrote.wait(STUCK_S)
        fb = pool.submit(writer_b)
        fb.result(STUCK_S)
        fa.result(STUCK_S)
    assert order == ["B committed", "A commits"]
    with db.transaction(write=False) as conn:
        assert len(every_version(conn, store, a)) == 60 * 1440
        assert len(every_version(conn, store, b)) == 1


def test_writers_of_one_series_queue_and_both_land(db: Database, store: SeriesStore) -> None:
    """A second writer of a series that an open write holds waits on its lock (seen in
    pg_stat_activity), then lands after it with a later stamp."""
    pg_only(db)
    _, (a,) = new_series(db, store, 1)
    a_wrote, second_waits = threading.Event(), threading.Event()
    pid: list[int] = []

    def first() -> None:
        with db.transaction() as conn:
            live_write(conn, store, [a], points([D0, D0 + 60_000], 1.0))
            a_wrote.set()
            assert second_waits.wait(STUCK_S)

    def second() -> None:
        with db.transaction() as conn:
            pid.append(int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one()))
            live_write(conn, store, [a], points([D0], 2.0))

    with ThreadPoolExecutor(2) as pool:
        f1 = pool.submit(first)
        assert a_wrote.wait(STUCK_S)
        f2 = pool.submit(second)
        for _ in range(STUCK_S * 20):  # a bounded poll: until the second waits on the lock
            if pid and waiting_on_a_lock(db, pid[0]):
                break
            threading.Event().wait(0.05)
        assert not f2.done()
        second_waits.set()
        f1.result(STUCK_S)
        f2.result(STUCK_S)
    with db.transaction(write=False) as conn:
        f = every_version(conn, store, a)
    at_d0 = f.take(f.time == D0)
    assert at_d0.value.tolist() == [1.0, 2.0]  # sorted by acq: the queued write is newer
    assert int(at_d0.acq[1]) > int(at_d0.acq[0])


def test_many_writers_of_overlapping_and_disjoint_series_lose_and_duplicate_nothing(
    db: Database, store: SeriesStore
) -> None:
    """Six threads, each writing 12 times to a series of its own and to the two series it
    shares with its neighbours (in either order), every write adding new times and a new
    version of one shared time: afterwards every point and every version is there once."""
    threads, rounds = 6, 12
    _, shared = new_series(db, store, threads)
    _, own = new_series(db, store, threads)
    written: dict[int, list[tuple[int, int]]] = {s: [] for s in shared + own}  # (time, value)
    lock = threading.Lock()

    def writer(k: int) -> None:
        mine = [own[k], shared[k], shared[(k + 1) % threads]]
        for r in range(rounds):
            sids = mine if r % 2 else mine[::-1]
            times = [D0 + (k * rounds + r) * 60_000, D0 - DAY]  # a new time, a shared one
            value = k * 1000 + r
            with db.transaction() as conn:
                live_write(conn, store, sids, points(times, float(value)))
            with lock:
                for s in sids:
                    written[s].extend((t, value) for t in times)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(writer, range(threads)))
    with db.transaction(write=False) as conn:
        for sid, want in written.items():
            f = every_version(conn, store, sid)
            got = sorted(zip(f.time.tolist(), f.value.astype(int).tolist(), strict=True))
            assert got == sorted(want), sid
            keys = list(zip(f.time.tolist(), f.acq.tolist(), strict=True))
            assert len(set(keys)) == len(keys)  # each version of D0 - DAY its own stamp
            shared_time = f.take(f.time == D0 - DAY)
            assert len(set(shared_time.acq.tolist())) == len(shared_time)


# --- every statement on blocks names its series ---------------------------------------------

_BLOCKS = re.compile(r"\b(FROM|JOIN|INTO|UPDATE)\s+blocks\b(?!_)", re.IGNORECASE)
_BY_SERIES = re.compile(
    r"(\b(WHERE|ON|AND|OR)\s*\(?\s*([\w.]+\.)?series_id\s*(=|IN\b))|(=\s*([\w.]+\.)?series_id\b)",
    re.IGNORECASE,
)
_INSERT_ROWS = re.compile(r"INSERT\s+(OR\s+REPLACE\s+)?INTO\s+blocks\s*\([^)]*\bseries_id\b", re.I)


def unsharded(sql: str) -> list[str]:
    """The parts of a statement that reach `blocks` without naming the series: each SELECT
    scope (the text from one SELECT to the next) that reads, joins, updates or deletes
    blocks must select by series_id; an INSERT must carry it in its rows. Definitions that
    copy its columns (CREATE ... LIKE blocks) touch no row."""
    out = []
    for stmt in (s.strip() for s in sql.split(";")):
        if not stmt or stmt.upper().startswith("CREATE"):
            continue
        for scope in re.split(r"(?=\bSELECT\b)", stmt, flags=re.IGNORECASE):
            m = _BLOCKS.search(scope)
            if m is None:
                continue
            if m.group(1).upper() == "INTO":
                if not _INSERT_ROWS.search(scope):
                    out.append(scope)
            elif not _BY_SERIES.search(scope[m.start() :]):
                out.append(scope)
    return out


def test_the_checker_finds_a_statement_without_series_id() -> None:
    assert unsharded("SELECT max(t_last) FROM blocks WHERE origin = 1")
    assert unsharded("SELECT * FROM blocks JOIN series ON blocks.day = series.id")
    assert unsharded("DELETE FROM blocks")
    assert unsharded(
        "SELECT max(t_last) FROM blocks WHERE series_id = 1 AND day = "
        "(SELECT max(day) FROM blocks WHERE origin = 2)"
    )
    assert unsharded("INSERT INTO blocks (day, origin) VALUES (1, 2)")
    assert not unsharded("SELECT n FROM blocks WHERE series_id = ? AND day >= ?")
    assert not unsharded("INSERT INTO blocks (series_id, day) SELECT series_id, day FROM blocks_in")


class _Recorded:
    """A DB-API connection (or cursor) whose statements are written to `log`; everything
    else is the driver's own."""

    def __init__(self, inner: Any, log: list[str]) -> None:
        self._inner = inner
        self._log = log

    def cursor(self, *args: Any, **kwargs: Any) -> _Recorded:
        return _Recorded(self._inner.cursor(*args, **kwargs), self._log)

    def execute(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        self._log.append(str(sql))
        return self._inner.execute(sql, *args, **kwargs)

    def executemany(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        self._log.append(str(sql))
        return self._inner.executemany(sql, *args, **kwargs)

    def copy(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        self._log.append(str(sql))
        return self._inner.copy(sql, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture
def statements(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement run meanwhile: through SQLAlchemy and on the store's own cursors."""
    log: list[str] = []

    def before(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        log.append(sql)

    monkeypatch.setattr(
        store_module,
        "dbapi_connection",
        lambda conn: _Recorded(conn.connection.driver_connection, log),
    )
    event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield log
    finally:
        event.remove(db.engine, "before_cursor_execute", before)


def test_every_statement_on_blocks_selects_by_series_id(
    db: Database, store: SeriesStore, statements: list[str]
) -> None:
    """A representative workload: live writes and imports of several series, a rewrite of
    stored blocks, a deferred write merged by the next transaction, every read of the store,
    the sensor page's newest reading and a sensor's deletion. Each statement that reaches
    `blocks` names its series."""
    mid, sids = new_series(db, store, 3)
    days = D0 + np.arange(0, 5 * DAY, 900_000)
    with db.transaction() as conn:
        live_write(conn, store, sids, points(days))
    with db.transaction() as conn:
        live_write(conn, store, sids[:2], points(days[::7], 2.0))  # merged into stored blocks
        imported = points([D0 + 1, D0 + 2])
        imported = Frame(imported.time, imported.origin, imported.acq + 5_000_000,
                         imported.type, imported.value)  # fmt: skip
        store.insert(conn, np.full(2, sids[2], dtype=np.int64), imported)
    with db.transaction(settle=False) as conn:  # deferred, then merged by the read's settling
        series = np.repeat(np.array(sids, dtype=np.int64), 2)
        f = points(np.tile([D0 + 5, D0 + DAY + 5], 3))
        store.insert(conn, series, f, live=np.ones(6, dtype=np.bool_), defer=True)
    with db.transaction(write=False) as conn:
        for sid in sids:
            assert len(store.read(conn, sid, D0, D0 + DAY, origin=None, limit=10_000))
            store.read_latest(conn, sid, D0, D0 + 2 * DAY, origin=1, limit=10_000, acq_before=None)
            store.read_latest(conn, sid, D0, D0 + DAY, origin=None, limit=10, acq_before=2**60)
            assert len(store.neighbours(conn, sid, D0 + DAY, D0 + 2 * DAY, origin=None,
                                        acq_before=None))  # fmt: skip
            store.neighbours(conn, sid, D0, None, origin=1, acq_before=2**60)
        assert store.cap_max(conn, sids, origin=None) is not None
        assert store.cap_max(conn, sids, origin=1) is not None
        assert newest_measured(conn, [mid])
    with db.transaction() as conn:
        cid = conn.execute(text(f"SELECT client_cid FROM sensors WHERE mid = {mid}")).scalar_one()
        delete_sensor(conn, ADMIN, int(cid), mid)
    on_blocks = [s for s in statements if _BLOCKS.search(s)]
    kinds = {
        word for s in on_blocks for word in ("SELECT", "INSERT", "DELETE") if word in s.upper()
    }
    assert kinds == {"SELECT", "INSERT", "DELETE"}  # the workload reached blocks every way
    bad = list(itertools.chain.from_iterable(unsharded(s) for s in statements))
    assert not bad, "statements on blocks without a series_id predicate:\n" + "\n".join(bad)
