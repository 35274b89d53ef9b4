"""SQLite store: day blocks in a WITHOUT ROWID table, so a block is stored in its key's order.

Writers need no lock of their own: `BEGIN IMMEDIATE` already gives a write transaction the
database's write lock before it reads the blocks it will rewrite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlalchemy import Connection
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from besmart_server.server.signals.store import BlockStore, SeriesKey
from besmart_server.server.signals.tables import series

_COLUMNS: Final = "series_id, day, origin, n, t_last, num_first, num_last, body, latest"


class SqliteStore(BlockStore):
    """SeriesStore on SQLite."""

    _ph = "?"
    # Without it SQLite walks the primary key (series_id, day) back through every other
    # origin's days (its planner has no statistics to tell them apart).
    _by_origin = " INDEXED BY ix_blocks_series_origin_day"
    _upsert = f"INSERT OR REPLACE INTO blocks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    # A whole ms at least one ms after the last stamp (see store.py); `/` is integer division.
    _stamp_sql = (
        "UPDATE version_clock SET last_us = max(last_us / 1000 + 1, :now) * 1000 "
        "WHERE id = 1 RETURNING last_us"
    )
    _advance_sql = "UPDATE version_clock SET last_us = max(last_us, :acq) WHERE id = 1"

    def _create(self, conn: Connection, keys: Sequence[SeriesKey]) -> None:
        conn.execute(
            sqlite_insert(series).on_conflict_do_nothing(),
            [{"sensor_mid": mid, "signal_type_moid": moid} for mid, moid in keys],
        )
