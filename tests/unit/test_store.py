"""The SeriesStore of the test database's engine (run with --db-url for PostgreSQL)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sqlalchemy import Connection

from besmart_server.server.access import Principal
from besmart_server.server.db import Database, now_ms
from besmart_server.server.signals import columns, service
from besmart_server.server.signals.pipeline import Frame, concat, latest_versions
from besmart_server.server.signals.store import SeriesStore
from besmart_server.wire import TYPE_DBL, TYPE_INT, TYPE_RM, TYPE_STR
from tests.api.signal_helpers import make_sensor, moid
from tests.factories import make_client

T = 1_700_000_000_000


@pytest.fixture
def store(db: Database) -> SeriesStore:
    return SeriesStore(db.dialect)


@pytest.fixture
def sid(db: Database, store: SeriesStore) -> int:
    mid = make_sensor(db, make_client(db))
    with db.transaction() as conn:
        return store.series_ids(conn, [(mid, moid("A+"))], create=True)[(mid, moid("A+"))]


def frame(
    time: list[int], acq: int | list[int], value: list[float], origin: int = 1, kind: int = TYPE_DBL
) -> Frame:
    n = len(time)
    acqs = acq if isinstance(acq, list) else [acq] * n
    return Frame.from_columns(time, [origin] * n, acqs, [kind] * n, value)


def put(conn: Connection, store: SeriesStore, sid: int, f: Frame, *, live: bool = False) -> int:
    """One series' points: imported (their own acq) or `live` (stamped by the store)."""
    mask = np.full(len(f), live, dtype=np.bool_)
    return store.insert(conn, np.full(len(f), sid, dtype=np.int64), f, live=mask)


def read(conn: Connection, store: SeriesStore, sid: int, *, origin: int | None = None) -> Frame:
    return store.read(conn, sid, T - 10**9, T + 10**9, origin=origin, limit=1000)


def test_series_ids_are_created_once(db: Database, store: SeriesStore) -> None:
    mid = make_sensor(db, make_client(db))
    keys = [(mid, moid("A+")), (mid, moid("P+"))]
    with db.transaction() as conn:
        assert store.series_ids(conn, keys, create=False) == {}
        first = store.series_ids(conn, keys, create=True)
        again = store.series_ids(conn, [*keys, (mid, moid("U1"))], create=False)
    assert set(first) == set(keys)
    assert again == first


def stamps_of(conn: Connection, store: SeriesStore, sid: int) -> list[int]:
    """The acq of every version stored in a series, in order."""
    return sorted(store.read(conn, sid, -(2**62), 2**62, origin=None, limit=10_000).acq.tolist())


def test_stamps_are_whole_ms_each_in_its_own_ms(db: Database, store: SeriesStore) -> None:
    """The wire's acq_time is ms: live writes faster than the wall clock ticks still each
    get their own millisecond per series, so versions of a point never share an acq_time
    there; a write of two series stamps each after its own last stamp."""
    mid = make_sensor(db, make_client(db))
    keys = [(mid, moid("A+")), (mid, moid("P+"))]
    with db.transaction() as conn:
        ids = store.series_ids(conn, keys, create=True)
    a, b = ids[keys[0]], ids[keys[1]]
    for i in range(100):
        with db.transaction() as conn:
            f = frame([T, T], 0, [float(i), float(i)])
            store.insert(conn, np.array([a, b]), f, live=np.array([True, True]))
            put(conn, store, a, frame([T + 1], 0, [0.0]), live=True)  # a second write, same tx
    with db.transaction(write=False) as conn:
        stamps = stamps_of(conn, store, a)
        other = stamps_of(conn, store, b)
    assert len(stamps) == 200
    assert len(other) == 100
    assert all(s % 1000 == 0 for s in stamps + other)
    assert all(y >= x + 1000 for x, y in itertools.pairwise(stamps))
    assert stamps[0] >= (now_ms() - 60_000) * 1000  # the wall clock, not a counter from 0


def test_an_import_moves_its_series_clock(db: Database, store: SeriesStore, sid: int) -> None:
    """A live write after an import (acq_time up to the allowed skew ahead) is newer than it;
    an older import never moves the clock back."""
    future = (now_ms() + 30_000) * 1000
    with db.transaction() as conn:
        put(conn, store, sid, frame([T], future, [1.0]))
        put(conn, store, sid, frame([T], 0, [2.0]), live=True)
        put(conn, store, sid, frame([T], 5_000, [3.0]))  # never backwards
        put(conn, store, sid, frame([T], 0, [4.0]), live=True)
    with db.transaction(write=False) as conn:
        assert stamps_of(conn, store, sid) == [5_000, future, future + 1000, future + 2000]


def test_insert_and_read_round_trip_sorted(db: Database, store: SeriesStore, sid: int) -> None:
    with db.transaction() as conn:
        put(conn, store, sid, frame([T + 2, T, T + 1], 11, [3.0, 1.0, 2.0]))
        put(conn, store, sid, frame([T], 7, [0.5], origin=2))
        put(conn, store, sid, frame([T], 13, [1.5]))
    with db.transaction(write=False) as conn:
        f = read(conn, store, sid)
        only2 = read(conn, store, sid, origin=2)
    assert f.time.tolist() == [T, T, T, T + 1, T + 2]
    assert f.origin.tolist() == [1, 1, 2, 1, 1]
    assert f.acq.tolist() == [11, 13, 7, 11, 11]
    assert f.value.tolist() == [1.0, 1.5, 0.5, 2.0, 3.0]
    assert only2.value.tolist() == [0.5]


def test_window_is_half_open_and_limited(db: Database, store: SeriesStore, sid: int) -> None:
    with db.transaction() as conn:
        put(conn, store, sid, frame(list(range(T, T + 10)), 11, [1.0] * 10))
    with db.transaction(write=False) as conn:
        assert store.read(conn, sid, T + 2, T + 5, origin=None, limit=100).time.tolist() == [
            T + 2,
            T + 3,
            T + 4,
        ]
        assert len(store.read(conn, sid, T, T + 10, origin=None, limit=4)) == 5  # limit + 1


def test_types_text_and_tombstones(db: Database, store: SeriesStore, sid: int) -> None:
    f = Frame.from_columns(
        [T, T + 1, T + 2, T + 3],
        [1, 1, 1, 1],
        [11, 11, 11, 11],
        [TYPE_DBL, TYPE_INT, TYPE_STR, TYPE_RM],
        [1.5, 7.0, math.nan, math.nan],
        [None, None, "door open", None],
    )
    with db.transaction() as conn:
        put(conn, store, sid, f)
    with db.transaction(write=False) as conn:
        got = read(conn, store, sid)
    assert got.type.tolist() == [TYPE_DBL, TYPE_INT, TYPE_STR, TYPE_RM]
    assert got.value[:2].tolist() == [1.5, 7.0]
    assert np.isnan(got.value[2:]).all()
    assert got.text is not None
    assert got.text[2] == "door open"


def test_replace_overwrites_the_same_key(db: Database, store: SeriesStore, sid: int) -> None:
    with db.transaction() as conn:
        put(conn, store, sid, frame([T, T + 1], 5000, [1.0, 2.0]))
    with db.transaction() as conn:
        put(conn, store, sid, frame([T], 5000, [9.0]))
    with db.transaction(write=False) as conn:
        f = read(conn, store, sid)
    assert f.value.tolist() == [9.0, 2.0]


def test_rollback_stores_nothing(db: Database, store: SeriesStore, sid: int) -> None:
    def write_then_fail() -> None:
        with db.transaction() as conn:
            put(conn, store, sid, frame([T], 11, [1.0]))
            raise RuntimeError

    with pytest.raises(RuntimeError):
        write_then_fail()
    with db.transaction(write=False) as conn:
        assert len(read(conn, store, sid)) == 0


def points_of(f: Frame) -> list[tuple[int, int, float]]:
    """(time, origin, value) of neighbour points."""
    return list(zip(f.time.tolist(), f.origin.tolist(), f.value.tolist(), strict=True))


def test_neighbours_per_origin_and_numeric(db: Database, store: SeriesStore, sid: int) -> None:
    with db.transaction() as conn:
        put(conn, store, sid, frame([T - 500, T - 100], 11, [1.0, 2.0]))
        put(conn, store, sid, frame([T - 300], 11, [1.0], origin=2))
        put(conn, store, sid, frame([T - 50], 11, [math.nan], kind=TYPE_RM))
        put(conn, store, sid, frame([T + 1000, T + 2000], 11, [3.0, 4.0]))
        put(conn, store, sid, frame([T + 1500], 11, [3.0], origin=3))
    with db.transaction(write=False) as conn:

        def near(
            since: int | None, till: int | None, origin: int | None
        ) -> list[tuple[int, int, float]]:
            f = store.neighbours(conn, sid, since, till, origin=origin, acq_before=None)
            return points_of(f)

        assert near(T, T + 1000, None) == [
            (T - 300, 2, 1.0),
            (T - 100, 1, 2.0),
            (T + 1000, 1, 3.0),
            (T + 1500, 3, 3.0),
        ]
        assert near(T, T + 1000, 1) == [(T - 100, 1, 2.0), (T + 1000, 1, 3.0)]
        assert near(T - 1000, T - 600, 1) == [(T - 500, 1, 1.0)]
        assert near(T, None, 3) == []
        assert near(None, T + 1600, None) == [(T + 2000, 1, 4.0)]


def test_neighbours_skip_removed_readings_however_far(
    db: Database, store: SeriesStore, sid: int
) -> None:
    """A reading whose newest version is RM is no neighbour, on either side, also when whole
    runs of days lie between the window and the next live reading (the search goes on block
    after block); a reading far away (years) is found as a near one is."""
    day = 86_400_000
    d0 = (T // day) * day
    near_before = [d0 - k * day for k in range(1, 30)]  # 29 days of readings before d0
    near_after = [d0 + day + k * day for k in range(0, 29)]
    with db.transaction() as conn:
        put(conn, store, sid, frame([d0 - 900 * day], 11, [5.0]))
        put(conn, store, sid, frame([d0 + 700 * day], 11, [9.0]))
        put(conn, store, sid, frame(near_before + near_after, 12, [7.0] * 58))
    with db.transaction() as conn:
        put(
            conn,
            store,
            sid,
            frame(near_before + near_after, 13, [math.nan] * 58, kind=TYPE_RM),
        )

    with db.transaction(write=False) as conn:
        got = store.neighbours(conn, sid, d0, d0 + day, origin=None, acq_before=None)
        assert points_of(got) == [(d0 - 900 * day, 1, 5.0), (d0 + 700 * day, 1, 9.0)]
        # As the data stood before the RMs: the nearest readings are back.
        old = store.neighbours(conn, sid, d0, d0 + day, origin=1, acq_before=13)
        assert points_of(old) == [(d0 - day, 1, 7.0), (d0 + day, 1, 7.0)]
        # Before the second write, only the far readings existed.
        oldest = store.neighbours(conn, sid, d0, d0 + day, origin=1, acq_before=12)
        assert points_of(oldest) == [(d0 - 900 * day, 1, 5.0), (d0 + 700 * day, 1, 9.0)]
        assert len(store.neighbours(conn, sid, d0, d0 + day, origin=2, acq_before=None)) == 0


def test_neighbours_in_the_edge_day_blocks(db: Database, store: SeriesStore, sid: int) -> None:
    """The blocks holding `since` and `till` have readings on both sides of the window edge;
    only those on the wanted side count, and a removed one there hands over to the one before
    it in the same block."""
    day = 86_400_000
    d0 = (T // day) * day
    h = 3_600_000
    with db.transaction() as conn:
        put(
            conn,
            store,
            sid,
            frame(
                [d0 + h, d0 + 2 * h, d0 + 5 * h, d0 + 8 * h, d0 + 9 * h],
                11,
                [1.0, 2.0, 3.0, 4.0, 5.0],
            ),
        )
        put(conn, store, sid, frame([d0 + 2 * h, d0 + 8 * h], 12, [0.0, 0.0], kind=TYPE_RM))
    with db.transaction(write=False) as conn:
        got = store.neighbours(conn, sid, d0 + 3 * h, d0 + 6 * h, origin=1, acq_before=None)
        assert points_of(got) == [(d0 + h, 1, 1.0), (d0 + 9 * h, 1, 5.0)]
        got = store.neighbours(conn, sid, d0 + 2 * h, d0 + 5 * h, origin=None, acq_before=None)
        assert points_of(got) == [(d0 + h, 1, 1.0), (d0 + 5 * h, 1, 3.0)]


def test_cap_max(db: Database, store: SeriesStore, sid: int) -> None:
    with db.transaction(write=False) as conn:
        assert store.cap_max(conn, [sid], origin=None) is None
    with db.transaction() as conn:
        put(conn, store, sid, frame([T, T + 5], 11, [1.0, 2.0]))
        put(conn, store, sid, frame([T + 9], 11, [1.0], origin=2))
    with db.transaction(write=False) as conn:
        assert store.cap_max(conn, [sid], origin=None) == T + 9
        assert store.cap_max(conn, [sid], origin=1) == T + 5
        assert store.cap_max(conn, [], origin=None) is None


def test_bulk_insert_of_many_points(db: Database, store: SeriesStore, sid: int) -> None:
    n = 50_000
    times = list(range(T, T + n))
    with db.transaction() as conn:
        put(conn, store, sid, frame(times, 11, [float(i) for i in range(n)]))
    with db.transaction(write=False) as conn:
        f = store.read(conn, sid, T, T + n, origin=None, limit=n)
    assert len(f) == n
    assert f.value[-1] == n - 1
    assert f.type.dtype == np.int8
    assert (f.type == TYPE_DBL).all()
    assert not (f.type == TYPE_INT).any()


def test_read_latest_matches_latest_versions_of_read(
    db: Database, store: SeriesStore, sid: int
) -> None:
    """The store's newest-version read, tombstones and as-of bound included, resolves exactly
    as `latest_versions` over every version does."""
    rng = np.random.default_rng(7)
    n = 300
    kinds = rng.choice([TYPE_DBL, TYPE_INT, TYPE_STR, TYPE_RM], size=n, p=[0.5, 0.2, 0.1, 0.2])
    for acq in (11, 22, 33):
        times = T + rng.choice(60, size=n // 3)
        pick = kinds[: n // 3]
        kinds = np.roll(kinds, 7)
        values = np.where((pick == TYPE_STR) | (pick == TYPE_RM), math.nan, rng.random(n // 3))
        texts = [f"s{acq}-{t}" if k == TYPE_STR else None for t, k in zip(times, pick, strict=True)]
        f = Frame.from_columns(
            times, rng.integers(1, 3, n // 3), [acq] * (n // 3), pick, values, texts
        )
        with db.transaction() as conn:
            put(conn, store, sid, latest_versions_unique(f))
    with db.transaction(write=False) as conn:
        for origin, before in itertools.product((None, 1, 2), (None, 12, 23, 34)):
            every = store.read(conn, sid, T + 5, T + 50, origin=origin, limit=1000)
            if before is not None:
                every = every.take(every.acq < before)
            want = latest_versions(every)
            got = store.read_latest(
                conn, sid, T + 5, T + 50, origin=origin, limit=1000, acq_before=before
            )
            assert len(got) <= len(every)
            got = latest_versions(got)
            assert got.time.tolist() == want.time.tolist()
            assert got.origin.tolist() == want.origin.tolist()
            assert got.acq.tolist() == want.acq.tolist()
            assert got.type.tolist() == want.type.tolist()
            np.testing.assert_array_equal(got.value, want.value)
            assert (got.text or (None,) * len(got)) == (want.text or (None,) * len(want))


def latest_versions_unique(f: Frame) -> Frame:
    """One point per (time, origin): a write carries no duplicate key."""
    _, first = np.unique(np.stack([f.time, f.origin]), axis=1, return_index=True)
    return f.take(np.sort(first))


def test_one_insert_writes_every_series(db: Database, store: SeriesStore) -> None:
    """Several series in one call (PostgreSQL: one COPY), text points and replace included."""
    mid = make_sensor(db, make_client(db))
    keys = [(mid, moid("A+")), (mid, moid("P+")), (mid, moid("U1"))]
    with db.transaction() as conn:
        ids = store.series_ids(conn, keys, create=True)
        parts = [
            (ids[keys[0]], frame([T, T + 1], 11, [1.0, 2.0])),
            (ids[keys[1]], Frame.empty()),
            (
                ids[keys[2]],
                Frame.from_columns(
                    [T, T + 1], [1, 1], [11, 11], [TYPE_STR, TYPE_DBL], [math.nan, 3.0], ["x", None]
                ),
            ),
        ]
        sids = np.repeat(
            np.array([i for i, _ in parts], dtype=np.int64), [len(f) for _, f in parts]
        )
        store.insert(conn, sids, concat([f for _, f in parts]))
        put(conn, store, ids[keys[1]], frame([T], 5000, [4.0]))
        put(conn, store, ids[keys[1]], frame([T], 5000, [5.0]))
    with db.transaction(write=False) as conn:
        a = read(conn, store, ids[keys[0]])
        p = read(conn, store, ids[keys[1]])
        u = read(conn, store, ids[keys[2]])
    assert a.value.tolist() == [1.0, 2.0]
    assert p.value.tolist() == [5.0]
    assert u.type.tolist() == [TYPE_STR, TYPE_DBL]
    assert u.text is not None
    assert u.text[0] == "x"
    assert u.value[1] == 3.0


DAY = 86_400_000
D0 = (T // DAY) * DAY  # a UTC midnight: the model below straddles day boundaries


def test_store_matches_a_model_across_days_origins_versions_and_limits(
    db: Database, store: SeriesStore, sid: int
) -> None:
    """Random writes over four days around UTC midnights (new versions, RM, STR, imports that
    replace their own earlier import) read back exactly as a plain model of every version says:
    read, read_latest, limits, neighbours and cap_max, over windows that start and end inside
    and on the edges of day blocks."""
    rng = np.random.default_rng(11)
    model: dict[tuple[int, int, int], tuple[int, float, str | None]] = {}
    grid = D0 - DAY + np.arange(0, 4 * DAY, 3_600_000, dtype=np.int64)  # hourly
    for round_ in range(6):
        n = 25
        times = rng.choice(grid, size=n, replace=False) + rng.integers(0, 2, n)
        origins = rng.integers(1, 3, n)
        kinds = rng.choice([TYPE_DBL, TYPE_INT, TYPE_STR, TYPE_RM], size=n, p=[0.5, 0.2, 0.1, 0.2])
        values = np.where((kinds == TYPE_STR) | (kinds == TYPE_RM), math.nan, rng.random(n))
        texts = [f"r{round_}-{i}" if k == TYPE_STR else None for i, k in enumerate(kinds)]
        imported = round_ % 3 == 2
        with db.transaction() as conn:
            f = Frame.from_columns(times, origins, [7_000_000] * n, kinds, values, texts)
            put(conn, store, sid, latest_versions_unique(f), live=not imported)
            # imports reuse their acq_time; a live write's stamp is the series' newest
            acq = 7_000_000 if imported else max(stamps_of(conn, store, sid))
        for t, o, k, v, s in zip(times, origins, kinds, values, texts, strict=True):
            key = (int(t), int(o), acq)
            if key in model and not imported:
                continue  # latest_versions_unique kept the first of a duplicate pair
            model[key] = (int(k), float(v), s)

    def want(since: int, till: int, origin: int | None) -> list[tuple[object, ...]]:
        return [
            (t, o, a, *model[(t, o, a)])
            for t, o, a in sorted(model)
            if since <= t < till and origin in (None, o)
        ]

    def rows(f: Frame) -> list[tuple[object, ...]]:
        text = f.text or (None,) * len(f)
        return list(
            zip(
                f.time.tolist(),
                f.origin.tolist(),
                f.acq.tolist(),
                f.type.tolist(),
                f.value.tolist(),
                text,
                strict=True,
            )
        )

    def same(got: list[tuple[object, ...]], exp: list[tuple[object, ...]]) -> None:
        assert [r[:4] + r[5:] for r in got] == [r[:4] + r[5:] for r in exp]
        np.testing.assert_array_equal([r[4] for r in got], [r[4] for r in exp])

    edges = [D0 - DAY, D0 - 1, D0, D0 + 1, D0 + 3_600_000 * 10 + 1, D0 + DAY, D0 + 3 * DAY]
    with db.transaction(write=False) as conn:
        for since, till in itertools.combinations(edges, 2):
            for origin in (None, 1, 2):
                exp = want(since, till, origin)
                got = store.read(conn, sid, since, till, origin=origin, limit=10_000)
                same(rows(got), exp)
                limited = store.read(conn, sid, since, till, origin=origin, limit=7)
                same(rows(limited), exp[:8])
                newest: dict[tuple[int, int], tuple[object, ...]] = {}
                for r in exp:
                    newest[(int(r[0]), int(r[1]))] = r  # type: ignore[call-overload]
                latest = store.read_latest(
                    conn, sid, since, till, origin=origin, limit=10_000, acq_before=None
                )
                same(rows(latest), [newest[k] for k in sorted(newest)])
                # Neighbours: of each origin, the nearest live numeric reading on each side.
                live: dict[tuple[int, int], tuple[object, ...]] = {}
                for r in want(-(2**62), 2**62, origin):
                    live[(int(r[0]), int(r[1]))] = r  # type: ignore[call-overload]
                before: dict[int, tuple[int, float]] = {}
                after: dict[int, tuple[int, float]] = {}
                for (t, o), r in sorted(live.items()):
                    if r[3] not in (TYPE_DBL, TYPE_INT):
                        continue
                    if t < since:
                        before[o] = (t, r[4])  # type: ignore[assignment]
                    elif t >= till and o not in after:
                        after[o] = (t, r[4])  # type: ignore[assignment]
                exp_edges = sorted(
                    [(t, o, v) for o, (t, v) in (*before.items(), *after.items())],
                    key=lambda e: (e[0], e[1]),
                )
                got_edges = store.neighbours(conn, sid, since, till, origin=origin, acq_before=None)
                assert points_of(got_edges) == exp_edges
        for origin in (None, 1, 2):
            stored_times = [t for t, o, _ in model if origin in (None, o)]
            assert store.cap_max(conn, [sid], origin=origin) == max(stored_times)


def test_concurrent_writers_of_one_block_lose_nothing(
    db: Database, store: SeriesStore, sid: int
) -> None:
    """A write rewrites its day block whole; two writers of one series at once (imports,
    which take no stamp: only the series' lock keeps them apart) must both land."""
    from concurrent.futures import ThreadPoolExecutor

    def writer(k: int) -> None:
        for i in range(20):
            t = D0 + (k * 100 + i) * 60_000
            with db.transaction() as conn:
                put(conn, store, sid, frame([t], 5_000_000, [float(i)]))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(writer, (0, 1)))
    with db.transaction(write=False) as conn:
        got = store.read(conn, sid, D0, D0 + DAY, origin=None, limit=1000)
    assert len(got) == 40


def test_insert_keeps_the_later_duplicate_and_counts_distinct_new_points(
    db: Database, store: SeriesStore
) -> None:
    """One write of two series with repeated keys: of equal (series, time, origin, acq) the
    later point in the write is kept, and the count is of distinct new keys; re-sending a
    stored key replaces it and counts once."""
    mid = make_sensor(db, make_client(db))
    keys = [(mid, moid("A+")), (mid, moid("P+"))]
    rng = np.random.default_rng(3)
    with db.transaction() as conn:
        ids = store.series_ids(conn, keys, create=True)
    model: dict[tuple[int, int, int], float] = {}
    for round_ in range(4):
        n = 40
        sids = rng.choice([ids[keys[0]], ids[keys[1]]], size=n)
        times = D0 + rng.integers(0, 6, n) * 900_000
        acqs = rng.integers(1, 3, n) * 1000
        values = rng.random(n)
        f = Frame.from_columns(times, np.ones(n), acqs, np.zeros(n), values)
        with db.transaction() as conn:
            count = store.insert(conn, sids.astype(np.int64), f)
        written = {}
        columns_ = (sids.tolist(), times.tolist(), acqs.tolist(), values.tolist())
        for s, t, a, v in zip(*columns_, strict=True):
            written[(s, t, a)] = v
        assert count == len(written), round_
        model.update(written)
    with db.transaction(write=False) as conn:
        for sid in ids.values():
            got = store.read(conn, sid, D0, D0 + DAY, origin=None, limit=1000)
            want = sorted((t, a, v) for (s, t, a), v in model.items() if s == sid)
            rows_ = list(zip(got.time.tolist(), got.acq.tolist(), got.value.tolist(), strict=True))
            assert rows_ == want


@pytest.mark.parametrize(
    ("series_ids", "days"),
    [([1, 1, 2, 2], [0, 0, 0, 3]), ([2**30, 5, 5, 2**30], [-2, 7, 7, 10**6])],
    ids=["packed", "beyond the packed range"],
)
def test_block_keys_on_both_paths(series_ids: list[int], days: list[int]) -> None:
    from besmart_server.server.signals.store import _block_keys

    f = Frame.from_columns(
        [d * DAY + 5 for d in days], [1, 2, 2, 1], [1] * 4, [TYPE_DBL] * 4, [0.0] * 4
    )
    got = _block_keys(np.array(series_ids, dtype=np.int64), f)
    assert got == {(s, d, o) for s, d, o in zip(series_ids, days, [1, 2, 2, 1], strict=True)}


def test_a_new_version_is_kept_beside_the_old_and_a_same_key_point_replaces_it(
    db: Database, store: SeriesStore, sid: int
) -> None:
    """Merging into a stored block: another acq is a new version beside the stored one; the
    same (time, origin, acq) — an import re-sent — replaces the stored point, text and all."""
    base = D0 + 5 * DAY
    with db.transaction() as conn:
        put(conn, store, sid, frame([base, base + 900_000], 10, [1.0, 2.0]))
    new = Frame.from_columns(
        [base, base + 900_000], [1, 1], [20, 10], [TYPE_DBL, TYPE_STR], [1.5, math.nan], [None, "x"]
    )
    with db.transaction() as conn:
        put(conn, store, sid, new)
    with db.transaction(write=False) as conn:
        got = store.read(conn, sid, base, base + DAY, origin=None, limit=100)
    assert list(zip(got.time.tolist(), got.acq.tolist(), got.type.tolist(), strict=True)) == [
        (base, 10, TYPE_DBL),
        (base, 20, TYPE_DBL),
        (base + 900_000, 10, TYPE_STR),
    ]
    assert got.value[:2].tolist() == [1.0, 1.5]
    assert got.text == (None, None, "x")


@pytest.mark.parametrize("defer", [False, True], ids=["merged", "deferred"])
def test_remembered_series_ids_are_checked_against_their_keys(
    db: Database, store: SeriesStore, defer: bool
) -> None:
    """A write takes the series ids its store remembers, without a lookup; its stamping
    statement checks each against its key. An id remembered from a transaction that rolled
    back (SQLite hands the same id to the next series created) is looked up again, and the
    points never land in the series that now has that id, nor twice in the right one (a
    deferring write appends nothing unless every series was stamped)."""
    cid = make_client(db)
    mid = make_sensor(db, cid)
    a, b = (mid, moid("A+")), (mid, moid("P+"))
    with db.engine.connect() as conn:
        rolled_back = conn.begin()
        phantom = store.series_ids(conn, [a], create=True)[a]
        rolled_back.rollback()
    with db.transaction() as conn:
        assert store.series_ids(conn, [a], create=False, known=True) == {a: phantom}
        assert store.series_ids(conn, [a], create=False) == {}
        other = store.series_ids(conn, [b], create=True)[b]
    if db.dialect == "sqlite":
        assert other == phantom  # AUTOINCREMENT's counter rolled back with the row
    admin = Principal(user_id=None, login="t", is_admin=True)
    cols = columns.decode({"time": [T, T + 1], "value": [1.0, 2.0]})
    item = service.WriteItem(cid, mid, moid("A+"), None, cols, ("body",))
    c = (mid, moid("A-"))  # a series the store remembers rightly, in the same write
    with db.transaction() as conn:
        right = store.series_ids(conn, [c], create=True)[c]
    beside = service.WriteItem(cid, mid, moid("A-"), None, cols, ("body",))
    with db.transaction(settle=False) as conn:
        assert service.write(conn, store, admin, [item, beside], defer=defer) == 4
    with db.transaction() as conn:
        ids = store.series_ids(conn, [a, b], create=False)
        assert ids[b] == other
        assert read(conn, store, other).value.tolist() == []
        assert read(conn, store, ids[a]).value.tolist() == [1.0, 2.0]
        assert read(conn, store, right).value.tolist() == [1.0, 2.0]  # once
        # remembered now as it is stored: the next write needs no lookup and checks out
        assert store.series_ids(conn, [a], create=False, known=True) == {a: ids[a]}
        assert service.write(conn, store, admin, [item]) == 2  # a second version of each


def test_superseded_tells_the_days_whose_times_have_older_versions(
    db: Database, store: SeriesStore, sid: int
) -> None:
    day = 86_400_000
    with db.transaction() as conn:
        put(conn, store, sid, frame([T, T + day], 1, [1.0, 2.0]))
        put(conn, store, sid, frame([T + 2 * day], 1, [5.0], origin=2))
        assert not store.superseded(conn, sid, T - day, T + 3 * day, origin=1)
        put(conn, store, sid, frame([T], 2, [1.5]))  # a second version of T's reading
        put(conn, store, sid, frame([T + 2 * day], 2, [6.0], origin=2))  # another origin
        assert store.superseded(conn, sid, T, T + 1, origin=1)
        assert store.superseded(conn, sid, T - day, T + 3 * day, origin=1)
        assert not store.superseded(conn, sid, T + day, T + 2 * day, origin=1)  # next day
        assert store.superseded(conn, sid, T + 2 * day, T + 3 * day, origin=2)
        assert not store.superseded(conn, sid, T + 2 * day, T + 3 * day, origin=1)
        assert not store.superseded(conn, sid, T, T, origin=1)  # an empty window
        assert not store.superseded(conn, sid + 1, T - day, T + 3 * day, origin=1)
