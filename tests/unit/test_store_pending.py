"""The write-ahead table (store.py, "Write-ahead"): a deferring write appends its stamped
points to `pending`; every transaction that may read merges them into the blocks first, so
no acknowledged point is ever missing from a read, and merges keep the writes' order."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, text

from besmart_server.server.db import Database, now_ms
from besmart_server.server.sensors.service import delete_sensor
from besmart_server.server.signals.pipeline import Frame
from besmart_server.server.signals.store import SeriesStore, pack_runs, unpack
from besmart_server.wire import TYPE_DBL, TYPE_INT, TYPE_STR
from tests.unit.test_store_writers import (
    ADMIN,
    D0,
    DAY,
    STUCK_S,
    every_version,
    live_write,
    new_series,
    pg_only,
    points,
)


@pytest.fixture
def store(db: Database) -> SeriesStore:
    return SeriesStore(db.dialect)


def write(
    conn: Connection, store: SeriesStore, sids: list[int], f: Frame, *, defer: bool = True
) -> int:
    """`f`'s points into each of `sids`, live (stamped by the store), deferred by default."""
    return live_write(conn, store, sids, f, defer=defer)


def imported(times: list[int], acq_ms: int, value: float) -> Frame:
    """Points with an acq_time of their own (an import), as the store keeps it (µs)."""
    n = len(times)
    return Frame.from_columns(times, [1] * n, [acq_ms * 1000] * n, [TYPE_DBL] * n, [value] * n)


def count(db: Database, table: str) -> int:
    # settle=False: a look at the tables as the writes left them, nothing merged first
    with db.transaction(write=False, settle=False) as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


# --- the rows' format -----------------------------------------------------------------------

_I64 = st.integers(-(2**62), 2**62)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            _I64,
            st.integers(1, 5),
            _I64,
            st.sampled_from([TYPE_DBL, TYPE_INT, TYPE_STR]),
            st.floats(allow_nan=True, allow_infinity=True),
            st.one_of(st.none(), st.text(max_size=20)),
        ),
        max_size=40,
    )
)
def test_a_pending_row_gives_back_every_column_exactly(rows: list[tuple[Any, ...]]) -> None:
    texts = [r[5] if r[3] == TYPE_STR else None for r in rows]
    f = Frame.from_columns(
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
        texts if any(t is not None for t in texts) else None,
    )
    (packed,) = pack_runs(f, [0, len(f)])
    g = unpack(packed)
    for a, b in ((f.time, g.time), (f.origin, g.origin), (f.acq, g.acq), (f.type, g.type)):
        assert a.dtype == b.dtype
        assert a.tolist() == b.tolist()
    assert f.value.view(np.int64).tolist() == g.value.view(np.int64).tolist()  # NaN bits too
    has_text = any(r[3] == TYPE_STR for r in rows) and f.text is not None
    assert g.text == (f.text if has_text else None)
    # A live write's row: the acq is its stamp, not in the body; the rest as above.
    (stamped,) = pack_runs(f, [0, len(f)], acq=False)
    h = unpack(stamped, 1_800_000_000_000_000)
    assert h.acq.dtype == np.int64
    assert h.acq.tolist() == [1_800_000_000_000_000] * len(f)
    assert (h.time.tolist(), h.origin.tolist(), h.type.tolist()) == (
        g.time.tolist(),
        g.origin.tolist(),
        g.type.tolist(),
    )
    assert h.value.view(np.int64).tolist() == g.value.view(np.int64).tolist()
    assert h.text == g.text


# --- reads see every acknowledged point -----------------------------------------------------


def test_a_deferred_write_is_pending_until_a_transaction_reads(
    db: Database, store: SeriesStore
) -> None:
    _, sids = new_series(db, store, 2)
    times = (D0 + np.arange(0, 2 * DAY, 900_000)).tolist()
    with db.transaction(settle=False) as conn:
        assert write(conn, store, sids, points(times, 3.0)) == 2 * len(times)
    assert count(db, "pending") == 2  # one row per series
    assert count(db, "blocks") == 0
    with db.reads() as conn:  # settles first
        for sid in sids:
            f = every_version(conn, store, sid)
            assert f.time.tolist() == times
            assert set(f.value.tolist()) == {3.0}
            assert len(set(f.acq.tolist())) == 1  # one stamp per series and write
    assert count(db, "pending") == 0
    assert count(db, "blocks") == 2 * 2  # two days of two series


def test_a_write_transaction_settles_too(db: Database, store: SeriesStore) -> None:
    """A transaction that writes blocks (a graph's, the weather's) merges what is pending
    before it reads or writes."""
    _, (sid,) = new_series(db, store, 1)
    with db.transaction(settle=False) as conn:
        write(conn, store, [sid], points([D0, D0 + 1]))
    with db.transaction() as conn:
        assert count(db, "pending") == 0
        assert every_version(conn, store, sid).time.tolist() == [D0, D0 + 1]


def test_versions_keep_the_order_of_their_writes(db: Database, store: SeriesStore) -> None:
    """Three writes of one time, the middle one merged at once: every version stays, the
    newest (the last write's stamp) last; an import of the same acq_time twice keeps the
    later one, whichever way each was written."""
    _, (sid,) = new_series(db, store, 1)
    for value, defer in ((1.0, True), (2.0, False), (3.0, True)):
        with db.transaction(settle=False) as conn:
            write(conn, store, [sid], points([D0], value), defer=defer)
    for value, defer in ((10.0, True), (11.0, True), (12.0, False), (13.0, True)):
        with db.transaction(settle=False) as conn:
            series = np.full(1, sid, dtype=np.int64)
            store.insert(conn, series, imported([D0 + 1], 5_000, value), defer=defer)
    with db.reads() as conn:
        f = every_version(conn, store, sid)
    live = f.take(f.time == D0)
    assert live.value.tolist() == [1.0, 2.0, 3.0]
    assert live.acq.tolist() == sorted(live.acq.tolist())
    assert f.take(f.time == D0 + 1).value.tolist() == [13.0]


def test_a_merging_write_takes_its_series_pending_points_first(
    db: Database, store: SeriesStore
) -> None:
    """A deferred import, then the same import merged at once (no settling between): the
    later one is kept, so the merging write merged the pending one first."""
    _, (sid,) = new_series(db, store, 1)
    series = np.full(1, sid, dtype=np.int64)
    with db.transaction(settle=False) as conn:
        store.insert(conn, series, imported([D0], 7_000, 1.0), defer=True)
    with db.transaction(settle=False) as conn:
        store.insert(conn, series, imported([D0], 7_000, 2.0))
        assert count(db, "pending") == 1  # not committed yet: another connection's look
    assert count(db, "pending") == 0
    with db.reads() as conn:
        assert every_version(conn, store, sid).value.tolist() == [2.0]


def test_a_plan_takes_the_oldest_rows_first_and_stops_at_upto(
    db: Database, store: SeriesStore
) -> None:
    _, sids = new_series(db, store, 3)
    for k, sid in enumerate(sids):
        with db.transaction(settle=False) as conn:
            write(conn, store, [sid], points([D0 + k]))
    with db.transaction(write=False, settle=False) as conn:
        ids = [int(i) for (i,) in conn.execute(text("SELECT id FROM pending ORDER BY id"))]
        first = store.plan(conn, upto=ids[1], rows=1)
    assert first is not None
    assert (first.series, first.rows) == ([sids[0]], [ids[0]])  # the oldest row's series
    with db.transaction(settle=False) as conn:
        assert store.apply(conn, first)
    with db.transaction(write=False, settle=False) as conn:
        second = store.plan(conn, upto=ids[1])
    assert second is not None
    assert (second.series, second.rows) == ([sids[1]], [ids[1]])  # the third is past upto
    with db.transaction(settle=False) as conn:
        assert store.apply(conn, second)
    with db.transaction(write=False, settle=False) as conn:
        assert store.plan(conn, upto=ids[1]) is None
        assert [len(every_version(conn, store, s)) for s in sids] == [1, 1, 0]
    assert count(db, "pending") == 1


def test_deleting_a_sensor_deletes_its_pending_points(db: Database, store: SeriesStore) -> None:
    mid, sids = new_series(db, store, 2)
    _, (other,) = new_series(db, store, 1)
    with db.transaction(settle=False) as conn:
        write(conn, store, [*sids, other], points([D0]))
        cid = conn.execute(text(f"SELECT client_cid FROM sensors WHERE mid = {mid}")).scalar_one()
        delete_sensor(conn, ADMIN, int(cid), mid)
    assert count(db, "pending") == 1
    with db.reads() as conn:
        assert every_version(conn, store, other).time.tolist() == [D0]


def test_a_failed_write_leaves_nothing_pending(db: Database, store: SeriesStore) -> None:
    _, (sid,) = new_series(db, store, 1)

    def fail_after_the_points() -> None:
        with db.transaction(settle=False) as conn:
            write(conn, store, [sid], points([D0]))
            raise RuntimeError("the request failed after its points")

    with pytest.raises(RuntimeError):
        fail_after_the_points()
    assert count(db, "pending") == 0


# --- many writers and readers at once -------------------------------------------------------


def test_deferred_writers_and_readers_at_once_lose_and_duplicate_nothing(
    db: Database, store: SeriesStore
) -> None:
    """Four threads defer writes to overlapping series (each its own and its neighbour's),
    two read meanwhile (each read merges what is pending): every read sees at least what
    was acknowledged before it began, and afterwards every point is there once. (On
    SQLite the writers and the readers' merges take turns in the writers' queue.)"""
    threads, rounds = 4, 15
    _, sids = new_series(db, store, threads)
    acked = [0] * threads  # writes of thread k acknowledged so far
    lock = threading.Lock()
    done = threading.Event()
    errors: list[str] = []

    def writer(k: int) -> None:
        for r in range(rounds):
            t = D0 + (k * rounds + r) * 60_000
            with db.transaction(settle=False) as conn:
                write(conn, store, [sids[k], sids[(k + 1) % threads]], points([t], float(k)))
            with lock:
                acked[k] = r + 1

    def reader() -> None:
        while not done.is_set():
            with lock:
                before = list(acked)
            with db.reads() as conn:
                for k in range(threads):
                    f = every_version(conn, store, sids[k])
                    mine = int(np.count_nonzero(f.value == float(k)))
                    if mine < before[k]:
                        errors.append(f"series {k}: {mine} of {before[k]} acknowledged")

    with ThreadPoolExecutor(threads + 2) as pool:
        readers = [pool.submit(reader) for _ in range(2)]
        list(pool.map(writer, range(threads)))
        done.set()
        for fut in readers:
            fut.result()
    assert not errors, errors[:5]
    with db.reads() as conn:
        for k in range(threads):
            f = every_version(conn, store, sids[k])
            writers = (k, (k - 1) % threads)  # its own thread and its neighbour's
            want = {D0 + (j * rounds + r) * 60_000 for j in writers for r in range(rounds)}
            got = f.time.tolist()
            assert len(got) == len(set(got)) == 2 * rounds
            assert set(got) == want
    assert count(db, "pending") == 0


# --- merges planned without the lock, applied under it --------------------------------------


def test_a_plan_is_applied_when_nothing_changed(db: Database, store: SeriesStore) -> None:
    _, sids = new_series(db, store, 2)
    with db.transaction() as conn:
        write(conn, store, sids, points([D0, D0 + 1]), defer=False)  # blocks to merge into
    with db.transaction(settle=False) as conn:
        write(conn, store, sids, points([D0 + 2], 5.0))
    with db.transaction(write=False, settle=False) as conn:
        plan = store.plan(conn)
    assert plan is not None
    assert plan.series == sorted(sids)
    assert count(db, "pending") == 2  # planning wrote nothing
    with db.transaction(settle=False) as conn:
        assert store.apply(conn, plan)
    assert count(db, "pending") == 0
    with db.transaction(write=False, settle=False) as conn:
        for sid in sids:
            assert every_version(conn, store, sid).value.tolist() == [1.0, 1.0, 5.0]
        assert store.plan(conn) is None


def test_a_plan_overtaken_by_another_merge_writes_nothing(db: Database, store: SeriesStore) -> None:
    """Its rows merged meanwhile (by a write that merges at once), or its rows still pending
    but the blocks rewritten: the plan is refused whole, and no point is lost or doubled."""
    _, (sid,) = new_series(db, store, 1)
    series = np.full(1, sid, dtype=np.int64)
    with db.transaction(settle=False) as conn:
        write(conn, store, [sid], points([D0], 1.0))
    with db.transaction(write=False, settle=False) as conn:
        plan = store.plan(conn)
        saved = conn.execute(text("SELECT id, series_id, body FROM pending")).all()
    assert plan is not None
    with db.transaction(settle=False) as conn:  # merges the pending point with its own
        store.insert(conn, series, imported([D0 + 1], 9_000, 2.0))
    with db.transaction(settle=False) as conn:
        assert not store.apply(conn, plan)  # its row is gone
    with db.transaction(settle=False) as conn:  # the row back, the blocks not as planned
        for row in saved:
            conn.execute(
                text("INSERT INTO pending (id, series_id, body) VALUES (:i, :s, :b)"),
                {"i": row[0], "s": row[1], "b": row[2]},
            )
        assert not store.apply(conn, plan)
        conn.execute(text("DELETE FROM pending"))
    with db.reads() as conn:
        f = every_version(conn, store, sid)
    assert f.time.tolist() == [D0, D0 + 1]
    assert f.value.tolist() == [1.0, 2.0]


def test_runs_pack_as_their_slices_would() -> None:
    n = 7
    f = Frame.from_columns(
        [D0 + i for i in range(n)],
        [1, 1, 2, 1, 1, 1, 4],
        [10 * i for i in range(n)],
        [TYPE_DBL, TYPE_DBL, TYPE_STR, TYPE_DBL, TYPE_INT, TYPE_STR, TYPE_DBL],
        [0.5, 1.5, np.nan, -2.0, 3.0, np.nan, 1e300],
        [None, None, "a", None, None, "ü", None],
    )
    runs = pack_runs(f, [0, 2, 5, 5, 7])
    assert [len(unpack(r)) for r in runs] == [2, 3, 0, 2]
    assert unpack(runs[0]).text is None  # no text in the run: none kept
    assert unpack(runs[1]).text == ("a", None, None)
    back = unpack(runs[3])
    assert back.time.tolist() == [D0 + 5, D0 + 6]
    assert back.text == ("ü", None)
    assert back.value.tolist()[1] == 1e300


def test_a_merge_never_closes_a_cycle_with_a_writer_of_several_series(
    db: Database, store: SeriesStore
) -> None:
    """A transaction writes (merging at once) its series one statement at a time, the
    higher id first, as a graph's targets are; meanwhile a read merges what is pending in
    both. The merge gives way (it takes no lock while holding another), so neither fails
    with a deadlock and every point is there."""
    pg_only(db)
    _, (lo, hi) = new_series(db, store, 2)
    with db.transaction(settle=False) as conn:
        write(conn, store, [lo, hi], points([D0], 1.0))  # pending in both
    holding = threading.Event()
    go_on = threading.Event()

    def writer() -> None:
        with db.transaction(settle=False) as conn:
            write(conn, store, [hi], points([D0 + 1], 2.0), defer=False)  # hi's merge lock
            holding.set()
            go_on.wait(STUCK_S)
            write(conn, store, [lo], points([D0 + 1], 2.0), defer=False)  # then lo's

    with ThreadPoolExecutor(2) as pool:
        wrote = pool.submit(writer)
        assert holding.wait(STUCK_S)
        read = pool.submit(db.settle)  # lo merged at once; hi waits for the writer
        time.sleep(0.5)
        go_on.set()
        wrote.result(timeout=STUCK_S)
        read.result(timeout=STUCK_S)
    with db.reads() as conn:
        for sid in (lo, hi):
            assert every_version(conn, store, sid).value.tolist() == [1.0, 2.0]
    assert count(db, "pending") == 0


def test_the_workers_tick_merges_only_once_writes_have_paused(
    db: Database, store: SeriesStore
) -> None:
    """`Database.settle(unless_newer_than=)`: the validation worker's tick merges only when
    nothing was appended since its last look, so a bulk load keeps the cores meanwhile."""
    _, (sid,) = new_series(db, store, 1)
    assert db.settle(unless_newer_than=-1) is None  # nothing pending
    with db.transaction(settle=False) as conn:
        write(conn, store, [sid], points([D0]))
    first = db.settle(unless_newer_than=-1)  # the worker's first look: writes may go on
    assert first is not None
    assert count(db, "pending") == 1
    with db.transaction(settle=False) as conn:
        write(conn, store, [sid], points([D0 + 1]))
    second = db.settle(unless_newer_than=first)  # appended meanwhile: still not merged
    assert second is not None
    assert second > first
    assert count(db, "pending") == 2
    assert db.settle(unless_newer_than=second) == second  # a quiet tick: merged
    assert count(db, "pending") == 0
    with db.transaction(write=False, settle=False) as conn:
        assert every_version(conn, store, sid).time.tolist() == [D0, D0 + 1]


def test_two_threads_merging_at_once_merge_each_row_once(
    db: Database, store: SeriesStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's tick and its validation's read (or two requests' reads) settle at the same
    moment: one merges, the other waits for it and finds nothing left; no plan is computed
    twice over the same rows, and none is refused as overtaken."""
    _, sids = new_series(db, store, 10)
    day = (D0 + np.arange(0, DAY, 900_000)).tolist()
    for k in range(120):  # 1,200 rows: three plans of 500 rows or fewer
        with db.transaction(settle=False) as conn:
            write(conn, store, sids, points(day, float(k)))
    planned: list[int] = []
    refused: list[int] = []
    plan, apply = SeriesStore.plan, SeriesStore.apply

    def counted_plan(self: SeriesStore, conn: Connection, **kw: Any) -> Any:
        p = plan(self, conn, **kw)
        if p is not None:
            planned.extend(p.rows)
        return p

    def counted_apply(self: SeriesStore, conn: Connection, p: Any) -> bool:
        done = apply(self, conn, p)
        if not done:
            refused.append(1)
        return done

    monkeypatch.setattr(SeriesStore, "plan", counted_plan)
    monkeypatch.setattr(SeriesStore, "apply", counted_apply)
    start = threading.Barrier(2)

    def settle() -> None:
        start.wait()
        db.settle()

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: settle(), range(2)))
    assert count(db, "pending") == 0
    assert len(planned) == len(set(planned)) == 1200
    assert refused == []
    with db.reads() as conn:
        assert len(every_version(conn, store, sids[0])) == 120 * len(day)


def test_a_thread_inside_a_transaction_merges_without_waiting_for_another_merge(
    db: Database, store: SeriesStore
) -> None:
    """Waiting for another thread's merge is only for a thread holding nothing: one inside a
    transaction may hold a lock that merge waits for (a series' row or merge lock), and
    waiting would close a cycle no database can see. It merges on its own instead."""
    from besmart_server.server.signals.store import _Pending

    _, (sid,) = new_series(db, store, 1)
    with db.transaction(settle=False) as conn:
        write(conn, store, [sid], points([D0, D0 + 1]))
    settler = Database.settler
    assert isinstance(settler, _Pending)
    waited = threading.Event()
    with settler._merging:  # another thread's merge under way
        with (
            db.transaction(write=False, settle=False),
            db.transaction(write=False) as conn,  # nested: merges at once
        ):
            assert every_version(conn, store, sid).time.tolist() == [D0, D0 + 1]
        with db.transaction(settle=False) as conn:
            write(conn, store, [sid], points([D0 + 2]))

        def alone() -> None:
            with db.transaction(write=False) as conn:
                waited.set()
                assert len(every_version(conn, store, sid)) == 3

        reader = threading.Thread(target=alone)
        reader.start()
        time.sleep(0.3)
        assert not waited.is_set()  # no transaction open: it waits for the merge under way
    reader.join(timeout=STUCK_S)
    assert waited.is_set()


def test_a_deferred_write_of_live_and_imported_points_stores_what_a_merged_one_does(
    db: Database, store: SeriesStore
) -> None:
    """Its imported points (their own acq) are appended first, moving their series' clocks;
    the live ones are stamped past them: the versions a write that merges at once stores."""
    _, sids = new_series(db, store, 2)
    got = []
    future = now_ms() + 60_000  # an import newer than the clock: live stamps go past it
    for defer in (False, True):
        with db.transaction() as conn:
            conn.execute(text("DELETE FROM blocks"))
            conn.execute(text(f"UPDATE series SET acq_us = 0 WHERE id IN ({sids[0]}, {sids[1]})"))
        f = Frame.from_columns(
            [D0, D0, D0 + 1, D0 + 1],
            [1, 1, 1, 1],
            [future * 1000, 0, 0, future * 1000],
            [TYPE_DBL] * 4,
            [1.0, 2.0, 3.0, 4.0],
        )
        series = np.array([sids[0], sids[0], sids[1], sids[1]], dtype=np.int64)
        live = np.array([False, True, True, False])
        with db.transaction(settle=False) as conn:
            store.insert(conn, series, f, live=live, defer=defer)
        if defer:
            assert count(db, "pending") == 4  # imported rows, then stamped ones
        with db.reads() as conn:
            got.append([every_version(conn, store, sid) for sid in sids])
    for merged, deferred in zip(*got, strict=True):
        assert merged.value.tolist() == deferred.value.tolist()
        assert merged.time.tolist() == deferred.time.tolist()
        imported, stamped = deferred.acq.tolist()
        assert imported < stamped  # the live point is the newer version
        assert imported == merged.acq.tolist()[0]
