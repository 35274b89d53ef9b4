"""PostgreSQL store: day blocks as bytea rows (below the TOAST threshold for a day of
15-minute data, so a block is read in place), written back with one pipelined executemany.

A write reads the blocks it will rewrite, so two writers must not interleave on one block:
every writer locks the version clock's row first (stamped writes hold it anyway until they
end), which serializes block writers — they already were, through the clock, before blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlalchemy import Connection, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from besmart_server.server.signals.store import BlockStore, SeriesKey
from besmart_server.server.signals.tables import series

_COLUMNS: Final = "series_id, day, origin, n, t_last, num_first, num_last, body, latest"
_LOCK: Final = text("SELECT last_us FROM version_clock WHERE id = 1 FOR UPDATE")


class PostgresStore(BlockStore):
    """SeriesStore on PostgreSQL."""

    _ph = "%s"
    _upsert = (
        f"INSERT INTO blocks ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (series_id, day, origin) DO UPDATE SET n = EXCLUDED.n, "
        "t_last = EXCLUDED.t_last, num_first = EXCLUDED.num_first, "
        "num_last = EXCLUDED.num_last, body = EXCLUDED.body, latest = EXCLUDED.latest"
    )
    # The clock row stays locked until the transaction ends, so stamps follow commit order;
    # never a whole millisecond (see SqliteStore).
    _stamp_sql = (
        "UPDATE version_clock SET last_us = "
        "GREATEST(last_us + 1, :now) + (GREATEST(last_us + 1, :now) % 1000 = 0)::int "
        "WHERE id = 1 RETURNING last_us"
    )

    def _lock_writers(self, conn: Connection) -> None:
        conn.execute(_LOCK)

    def _create(self, conn: Connection, keys: Sequence[SeriesKey]) -> None:
        conn.execute(
            pg_insert(series).on_conflict_do_nothing(),
            [{"sensor_mid": mid, "signal_type_moid": moid} for mid, moid in keys],
        )
