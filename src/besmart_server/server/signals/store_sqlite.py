"""SQLite store: executemany of plain tuples into the WITHOUT ROWID `points` table, and range
scans by (series_id, time) read straight into numpy columns."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any, Final

import numpy as np
from sqlalchemy import Connection, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from besmart_server.server.db import now_ms
from besmart_server.server.signals.pipeline import TYPE_STR, Frame
from besmart_server.server.signals.store import CommonQueries, SeriesKey
from besmart_server.server.signals.tables import series

_STAMP: Final = text(
    "UPDATE version_clock SET last_us = "
    "max(last_us + 1, :now) + (max(last_us + 1, :now) % 1000 = 0) "
    "WHERE id = 1 RETURNING last_us"
)
_INSERT: Final = (
    "INSERT INTO points (series_id, time, origin, acq, type, value, text) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_REPLACE: Final = _INSERT.replace("INSERT", "INSERT OR REPLACE", 1)
_READ: Final = (
    "SELECT time, origin, acq, type, value, text FROM points "
    "WHERE series_id = ? AND time >= ? AND time < ? {origin}"
    "ORDER BY time, origin, acq LIMIT ?"
)


def _driver(conn: Connection) -> Any:
    """The sqlite3 connection under the SQLAlchemy one, in the same transaction."""
    return conn.connection.driver_connection


class SqliteStore(CommonQueries):
    """SeriesStore on SQLite."""

    def stamp(self, conn: Connection) -> int:
        """See SeriesStore.stamp (the writer already holds SQLite's write lock)."""
        return int(conn.execute(_STAMP, {"now": now_ms() * 1000}).scalar_one())

    def _create(self, conn: Connection, keys: Sequence[SeriesKey]) -> None:
        conn.execute(
            sqlite_insert(series).on_conflict_do_nothing(),
            [{"sensor_mid": mid, "signal_type_moid": moid} for mid, moid in keys],
        )

    def insert(self, conn: Connection, series_id: int, frame: Frame, *, replace: bool) -> None:
        """See SeriesStore.insert: one executemany over a generator of tuples (NaN binds NULL)."""
        if not len(frame):
            return
        rows = zip(
            repeat(series_id),
            frame.time.tolist(),
            frame.origin.tolist(),
            frame.acq.tolist(),
            frame.type.tolist(),
            frame.value.tolist(),
            frame.text if frame.text is not None else repeat(None),
        )
        _driver(conn).executemany(_REPLACE if replace else _INSERT, rows)

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
        """See SeriesStore.read: the primary key's order, so no sort."""
        params: tuple[int, ...] = (series_id, since, till)
        if origin is not None:
            params += (origin,)
        sql = _READ.format(origin="AND origin = ? " if origin is not None else "")
        rows = _driver(conn).execute(sql, (*params, limit + 1)).fetchall()
        n = len(rows)
        if n == 0:
            return Frame.empty()
        time, orig, acq, kind, value, txt = zip(*rows, strict=True)
        type_arr = np.fromiter(kind, dtype=np.int8, count=n)
        return Frame(
            np.fromiter(time, dtype=np.int64, count=n),
            np.fromiter(orig, dtype=np.int64, count=n),
            np.fromiter(acq, dtype=np.int64, count=n),
            type_arr,
            np.array(value, dtype=np.float64),  # NULL → NaN
            tuple(txt) if bool((type_arr == TYPE_STR).any()) else None,
        )
