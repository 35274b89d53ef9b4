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
from besmart_server.server.signals.pipeline import TYPE_RM, TYPE_STR, Frame
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
_WHERE: Final = "series_id = ? AND time >= ? AND time < ?"
# NULL values (RM, STR) come back as +inf (9e999): a float column needs no None.
_READ: Final = (
    "SELECT time, origin, acq, type, ifnull(value, 9e999) FROM points "
    "WHERE {where} ORDER BY time, origin, acq LIMIT ?"
)
# The newest version per (time, origin): SQLite takes the bare columns from the row holding
# max(acq); the primary key's order (series_id, time, origin, acq) makes this one pass.
_READ_LATEST: Final = (
    "SELECT time, origin, max(acq), type, ifnull(value, 9e999) FROM points "
    "WHERE {where} GROUP BY series_id, time, origin ORDER BY series_id, time, origin LIMIT ?"
)
_ROW: Final = np.dtype(
    [("time", "i8"), ("origin", "i8"), ("acq", "i8"), ("type", "i1"), ("value", "f8")]
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

    def insert_many(
        self, conn: Connection, parts: Sequence[tuple[int, Frame]], *, replace: bool
    ) -> None:
        """See SeriesStore.insert_many: one executemany per series."""
        for sid, frame in parts:
            self.insert(conn, sid, frame, replace=replace)

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
        """See SeriesStore.read: the primary key's order (no sort), rows streamed from the
        cursor straight into one structured numpy array."""
        return self._scan(conn, _READ, series_id, since, till, origin, None, limit)

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
        """See SeriesStore.read_latest: one grouped pass over the primary key."""
        return self._scan(conn, _READ_LATEST, series_id, since, till, origin, acq_before, limit)

    @staticmethod
    def _scan(
        conn: Connection,
        sql: str,
        series_id: int,
        since: int,
        till: int,
        origin: int | None,
        acq_before: int | None,
        limit: int,
    ) -> Frame:
        params: tuple[int, ...] = (series_id, since, till)
        where = _WHERE
        if origin is not None:
            where += " AND origin = ?"
            params += (origin,)
        if acq_before is not None:
            where += " AND acq < ?"
            params += (acq_before,)
        cur = _driver(conn).execute(sql.format(where=where), (*params, limit + 1))
        rec = np.fromiter(cur, dtype=_ROW)
        if not rec.shape[0]:
            return Frame.empty()
        kind = rec["type"]
        value = rec["value"].copy()
        value[(kind == TYPE_STR) | (kind == TYPE_RM)] = np.nan  # NULL read as +inf
        text_col = None
        if bool((kind == TYPE_STR).any()):
            by_key = {
                (t, o, a): txt
                for t, o, a, txt in _driver(conn).execute(
                    f"SELECT time, origin, acq, text FROM points WHERE {where} AND type = ?",
                    (*params, TYPE_STR),
                )
            }
            keys = zip(
                rec["time"].tolist(), rec["origin"].tolist(), rec["acq"].tolist(), strict=True
            )
            text_col = tuple(by_key.get(k) for k in keys)
        return Frame(
            rec["time"].copy(),
            rec["origin"].copy(),
            rec["acq"].copy(),
            kind.copy(),
            value,
            text_col,
        )
