"""PostgreSQL store: binary COPY built with numpy for inserts, binary COPY out parsed with numpy
for range scans — no Python object per point either way. Runs on the psycopg 3 connection under
the request's SQLAlchemy connection, inside its transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from sqlalchemy import Connection, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from besmart_server.server.db import now_ms
from besmart_server.server.signals.pipeline import TYPE_STR, Frame
from besmart_server.server.signals.store import CommonQueries, SeriesKey
from besmart_server.server.signals.tables import series

_STAMP: Final = text(
    "UPDATE version_clock SET last_us = "
    "GREATEST(last_us + 1, :now) + (GREATEST(last_us + 1, :now) % 1000 = 0)::int "
    "WHERE id = 1 RETURNING last_us"
)
_COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_COPY_TRAILER: Final = b"\xff\xff"

# One binary COPY tuple of points without text: each field is (length, big-endian value);
# text is always NULL (length -1), so every tuple has the same size.
_IN_ROW: Final = np.dtype(
    [
        ("n", ">i2"),
        ("l_series", ">i4"),
        ("series", ">i4"),
        ("l_time", ">i4"),
        ("time", ">i8"),
        ("l_origin", ">i4"),
        ("origin", ">i2"),
        ("l_acq", ">i4"),
        ("acq", ">i8"),
        ("l_type", ">i4"),
        ("type", ">i2"),
        ("l_value", ">i4"),
        ("value", ">f8"),
        ("l_text", ">i4"),
    ]
)
_IN_CONST: Final = {
    "n": 7,
    "l_series": 4,
    "l_time": 8,
    "l_origin": 2,
    "l_acq": 8,
    "l_type": 2,
    "l_value": 8,
    "l_text": -1,
}
_OUT_ROW: Final = np.dtype(
    [
        ("n", ">i2"),
        ("l_time", ">i4"),
        ("time", ">i8"),
        ("l_origin", ">i4"),
        ("origin", ">i2"),
        ("l_acq", ">i4"),
        ("acq", ">i8"),
        ("l_type", ">i4"),
        ("type", ">i2"),
        ("l_value", ">i4"),
        ("value", ">f8"),
    ]
)
_COLUMNS: Final = "series_id, time, origin, acq, type, value, text"
_STAGE: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS points_import "
    "(LIKE points INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_MERGE: Final = (
    f"INSERT INTO points ({_COLUMNS}) SELECT {_COLUMNS} FROM points_import "
    "ON CONFLICT (series_id, time, origin, acq) DO UPDATE "
    "SET type = EXCLUDED.type, value = EXCLUDED.value, text = EXCLUDED.text"
)
_WINDOW: Final = "series_id = %s AND time >= %s AND time < %s"


def _driver(conn: Connection) -> Any:
    """The psycopg connection under the SQLAlchemy one, in the same transaction."""
    return conn.connection.driver_connection


def _where(
    series_id: int, since: int, till: int, origin: int | None, acq_before: int | None
) -> tuple[str, tuple[int, ...]]:
    where = _WINDOW
    params: tuple[int, ...] = (series_id, since, till)
    if origin is not None:
        where += " AND origin = %s"
        params += (origin,)
    if acq_before is not None:
        where += " AND acq < %s"
        params += (acq_before,)
    return where, params


def _binary_body(series_id: int, frame: Frame) -> bytes:
    """The binary COPY tuples of a frame's points (no header or trailer)."""
    rec = np.empty(len(frame), dtype=_IN_ROW)
    for name, const in _IN_CONST.items():
        rec[name] = const
    rec["series"] = series_id
    rec["time"] = frame.time
    rec["origin"] = frame.origin
    rec["acq"] = frame.acq
    rec["type"] = frame.type
    rec["value"] = frame.value  # NaN for RM: the type says the value means nothing
    return rec.tobytes()


class PostgresStore(CommonQueries):
    """SeriesStore on PostgreSQL."""

    def stamp(self, conn: Connection) -> int:
        """See SeriesStore.stamp: the clock row stays locked until this transaction ends,
        so stamps follow commit order."""
        return int(conn.execute(_STAMP, {"now": now_ms() * 1000}).scalar_one())

    def _create(self, conn: Connection, keys: Sequence[SeriesKey]) -> None:
        conn.execute(
            pg_insert(series).on_conflict_do_nothing(),
            [{"sensor_mid": mid, "signal_type_moid": moid} for mid, moid in keys],
        )

    def insert(self, conn: Connection, series_id: int, frame: Frame, *, replace: bool) -> None:
        """See SeriesStore.insert."""
        self.insert_many(conn, [(series_id, frame)], replace=replace)

    def insert_many(
        self, conn: Connection, parts: Sequence[tuple[int, Frame]], *, replace: bool
    ) -> None:
        """See SeriesStore.insert_many: one binary COPY for every series (the series id is a
        column), straight into `points` or, for `replace`, into a staging table merged with
        ON CONFLICT DO UPDATE; STR points go in one text COPY."""
        parts = [(sid, f) for sid, f in parts if len(f)]
        if not parts:
            return
        target = "points_import" if replace else "points"
        cur = _driver(conn).cursor()
        if replace:
            cur.execute(_STAGE)
        bodies: list[bytes] = []
        texts: list[tuple[int, Frame]] = []
        for sid, frame in parts:
            is_str = frame.type == TYPE_STR
            has_str = bool(is_str.any())
            plain = frame if not has_str else frame.take(~is_str)
            if len(plain):
                bodies.append(_binary_body(sid, plain))
            if has_str:
                texts.append((sid, frame.take(is_str)))
        if bodies:
            with cur.copy(f"COPY {target} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(_COPY_HEADER + b"".join(bodies) + _COPY_TRAILER)
        if texts:
            with cur.copy(f"COPY {target} ({_COLUMNS}) FROM STDIN") as copy:
                for sid, part in texts:
                    assert part.text is not None
                    for t, o, a, k, s in zip(
                        part.time.tolist(),
                        part.origin.tolist(),
                        part.acq.tolist(),
                        part.type.tolist(),
                        part.text,
                        strict=True,
                    ):
                        copy.write_row((sid, t, o, a, k, None, s))
        if replace:
            cur.execute(_MERGE)
            cur.execute("DELETE FROM points_import")

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
        """See SeriesStore.read: one binary COPY, parsed by a fixed-size numpy dtype."""
        where, params = _where(series_id, since, till, origin, None)
        sql = (
            "COPY (SELECT time, origin, acq, type, coalesce(value, 'NaN'::float8) "
            f"FROM points WHERE {where} ORDER BY time, origin, acq LIMIT %s) "
            "TO STDOUT (FORMAT BINARY)"
        )
        return self._scan(conn, sql, where, params, limit)

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
        """See SeriesStore.read_latest: DISTINCT ON over the primary key, one binary COPY."""
        where, params = _where(series_id, since, till, origin, acq_before)
        sql = (
            "COPY (SELECT DISTINCT ON (time, origin) time, origin, acq, type, "
            f"coalesce(value, 'NaN'::float8) FROM points WHERE {where} "
            "ORDER BY time, origin, acq DESC LIMIT %s) TO STDOUT (FORMAT BINARY)"
        )
        return self._scan(conn, sql, where, params, limit)

    def _scan(
        self, conn: Connection, sql: str, where: str, params: tuple[int, ...], limit: int
    ) -> Frame:
        cur = _driver(conn).cursor()
        with cur.copy(sql, (*params, limit + 1)) as copy:
            raw = b"".join(bytes(chunk) for chunk in copy)
        body = raw[len(_COPY_HEADER) : len(raw) - len(_COPY_TRAILER)]
        rec = np.frombuffer(body, dtype=_OUT_ROW)
        if not rec.shape[0]:
            return Frame.empty()
        kind = rec["type"].astype(np.int8)
        text_col: tuple[str | None, ...] | None = None
        if bool((kind == TYPE_STR).any()):
            text_col = self._texts(cur, where, params, rec)
        return Frame(
            rec["time"].astype(np.int64),
            rec["origin"].astype(np.int64),
            rec["acq"].astype(np.int64),
            kind,
            rec["value"].astype(np.float64),
            text_col,
        )

    @staticmethod
    def _texts(
        cur: Any, where: str, params: tuple[int, ...], rec: np.ndarray[Any, Any]
    ) -> tuple[str | None, ...]:
        """The text of the STR points of a window, aligned with the rows read."""
        cur.execute(
            f"SELECT time, origin, acq, text FROM points WHERE {where} AND type = {TYPE_STR}",
            params,
        )
        by_key = {(t, o, a): s for t, o, a, s in cur.fetchall()}
        keys = zip(rec["time"].tolist(), rec["origin"].tolist(), rec["acq"].tolist(), strict=True)
        return tuple(by_key.get(k) for k in keys)
