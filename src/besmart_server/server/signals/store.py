"""The `SeriesStore` protocol: where points live, with one implementation per engine.

Points live in day blocks (blocks.py): one compressed row per (series, UTC day, origin) with
every version of that day's points. `BlockStore` here does the work for both engines; their
subclasses spell the SQL and keep concurrent writers of one block apart. Versions are never
compared with stored values: a new version is merged into its block beside the older ones.

Version stamps (`acq`, µs since the epoch) come from the single-row `version_clock`, advanced
inside the writing transaction by at least one whole millisecond: `max(last_ms + 1, now_ms)`
ms, so stamps are strictly increasing in commit order, even across processes, and every stamp
is a whole millisecond. The wire's `acq_time` is ms, so it is the whole stamp: versions of a
point have distinct `acq_time` on the wire, and an export imports back exactly. An imported
`acq_time` (ms) is stored as `ms * 1000` too, so the stored key (time, origin, acq) is the wire's:
re-importing the same (time, origin, acq_time) replaces that version (idempotent imports, also
of an export into the server it came from). An import also advances the clock to its newest
`acq_time` (`advance`), so a later live write is newer than every version stored before it.
(Migration 0007 moved the µs stamps of older stores to whole ms of their own.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, Protocol

import numpy as np
from sqlalchemy import Connection, func, select, text

from besmart_server.server.db import now_ms
from besmart_server.server.signals import blocks
from besmart_server.server.signals.columns import ORIGINS
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

# The most blocks per origin one round of the neighbour search decodes at most (see neighbours).
_EDGE_STEP_MAX: Final = 64
# Beyond every capture time a read may name (service.check_query bounds them to ±2**62).
_TIME_MIN: Final = -(2**63)
_TIME_MAX: Final = 2**63 - 1
_CHUNK: Final = 500


class SeriesStore(Protocol):
    """Storage of versioned points, one series per (sensor, signal type)."""

    def stamp(self, conn: Connection) -> int:
        """A new acquisition stamp (µs, a whole ms) for this write transaction: at least one
        ms later than any stamp before and than any `advance`d to."""
        ...

    def advance(self, conn: Connection, acq_us: int) -> None:
        """Move the version clock to at least `acq_us` (an import's newest acq), so the next
        stamp is later than it."""
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
        self,
        conn: Connection,
        series_id: int,
        since: int | None,
        till: int | None,
        *,
        origin: int | None,
        acq_before: int | None,
    ) -> Frame:
        """Of each origin (only `origin` when given), the last live numeric reading before
        `since` and the first at or after `till` (a side that is None is not looked for),
        however far: a (time, origin) counts when its newest version (acq < `acq_before` when
        given) is DBL or INT with a finite value, so a reading removed by RM is no neighbour.
        One point per origin and side, sorted by (time, origin)."""
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
    _by_origin = ""  # FROM blocks ... so that the (series_id, origin, day) index is used
    _upsert = ""  # INSERT of a whole block that replaces the stored one with the same key
    _stamp_sql = ""  # the clock moved to max(last ms + 1, :now ms), in µs
    _advance_sql = ""  # the clock moved to at least :acq

    def stamp(self, conn: Connection) -> int:
        """See SeriesStore.stamp."""
        return int(conn.execute(text(self._stamp_sql), {"now": now_ms()}).scalar_one())

    def advance(self, conn: Connection, acq_us: int) -> None:
        """See SeriesStore.advance."""
        conn.execute(text(self._advance_sql), {"acq": acq_us})

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
        asked: server stamps never repeat, so only an import can meet one (and then it is the
        version with the same acq_time on the wire)."""
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
        self,
        conn: Connection,
        series_id: int,
        since: int | None,
        till: int | None,
        *,
        origin: int | None,
        acq_before: int | None,
    ) -> Frame:
        """See SeriesStore.neighbours. Per origin, the nearest block that holds a numeric version
        on the wanted side is found by the (series_id, origin, day) index and decoded; its
        summary columns count every version, RM'd and later ones too, so a block whose live
        readings are all gone sends the search on to the next one, in growing steps."""
        column = "coalesce(latest, body)" if acq_before is None else "body"
        # (backward?, origin) -> the day to search from; what is found goes to `found`.
        pending: dict[tuple[bool, int], int] = {}
        for o in sorted(ORIGINS) if origin is None else [origin]:
            if since is not None:
                pending[(True, o)] = blocks.day_of(since - 1)
            if till is not None:
                pending[(False, o)] = blocks.day_of(till)
        lo = _TIME_MIN if since is None else since
        hi = _TIME_MAX if till is None else till
        found: list[Frame] = []
        step = 1
        while pending:
            rows = self._edge_blocks(conn, column, series_id, pending, lo, hi, step)
            searched, pending = pending, {}
            for key in searched:
                back, o = key
                hit: Frame | None = None
                cands = rows.get(key, [])
                for d, body in cands:
                    f = _newest(blocks.decode(d, o, body), acq_before)
                    side = f.time < lo if back else f.time >= hi
                    live = (f.type == TYPE_DBL) | (f.type == TYPE_INT)
                    at = np.flatnonzero(live & np.isfinite(f.value) & side)
                    if at.shape[0]:
                        hit = f.take(at[-1:] if back else at[:1])
                        break
                if hit is not None:
                    found.append(hit)
                elif len(cands) == step:  # more blocks may lie beyond the last one decoded
                    pending[key] = cands[-1][0] - 1 if back else cands[-1][0] + 1
            step = min(step * 4, _EDGE_STEP_MAX)
        if not found:
            return Frame.empty()
        out = concat(found)
        return out.take(np.lexsort((out.origin, out.time)))

    def _edge_blocks(
        self,
        conn: Connection,
        column: str,
        series_id: int,
        pending: dict[tuple[bool, int], int],
        since: int,
        till: int,
        step: int,
    ) -> dict[tuple[bool, int], list[tuple[int, bytes]]]:
        """The `step` nearest blocks of each (backward?, origin) from its day that hold a
        numeric version on that side of the window: one statement for all of them."""
        ph = self._ph
        parts: list[str] = []
        params: list[int] = []
        for (back, o), day in pending.items():
            cond, order, edge = (
                ("day <= {ph} AND num_first < {ph}", "DESC", since)
                if back
                else ("day >= {ph} AND num_last >= {ph}", "ASC", till)
            )
            parts.append(
                f"SELECT * FROM (SELECT {int(back)} AS back, origin, day, {column} AS b "
                f"FROM blocks{self._by_origin} WHERE series_id = {ph} AND origin = {ph} AND "
                + cond.format(ph=ph)
                + f" ORDER BY day {order} LIMIT {step}) AS e{len(parts)}"
            )
            params.extend([series_id, o, day, edge])
        cur = dbapi_connection(conn).cursor()
        cur.execute(" UNION ALL ".join(parts), params)
        out: dict[tuple[bool, int], list[tuple[int, bytes]]] = {}
        for back, o, day, body in cur.fetchall():
            out.setdefault((bool(back), int(o)), []).append((int(day), bytes(body)))
        for (back, _), cands in out.items():
            cands.sort(reverse=back)  # nearest first: UNION ALL keeps no order
        return out

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
