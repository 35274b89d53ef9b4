"""PostgreSQL store: day blocks as bytea rows (below the TOAST threshold for a day of
15-minute data, so a block is read in place). A write reads its blocks and writes them back in
constant SQL: the keys read as arrays (unnest), one query whatever the number of series; the
blocks written by binary COPY into a staging table merged with one INSERT ... ON CONFLICT.

A write reads the blocks it will rewrite, so two writers must not interleave on one block:
every writer locks the version clock's row first (stamped writes hold it anyway until they
end), which serializes block writers — they already were, through the clock, before blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert

from besmart_server.server.signals.blocks import Encoded
from besmart_server.server.signals.store import BlockStore, SeriesKey, dbapi_connection
from besmart_server.server.signals.tables import series

_COLUMNS: Final = "series_id, day, origin, n, t_last, num_first, num_last, body, latest"
_LOCK: Final = "SELECT last_us FROM version_clock WHERE id = 1 FOR UPDATE"
_STORED: Final = (
    "SELECT b.series_id, b.day, b.origin, b.body FROM blocks b "
    "JOIN unnest(%s::int[], %s::bigint[], %s::bigint[]) AS w(sid, lo, hi) "
    "ON b.series_id = w.sid AND b.day >= w.lo AND b.day <= w.hi"
)
_STAGE: Final = "CREATE TEMP TABLE IF NOT EXISTS blocks_in (LIKE blocks) ON COMMIT DELETE ROWS"
_COPY: Final = f"COPY blocks_in ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES: Final = ("int4", "int8", "int2", "int4", "int8", "int8", "int8", "bytea", "bytea")
_MERGE: Final = (
    f"INSERT INTO blocks ({_COLUMNS}) SELECT {_COLUMNS} FROM blocks_in "
    "ON CONFLICT (series_id, day, origin) DO UPDATE SET n = EXCLUDED.n, "
    "t_last = EXCLUDED.t_last, num_first = EXCLUDED.num_first, "
    "num_last = EXCLUDED.num_last, body = EXCLUDED.body, latest = EXCLUDED.latest"
)


class PostgresStore(BlockStore):
    """SeriesStore on PostgreSQL."""

    _ph = "%s"
    # The clock row stays locked until the transaction ends, so stamps follow commit order;
    # a whole ms at least one ms after the last stamp (see store.py).
    _stamp_sql = (
        "UPDATE version_clock SET last_us = GREATEST(last_us / 1000 + 1, :now) * 1000 "
        "WHERE id = 1 RETURNING last_us"
    )
    _advance_sql = "UPDATE version_clock SET last_us = GREATEST(last_us, :acq) WHERE id = 1"

    def _lock_writers(self, conn: Connection) -> None:
        # One round trip for both (no parameters: the simple protocol takes several
        # statements): the clock row's lock and the staging table _put copies into.
        dbapi_connection(conn).cursor().execute(f"{_STAGE}; {_LOCK}")

    def _stored(
        self, conn: Connection, span: dict[int, tuple[int, int]]
    ) -> list[tuple[int, int, int, bytes]]:
        items = sorted(span.items())
        params = (
            [sid for sid, _ in items],
            [lo for _, (lo, _) in items],
            [hi for _, (_, hi) in items],
        )
        cur = dbapi_connection(conn).cursor()
        cur.execute(_STORED, params, binary=True)
        return [(int(a), int(d), int(o), bytes(b)) for a, d, o, b in cur.fetchall()]

    def _put(self, conn: Connection, encoded: list[tuple[int, Encoded]]) -> None:
        """Binary COPY into a staging table, merged with one INSERT ... ON CONFLICT: half
        the time of an unnest of arrays, whose parameters psycopg dumps in Python."""
        cur = dbapi_connection(conn).cursor()
        with cur.copy(_COPY) as copy:  # blocks_in was made by _lock_writers
            copy.set_types(list(_COPY_TYPES))
            for sid, e in encoded:
                copy.write_row(
                    (sid, e.day, e.origin, e.n, e.t_last, e.num_first, e.num_last, e.body, e.latest)
                )
        cur.execute(f"{_MERGE}; DELETE FROM blocks_in")

    def _create(self, conn: Connection, keys: Sequence[SeriesKey]) -> None:
        conn.execute(
            pg_insert(series).on_conflict_do_nothing(),
            [{"sensor_mid": mid, "signal_type_moid": moid} for mid, moid in keys],
        )
