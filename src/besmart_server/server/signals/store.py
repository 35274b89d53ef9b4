"""The `SeriesStore` protocol: where points live, with one implementation per engine.

Points live in day blocks (blocks.py): one compressed row per (series, UTC day, origin) with
every version of that day's points. `BlockStore` here does the work for both engines; their
subclasses spell the SQL and keep concurrent writers of one block apart. Versions are never
compared with stored values: a new version is merged into its block beside the older ones.

Version stamps (`acq`, µs) come from the single-row `version_clock`, advanced inside the
writing transaction: `max(last + 1, now)`, so stamps are strictly increasing in commit order,
even within one millisecond or across processes. Server stamps are never multiples of 1000;
an imported `acq_time` (ms) is stored as `ms * 1000`, so the two never collide and re-importing
the same (time, origin, acq_time) replaces the earlier import (idempotent imports).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, Final, Protocol

import numpy as np
from sqlalchemy import Connection, func, select, text

from besmart_server.server.db import now_ms
from besmart_server.server.signals import blocks
from besmart_server.server.signals.pipeline import (
    I64,
    TYPE_DBL,
    TYPE_INT,
    Frame,
    concat,
    last_of_runs,
    sort_versions,
)
from besmart_server.server.signals.tables import blocks as blocks_table
from besmart_server.server.signals.tables import series

SeriesKey = tuple[int, int]  # (sensor_mid, signal_type_moid)

# How far outside a window the neighbours of a counter are looked for (at least).
NEIGHBOUR_LOOKAROUND_MS: Final = int(timedelta(days=31).total_seconds() * 1000)
_CHUNK: Final = 500


class SeriesStore(Protocol):
    """Storage of versioned points, one series per (sensor, signal type)."""

    def stamp(self, conn: Connection) -> int:
        """A new acquisition stamp (µs) for this write transaction: later than any before."""
        ...

    def series_ids(
        self, conn: Connection, keys: Iterable[SeriesKey], *, create: bool
    ) -> dict[SeriesKey, int]:
        """The series id of each key; missing series are created when `create`, else left out."""
        ...

    def insert(self, conn: Connection, series_id: int, frame: Frame, *, replace: bool) -> None:
        """Add points as new versions; a point with the key (time, origin, acq) of a stored one
        replaces it (only imports, with their own acq_time, can meet one). `replace` says the
        caller expects that; the stores behave the same either way."""
        ...

    def insert_many(
        self, conn: Connection, parts: Sequence[tuple[int, Frame]], *, replace: bool
    ) -> None:
        """`insert` of several series' points at once: (series id, frame) pairs with distinct
        series ids; the engine may write them all in one statement."""
        ...

    def insert_points(self, conn: Connection, series_id: I64, frame: Frame) -> int:
        """Points of many series at once, `series_id` giving each point's series. Of two
        points with the same (series, time, origin, acq), stored or new, the later new one
        is kept. Returns how many distinct new points were stored."""
        ...

    def read(
        self,
        conn: Connection,
        series_id: int,
        since: int,
        till: int,
        *,
        origin: int | None,
        limit: int,
    ) -> Frame:
        """Every version with since <= time < till, sorted by (time, origin, acq); at most
        `limit` + 1 points, so the caller can tell that the window holds more than `limit`."""
        ...

    def read_latest(
        self,
        conn: Connection,
        series_id: int,
        since: int,
        till: int,
        *,
        origin: int | None,
        limit: int,
        acq_before: int | None,
    ) -> Frame:
        """The newest version (with acq < `acq_before` when given) of each (time, origin) with
        since <= time < till, sorted by (time, origin); a newest version of type RM is returned
        as such (`latest_versions` drops it). At most `limit` + 1 points, as `read`."""
        ...

    def neighbours(
        self, conn: Connection, series_id: int, since: int, till: int, *, origin: int | None
    ) -> tuple[int | None, int | None]:
        """The earliest time, over origins, of each origin's last numeric reading before
        `since`, and the latest of each origin's first one at or after `till`."""
        ...

    def cap_max(
        self, conn: Connection, series_ids: Sequence[int], *, origin: int | None
    ) -> int | None:
        """The newest capture time stored in these series (any version), or None."""
        ...


class BlockStore:
    """SeriesStore over day blocks (see blocks.py), shared by both engines.

    A write reads the blocks it touches, merges the new points in and writes each block back
    whole: one row per (series, day, origin), so a read of a year is 365 rows per origin and
    a version never costs more than its points. The engines differ only in SQL spelling, the
    version stamp and how a writer excludes the others (see the subclasses).
    """

    _ph = "?"  # the driver's placeholder
    _upsert = ""  # INSERT of a whole block that replaces the stored one with the same key
    _stamp_sql = ""

    def stamp(self, conn: Connection) -> int:
        """See SeriesStore.stamp."""
        return int(conn.execute(text(self._stamp_sql), {"now": now_ms() * 1000}).scalar_one())

    def _lock_writers(self, conn: Connection) -> None:
        """Keep other writers out of the blocks this transaction reads and rewrites."""

    def series_ids(
        self, conn: Connection, keys: Iterable[SeriesKey], *, create: bool
    ) -> dict[SeriesKey, int]:
        """See SeriesStore.series_ids."""
        wanted = sorted(set(keys))
        found = self._lookup(conn, wanted)
        missing = [k for k in wanted if k not in found]
        if missing and create:
            self._create(conn, missing)
            found.update(self._lookup(conn, missing))
        return found

    def _create(self, conn: Connection, keys: Sequence[SeriesKey]) -> None:
        raise NotImplementedError

    @staticmethod
    def _lookup(conn: Connection, keys: Sequence[SeriesKey]) -> dict[SeriesKey, int]:
        out: dict[SeriesKey, int] = {}
        wanted = set(keys)
        mids = sorted({mid for mid, _ in keys})
        for i in range(0, len(mids), _CHUNK):
            rows = conn.execute(
                select(series.c.id, series.c.sensor_mid, series.c.signal_type_moid).where(
                    series.c.sensor_mid.in_(mids[i : i + _CHUNK])
                )
            )
            for sid, mid, moid in rows:
                if (mid, moid) in wanted:
                    out[(mid, moid)] = sid
        return out

    # --- writes ---------------------------------------------------------------------------

    def insert(self, conn: Connection, series_id: int, frame: Frame, *, replace: bool) -> None:
        """See SeriesStore.insert."""
        self.insert_many(conn, [(series_id, frame)], replace=replace)

    def insert_many(
        self, conn: Connection, parts: Sequence[tuple[int, Frame]], *, replace: bool
    ) -> None:
        """See SeriesStore.insert_many: `insert_points` of the parts together. A new point
        replaces a stored one with the same (time, origin, acq) whether or not `replace` is
        asked: server stamps never repeat, so only imports can meet one."""
        parts = [(sid, f) for sid, f in parts if len(f)]
        if parts:
            sizes = [len(f) for _, f in parts]
            series = np.repeat(np.array([sid for sid, _ in parts], dtype=np.int64), sizes)
            self.insert_points(conn, series, concat([f for _, f in parts]))

    def insert_points(self, conn: Connection, series_id: I64, frame: Frame) -> int:
        """See SeriesStore.insert_points: every touched block read in one statement, merged
        with the new points and written back in one statement."""
        if not len(frame):
            return 0
        span: dict[int, tuple[int, int]] = {}
        wanted = _block_keys(series_id, frame)
        for sid, day, _ in wanted:
            lo, hi = span.get(sid, (day, day))
            span[sid] = (min(lo, day), max(hi, day))
        self._lock_writers(conn)
        stored = [row for row in self._stored(conn, span) if row[:3] in wanted]
        old, counts = blocks.decode_batch([(d, o, body) for _, d, o, body in stored])
        both = concat([old, frame])
        sid_col = np.concatenate(
            [np.repeat(np.array([r[0] for r in stored], dtype=np.int64), counts), series_id]
        )
        fresh = np.zeros(len(both), dtype=np.bool_)
        fresh[len(old) :] = True
        # Stable sort, stored points first: of two with the same key the later new one is last.
        order = np.lexsort((both.acq, both.time, both.origin, sid_col))
        both, sid_col, fresh = both.take(order), sid_col[order], fresh[order]
        keep = last_of_runs(sid_col, both.origin, both.time, both.acq)
        if not bool(keep.all()):
            both, sid_col, fresh = both.take(keep), sid_col[keep], fresh[keep]
        self._put(conn, blocks.encode_batch(sid_col, both))
        return int(fresh.sum())

    def _put(self, conn: Connection, encoded: list[tuple[int, blocks.Encoded]]) -> None:
        """Store whole blocks, each replacing the stored one with its key."""
        rows = [
            (sid, e.day, e.origin, e.n, e.t_last, e.num_first, e.num_last, e.body, e.latest)
            for sid, e in encoded
        ]
        dbapi_connection(conn).cursor().executemany(self._upsert, rows)

    def _stored(
        self, conn: Connection, span: dict[int, tuple[int, int]]
    ) -> list[tuple[int, int, int, bytes]]:
        """(series id, day, origin, body) of the stored blocks of each series within its
        (first, last) day."""
        out: list[tuple[int, int, int, bytes]] = []
        ph = self._ph
        items = sorted(span.items())
        cur = dbapi_connection(conn).cursor()
        for i in range(0, len(items), _CHUNK):
            chunk = items[i : i + _CHUNK]
            where = " OR ".join(
                [f"(series_id = {ph} AND day >= {ph} AND day <= {ph})"] * len(chunk)
            )
            params = [v for sid, (lo, hi) in chunk for v in (sid, lo, hi)]
            cur.execute(f"SELECT series_id, day, origin, body FROM blocks WHERE {where}", params)
            out.extend((int(s), int(d), int(o), bytes(b)) for s, d, o, b in cur.fetchall())
        return out

    # --- reads ----------------------------------------------------------------------------

    def read(
        self,
        conn: Connection,
        series_id: int,
        since: int,
        till: int,
        *,
        origin: int | None,
        limit: int,
    ) -> Frame:
        """See SeriesStore.read."""
        return self._scan(conn, series_id, since, till, origin, limit, latest=False, before=None)

    def read_latest(
        self,
        conn: Connection,
        series_id: int,
        since: int,
        till: int,
        *,
        origin: int | None,
        limit: int,
        acq_before: int | None,
    ) -> Frame:
        """See SeriesStore.read_latest: a block holds every version of its points, sorted by
        (time, acq), so the newest one is the last of each time's run."""
        return self._scan(
            conn, series_id, since, till, origin, limit, latest=True, before=acq_before
        )

    def _scan(
        self,
        conn: Connection,
        series_id: int,
        since: int,
        till: int,
        origin: int | None,
        limit: int,
        *,
        latest: bool,
        before: int | None,
    ) -> Frame:
        if since >= till:
            return Frame.empty()
        # The newest versions alone are stored apart (blocks.Encoded.latest) unless an as_of
        # bound needs the older ones too.
        column = "coalesce(latest, body)" if latest and before is None else "body"
        rows = self._fetch(conn, column, series_id, since, till, origin)
        frames: list[Frame] = []
        kept = 0
        i = 0
        while i < len(rows) and kept <= limit:
            # Decode in whole days, about as many points as the limit still wants at a time.
            j, planned = i, 0
            while j < len(rows) and (planned <= limit - kept or rows[j][0] == rows[j - 1][0]):
                planned += rows[j][2]
                j += 1
            f, _ = blocks.decode_batch([(d, o, body) for d, o, _, body in rows[i:j]])
            i = j
            if f.time[0] < since or f.time[-1] >= till:
                f = f.take((f.time >= since) & (f.time < till))
            if latest:
                f = _newest(f, before)
            if len(f):
                frames.append(f)
                kept += len(f)
        if not frames:
            return Frame.empty()
        out = frames[0] if len(frames) == 1 else concat(frames)
        if origin is None and len({int(r[1]) for r in rows}) > 1:
            out = sort_versions(out)
        return out if len(out) <= limit + 1 else out.take(np.arange(limit + 1))

    def _fetch(
        self,
        conn: Connection,
        column: str,
        series_id: int,
        since: int,
        till: int,
        origin: int | None,
    ) -> list[tuple[int, int, int, bytes]]:
        """(day, origin, n, body) of the blocks of a window, by (day, origin)."""
        ph = self._ph
        sql = (
            f"SELECT day, origin, n, {column} FROM blocks "
            f"WHERE series_id = {ph} AND day >= {ph} AND day <= {ph}"
        )
        params: list[int] = [series_id, blocks.day_of(since), blocks.day_of(till - 1)]
        if origin is not None:
            sql += f" AND origin = {ph}"
            params.append(origin)
        cur = dbapi_connection(conn).cursor()
        cur.execute(sql + " ORDER BY day, origin", params)
        return [(int(d), int(o), int(n), bytes(b)) for d, o, n, b in cur.fetchall()]

    def neighbours(
        self, conn: Connection, series_id: int, since: int, till: int, *, origin: int | None
    ) -> tuple[int | None, int | None]:
        """See SeriesStore.neighbours; looks at most max(window, 31 days) beyond each end. The
        summary columns answer for every block but the one holding `since` (or `till`), whose
        numeric points may lie on both sides: that one is decoded."""
        reach = max(till - since, NEIGHBOUR_LOOKAROUND_MS)
        last_before: dict[int, int] = {}
        first_after: dict[int, int] = {}
        q = select(
            blocks_table.c.day,
            blocks_table.c.origin,
            blocks_table.c.num_first,
            blocks_table.c.num_last,
        ).where(blocks_table.c.series_id == series_id, blocks_table.c.num_first.is_not(None))
        if origin is not None:
            q = q.where(blocks_table.c.origin == origin)
        ranges = (
            (blocks.day_of(since - reach), blocks.day_of(since)),
            (blocks.day_of(till), blocks.day_of(till + reach - 1)),
        )
        for lo_day, hi_day in ranges:
            rows = conn.execute(
                q.where(blocks_table.c.day >= lo_day, blocks_table.c.day <= hi_day)
            ).all()
            for day, org, first, last in rows:
                if first < since <= last or first < till <= last:
                    times = self._numeric_times(conn, series_id, int(day), int(org))
                else:
                    times = np.array([first, last], dtype=np.int64)
                b = times[(times >= since - reach) & (times < since)]
                if b.shape[0]:
                    last_before[org] = max(last_before.get(org, int(b[-1])), int(b[-1]))
                a = times[(times >= till) & (times < till + reach)]
                if a.shape[0]:
                    first_after[org] = min(first_after.get(org, int(a[0])), int(a[0]))
        lo = min(last_before.values()) if last_before else None
        hi = max(first_after.values()) if first_after else None
        return lo, hi

    @staticmethod
    def _numeric_times(conn: Connection, series_id: int, day: int, origin: int) -> I64:
        body: bytes = conn.execute(
            select(blocks_table.c.body).where(
                blocks_table.c.series_id == series_id,
                blocks_table.c.day == day,
                blocks_table.c.origin == origin,
            )
        ).scalar_one()
        f = blocks.decode(day, origin, bytes(body))
        times: I64 = f.time[(f.type == TYPE_DBL) | (f.type == TYPE_INT)]
        return times

    def cap_max(
        self, conn: Connection, series_ids: Sequence[int], *, origin: int | None
    ) -> int | None:
        """See SeriesStore.cap_max: the newest day's blocks of each series, by the key."""
        best: int | None = None
        b = blocks_table
        for sid in series_ids:
            last_day = select(func.max(b.c.day)).where(b.c.series_id == sid)
            q = select(func.max(b.c.t_last)).where(b.c.series_id == sid)
            if origin is not None:
                last_day = last_day.where(b.c.origin == origin)
                q = q.where(b.c.origin == origin)
            t = conn.scalar(q.where(b.c.day == last_day.scalar_subquery()))
            if t is not None and (best is None or t > best):
                best = int(t)
        return best


def _block_keys(series_id: I64, f: Frame) -> set[tuple[int, int, int]]:
    """The (series, day, origin) of every block the points fall in."""
    day = f.time // blocks.DAY_MS
    lo = int(day.min())
    if int(day.max()) - lo < 2**24 and int(series_id.min()) >= 0 and int(series_id.max()) < 2**23:
        # One int64 per point (series, day offset, origin as a SMALLINT): a 1-D unique; a
        # 2-D np.unique(axis=1) cost a fifth of a write.
        packed = (series_id << 40) | ((day - lo) << 16) | (f.origin + 32_768)
        return {
            (k >> 40, ((k >> 16) & 0xFFFFFF) + lo, (k & 0xFFFF) - 32_768)
            for k in np.unique(packed).tolist()
        }
    keys = np.unique(np.stack((series_id, day, f.origin)), axis=1).T.tolist()
    return {(s, d, o) for s, d, o in keys}


def _newest(f: Frame, acq_before: int | None) -> Frame:
    """The newest version (acq < acq_before) of each (time, origin) of blocks' points, each
    block sorted by (time, acq) and the blocks by (day, origin)."""
    if acq_before is not None:
        f = f.take(f.acq < acq_before)
    return f.take(last_of_runs(f.time, f.origin))  # take() of an all-true mask is free


def dbapi_connection(conn: Connection) -> Any:
    """The DB-API connection under the SQLAlchemy one, in the same transaction."""
    return conn.connection.driver_connection


def store_for(dialect: str) -> SeriesStore:
    """The store of a database dialect."""
    if dialect == "sqlite":
        from besmart_server.server.signals.store_sqlite import SqliteStore

        return SqliteStore()
    if dialect == "postgresql":
        from besmart_server.server.signals.store_postgres import PostgresStore

        return PostgresStore()
    raise ValueError(f"no series store for dialect {dialect!r}")
