"""The `SeriesStore` protocol: where points live, with one implementation per engine.

Both implementations share the dialect-neutral lookups here; each does the hot work (version
stamps, bulk insert, range scan) with its engine's fast path. Versions are appended, never
compared with stored values: writing a new version costs what writing the first one did.

Version stamps (`acq`, µs) come from the single-row `version_clock`, advanced inside the
writing transaction: `max(last + 1, now)`, so stamps are strictly increasing in commit order,
even within one millisecond or across processes. Server stamps are never multiples of 1000;
an imported `acq_time` (ms) is stored as `ms * 1000`, so the two never collide and re-importing
the same (time, origin, acq_time) replaces the earlier import (idempotent imports).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Final, Protocol

from sqlalchemy import Connection, func, select

from besmart_server.server.signals.pipeline import TYPE_DBL, TYPE_INT, Frame
from besmart_server.server.signals.tables import points, series

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
        """Append points (no duplicate (time, origin, acq) in `frame`); `replace` lets a point
        overwrite a stored one with the same key (imports with their own acq_time)."""
        ...

    def insert_many(
        self, conn: Connection, parts: Sequence[tuple[int, Frame]], *, replace: bool
    ) -> None:
        """`insert` of several series' points at once: (series id, frame) pairs with distinct
        series ids; the engine may write them all in one statement."""
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


class CommonQueries:
    """The dialect-neutral part of both stores."""

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

    def neighbours(
        self, conn: Connection, series_id: int, since: int, till: int, *, origin: int | None
    ) -> tuple[int | None, int | None]:
        """See SeriesStore.neighbours; looks at most max(window, 31 days) beyond each end."""
        reach = max(till - since, NEIGHBOUR_LOOKAROUND_MS)
        base = [points.c.series_id == series_id, points.c.type.in_((TYPE_DBL, TYPE_INT))]
        if origin is not None:
            base.append(points.c.origin == origin)
        before = (
            select(func.max(points.c.time).label("t"))
            .where(*base, points.c.time >= since - reach, points.c.time < since)
            .group_by(points.c.origin)
            .subquery()
        )
        after = (
            select(func.min(points.c.time).label("t"))
            .where(*base, points.c.time >= till, points.c.time < till + reach)
            .group_by(points.c.origin)
            .subquery()
        )
        lo = conn.scalar(select(func.min(before.c.t)))
        hi = conn.scalar(select(func.max(after.c.t)))
        return (None if lo is None else int(lo), None if hi is None else int(hi))

    def cap_max(
        self, conn: Connection, series_ids: Sequence[int], *, origin: int | None
    ) -> int | None:
        """See SeriesStore.cap_max: one index lookup per series."""
        best: int | None = None
        for sid in series_ids:
            q = select(func.max(points.c.time)).where(points.c.series_id == sid)
            if origin is not None:
                q = q.where(points.c.origin == origin)
            t = conn.scalar(q)
            if t is not None and (best is None or t > best):
                best = int(t)
        return best


def store_for(dialect: str) -> SeriesStore:
    """The store of a database dialect."""
    if dialect == "sqlite":
        from besmart_server.server.signals.store_sqlite import SqliteStore

        return SqliteStore()
    if dialect == "postgresql":
        from besmart_server.server.signals.store_postgres import PostgresStore

        return PostgresStore()
    raise ValueError(f"no series store for dialect {dialect!r}")
