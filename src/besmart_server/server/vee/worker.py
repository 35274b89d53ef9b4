"""Validation after writes: the write path queues the windows it touched (in its own
transaction) and a validation worker drains the queue in a process of its own (`besmart vee
worker`, which `besmart serve` starts beside the API), so a write never waits for the rules,
never fails because of them, and never shares an interpreter lock with them. The audit
entries of estimated and corrected writes are made with the queue rows, which carry who wrote
and why."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

import numpy as np
from sqlalchemy import Connection

from besmart_server.server.access import Principal
from besmart_server.server.config import Settings
from besmart_server.server.db import Database, now_ms
from besmart_server.server.signals import service as signals
from besmart_server.server.signals.store import SeriesStore
from besmart_server.server.vee import audit, service
from besmart_server.server.vee.service import Window, Written

log = logging.getLogger("besmart.vee")

# The worker validates on behalf of nobody in particular: the writer was authorized already.
ROBOT: Final = Principal(user_id=None, login="vee", is_admin=True)


# Queued windows of one series closer than this are validated as one (a bulk load queues a
# window per request; each validation reads a day of context either side of its window).
MERGE_GAP_MS: Final = 86_400_000
# ... up to this many written points: a window's cost is mostly per window (its sensor, its
# thresholds, a day of context either side, 30 days of history), so the fewer the better, but
# its reads and rules hold the worker's thread for their points (100,000: 69 days of 1-minute
# readings, years of quarter-hours; a month's cap cost 1,200 windows per year of a bulk load
# of 100 quarter-hour series).
MERGE_POINTS: Final = 100_000


def merged_windows(rows: Sequence[Any]) -> list[tuple[Window, list[int]]]:
    """The claimed rows as windows per series, overlapping or near ones merged, each with the
    ids of the rows it covers."""
    by_series: dict[tuple[int, int, int], list[Any]] = {}
    for r in rows:
        key = (int(r.client_cid), int(r.sensor_mid), int(r.signal_type_moid))
        by_series.setdefault(key, []).append(r)
    out: list[tuple[Window, list[int]]] = []
    for (cid, mid, moid), group in by_series.items():
        group.sort(key=lambda r: int(r.since))
        first = group[0]
        since, till, ids = int(first.since), int(first.till), [int(first.id)]
        points = int(first.points)
        for r in group[1:]:
            lo, hi, n = int(r.since), int(r.till), int(r.points)
            if lo <= till + MERGE_GAP_MS and points + n <= MERGE_POINTS:
                till = max(till, hi)
                ids.append(int(r.id))
                points += n
                continue
            out.append((Window(cid, mid, moid, since, till), ids))
            since, till, ids, points = lo, hi, [int(r.id)], n
        out.append((Window(cid, mid, moid, since, till), ids))
    return out


# Rows one claim takes: a bulk load queues a row per series and request (100 in the
# benchmark's), and only the rows of one claim are merged into windows.
CLAIM_ROWS: Final = 20_000


# Windows validated in one read transaction with their lookups shared, and kept in one write
# transaction: under SQLite's one writer a batch's write holds up a request's for as long as
# the events of this many windows take to store (a few ms each).
BATCH_WINDOWS: Final = 25


def process(
    db: Database,
    store: SeriesStore,
    max_points: int,
    limit: int = CLAIM_ROWS,
    *,
    claims: int | None = None,
) -> int:
    """Claim and process queued rows until none is left (or `claims` claims were made); the
    rows processed. The rules run in a read transaction and only their events are written,
    in a short write of their own, so a writer never waits for a validation (SQLite has one
    writer at a time). A window that fails is logged and dropped rather than blocking the
    rows behind it (and not counted)."""
    total = 0
    if look(db).oldest_at is None:  # a worker's look at an empty queue writes nothing
        return 0
    for _ in itertools.count() if claims is None else range(claims):
        with db.transaction(settle=False) as conn:  # the queue alone
            rows = service.claim(conn, limit)
        if not rows:
            return total
        merged = merged_windows(rows)
        for i in range(0, len(merged), BATCH_WINDOWS):
            batch = merged[i : i + BATCH_WINDOWS]
            try:
                _validate_batch(db, store, max_points, batch)
                total += sum(len(ids) for _, ids in batch)
            except Exception:
                # On PostgreSQL a failed statement ends its transaction for every window of
                # the batch: they are validated again one at a time, the failing one dropped.
                log.warning("validation of %d windows failed: one at a time", len(batch))
                total += sum(_validate_alone(db, store, max_points, one) for one in batch)
    return total


def look(db: Database) -> service.QueueLook:
    """The queue as a worker sees it before a drain, in a transaction that merges nothing
    pending (reading the queue alone, it need not; a merge there would run the write-ahead
    table's merges beside every write of a bulk load, once a poll)."""
    with db.transaction(write=False, settle=False) as conn:
        return service.look(conn)


def _validate_batch(
    db: Database, store: SeriesStore, max_points: int, batch: Sequence[tuple[Window, list[int]]]
) -> None:
    with db.transaction(write=False) as conn:
        known = service.look_up(conn, store, ROBOT, [w for w, _ in batch])
        found = [
            # each window reads what one read may
            service.validate(
                conn, store, ROBOT, w, budget=signals.ReadBudget(max_points), known=known
            )
            for w, _ in batch
        ]
    with db.transaction(settle=False) as conn:  # events and the queue: no block is read
        service.keep_many(conn, store, [(w, f) for (w, _), f in zip(batch, found, strict=True)])
        service.done(conn, [i for _, ids in batch for i in ids])


def _validate_alone(
    db: Database, store: SeriesStore, max_points: int, one: tuple[Window, list[int]]
) -> int:
    """The window's rows validated, 0 when it failed and was dropped."""
    ids = one[1]
    try:
        _validate_batch(db, store, max_points, [one])
        return len(ids)
    except Exception:
        # dropped, not retried: a window that fails once fails again (the audit is not in
        # the queue; only this validation is lost, and it is logged)
        log.exception("validation of queued windows %s failed: dropped", ids)
        with db.transaction() as conn:
            service.done(conn, ids)
        return 0


def rest_after(drain_s: float, share: float) -> float:
    """Seconds the worker rests after a drain of `drain_s` seconds, so that while windows keep
    coming its drains take at most `share` of the time: of a machine's cores, which the API
    and the database need under a bulk load more than validation does."""
    return drain_s * (1.0 - share) / share


class Worker:
    """Drains the queue on a thread of its own when kicked, and (once `poll` is called) at
    start and every so many seconds after: the writes are made by other processes (the API's,
    a bridge's), which queue their windows in the database and wake nobody."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._store = SeriesStore(db.dialect)
        self._max_points = settings.max_points_per_read
        self._delay = settings.validate_delay_seconds
        self._share = settings.validate_max_share
        self._max_lag_ms = int(settings.validate_max_lag_seconds * 1000)
        self._rested_at = 0.0  # time.monotonic() before which no drain starts under writes
        self._hurry = threading.Event()  # join and shutdown cut a drain's delay short
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="vee")
        self._lock = threading.Lock()
        self._next: Future[int] | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def poll(self, seconds: float) -> None:
        """Drain now, then every `seconds` until `shutdown` (one poller; later calls do not
        start another)."""
        with self._lock:
            if self._poller is not None:
                return
            self._poller = threading.Thread(
                target=self._poll, args=(seconds,), name="vee-poll", daemon=True
            )
        self._poller.start()

    def _poll(self, seconds: float) -> None:
        while not self._stop.is_set():
            self.kick()
            self._stop.wait(seconds)

    def kick(self) -> Future[int]:
        """Make sure a drain starts after now (one waiting drain covers every kick): that
        drain, whose result is the rows it processed (0 also when writes kept coming)."""
        with self._lock:
            if self._next is None or self._next.running() or self._next.done():
                self._next = self._pool.submit(self._drain)
            return self._next

    def _drain(self) -> int:
        # Waiting lets the requests of a bulk load queue their windows meanwhile: one claim
        # merges them per series, so a day's context either side of a window is read once
        # per merged window, not per request (the drain per request was a third of the
        # server's time in bench.run's ingest).
        # While writes keep coming (rows were queued during the wait) a drain leaves the
        # queue to the next poll, so that a bulk load keeps the cores and is validated
        # after it in fewer, larger windows; only once the oldest window waited
        # validate_max_lag_seconds does it drain meanwhile, and then it rests in proportion
        # to each drain, so validation stays a bounded share of the time (a drain's cost is
        # mostly per series, not per point).
        try:
            before = look(self._db).newest
            self._hurry.wait(self._delay)
            if not self._hurry.is_set() and not self._due(before):
                return 0  # the next poll looks again
        except Exception:
            log.exception("validation queue look failed")
            return 0
        started = time.monotonic()
        try:
            # One claim a drain: under a steady load rows keep coming, and a drain that
            # claimed until none was left never ended, so never rested. What it left is
            # claimed by the next, after the rest (kicked now, or by the next poll).
            done = process(self._db, self._store, self._max_points, claims=1)
            if done >= CLAIM_ROWS:
                self.kick()
            return done
        except Exception:
            log.exception("validation queue drain failed")
            return 0
        finally:
            ended = time.monotonic()
            self._rested_at = ended + rest_after(ended - started, self._share)

    def _due(self, before: int | None) -> bool:
        """Whether to drain now: something is free to claim, and either nothing was queued
        since the look that saw `before` as the newest row (rows deleted since, by a drain
        of another worker, do not count), or the oldest free row has waited the max lag
        and the rest after the last drain is over."""
        now = look(self._db)
        if now.oldest_at is None or now.newest is None:
            return False
        if before is not None and now.newest <= before:
            return True
        waited = now_ms() - now.oldest_at >= self._max_lag_ms
        return waited and time.monotonic() >= self._rested_at

    def join(self) -> None:
        """Wait until the drains kicked so far are done (tests, shutdown), without their delay."""
        self._hurry.set()
        with self._lock:
            last = self._next
        if last is not None:
            last.result()
        self._hurry.clear()

    def shutdown(self) -> None:
        """Stop polling, finish the queued drain and stop."""
        self._stop.set()
        self._hurry.set()
        poller = self._poller
        if poller is not None:
            poller.join()
        self._pool.shutdown(wait=True)


def enqueue_write(
    conn: Connection,
    settings: Settings,
    store: SeriesStore,
    principal: Principal,
    items: Sequence[signals.WriteItem],
    *,
    reason: str | None = None,
) -> None:
    """Every write path's call inside its transaction, after its points (the REST routes'
    observer, the MQTT bridge's ingest): the audit entries of its estimated and corrected
    points (who, when, why), and the windows it touched queued for validation. In a
    savepoint and never raising: a failure here is logged, and the write stands."""
    if not settings.validate_after_write:
        return
    writes, edits = _windows(items)
    if not writes:
        return
    try:
        if not edits:  # the queue rows alone (a live write): one round trip on PostgreSQL
            service.enqueue_apart(conn, principal, writes, reason=reason)
            return
        with conn.begin_nested():
            budget = signals.ReadBudget(settings.max_points_per_read)
            for item in edits:
                audit.record_write(conn, store, principal, item, reason=reason, budget=budget)
            service.enqueue(conn, principal, writes, reason=reason)
    except Exception:
        log.exception("queueing validation after a write failed")


def _windows(
    items: Sequence[signals.WriteItem],
) -> tuple[list[Written], list[signals.WriteItem]]:
    """The window and origins of each item with points, and the items with an audited
    origin: numpy over all items at once (per item, the five calls that a multi-series PUT
    of 100 items paid 100 times were a tenth of the served write)."""
    full = [i for i in items if len(i.columns.time)]
    if not full:
        return [], []
    lens = np.array([len(i.columns.time) for i in full], dtype=np.int64)
    starts = np.cumsum(lens) - lens
    time = np.concatenate([i.columns.time for i in full])
    origin = np.concatenate([i.columns.origin for i in full]).astype(np.int64)
    lo_t, hi_t = np.minimum.reduceat(time, starts), np.maximum.reduceat(time, starts)
    lo_o, hi_o = np.minimum.reduceat(origin, starts), np.maximum.reduceat(origin, starts)
    audited = np.logical_or.reduceat(np.isin(origin, audit.AUDITED), starts)
    writes: list[Written] = []
    for k, (i, lo, hi, olo, ohi, n) in enumerate(
        zip(
            full, lo_t.tolist(), hi_t.tolist(), lo_o.tolist(), hi_o.tolist(), lens.tolist(),
            strict=True,
        )
    ):  # fmt: skip
        origins = (
            (olo,) if olo == ohi else tuple(np.unique(origin[starts[k] : starts[k] + n]).tolist())
        )
        writes.append(
            Written(i.client_cid, i.sensor_mid, i.signal_type_moid, lo, hi + 1, origins, n)
        )
    return writes, [i for i, a in zip(full, audited.tolist(), strict=True) if a]


class Observer:
    """The write routes' observer (signals.observers.WriteObserver) for the app `state`."""

    def __init__(self, state: Any) -> None:
        self._state = state

    def written(
        self,
        conn: Connection,
        store: SeriesStore,
        principal: Principal,
        items: Sequence[signals.WriteItem],
        *,
        reason: str | None,
    ) -> None:
        enqueue_write(conn, self._state.settings, store, principal, items, reason=reason)


def serve(db: Database, settings: Settings, stop: threading.Event, *, parent: int = 0) -> bool:
    """`besmart vee worker`: drain the queue now and every validate_poll_seconds, and merge
    the write-ahead table's points once a second passed with none appended, until `stop` is
    set (then finish the drain under way: True) or, with `parent`, until that process is
    gone (False at once: the worker `besmart serve` starts must not outlive it, even when it
    is killed, and the caller exits without waiting for the drain, whose claims expire)."""
    worker = Worker(db, settings)
    worker.poll(settings.validate_poll_seconds)
    newest: int | None = None
    while not stop.wait(1.0):
        if parent and os.getppid() != parent:
            log.warning("the process that started this worker is gone: stopping")
            return False
        # The points deferring writes left pending are merged into their blocks here too,
        # off the API's processes, when no read or drain did it meanwhile: once a second
        # passed with nothing appended, so that a bulk load keeps the cores meanwhile.
        try:
            newest = db.settle(unless_newer_than=-1 if newest is None else newest)
        except Exception:
            log.exception("merging the pending points failed")
    worker.shutdown()
    return True


__all__ = [
    "ROBOT",
    "Observer",
    "Worker",
    "Written",
    "enqueue_write",
    "merged_windows",
    "process",
    "rest_after",
    "serve",
]
