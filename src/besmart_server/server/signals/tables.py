"""Catalog of units and signal types; series and their versioned points."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from besmart_server.server.db import metadata
from besmart_server.wire import ORIGIN_MEASURED

units = Table(
    "units",
    metadata,
    Column("unit_id", Integer, primary_key=True, autoincrement=False),
    Column("symbol", String(20), nullable=False, unique=True),
    Column("dimension", String(40), nullable=False),
    Column("factor", Float, nullable=False),  # base = value * factor + offset
    Column("offset", Float, nullable=False),
)

signal_types = Table(
    "signal_types",
    metadata,
    Column("moid", Integer, primary_key=True, autoincrement=False),
    Column("symbol", String(40), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("unit_id", Integer, ForeignKey("units.unit_id"), nullable=False),
    Column("time_series_type", SmallInteger, nullable=False),  # 0 inst., 1 cumulative, 2 interval
    Column("obis_mapping", String(40), nullable=True),
    Column("apply_current_ratio", Boolean, nullable=False, default=False),
    Column("apply_voltage_ratio", Boolean, nullable=False, default=False),
    Column("is_measurement", Boolean, nullable=False, default=True),
    Column("group_id", Integer, nullable=True),
    Column("group_name", String(100), nullable=True),
    Column("chart_expected_unit", String(20), nullable=True),
    Column("draw_chart", Boolean, nullable=False, default=True),
    Column("keep_prefix", Boolean, nullable=False, default=False),
)

# One time series: integer ids keep the points' primary key narrow.
series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sensor_mid", Integer, ForeignKey("sensors.mid", ondelete="CASCADE"), nullable=False),
    Column("signal_type_moid", Integer, ForeignKey("signal_types.moid"), nullable=False),
    # The series' version clock: its newest acquisition stamp (µs, a whole ms), live or
    # imported. A write locks the row, so stamps of one series strictly increase (store.py).
    Column("acq_us", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("sensor_mid", "signal_type_moid"),
    sqlite_autoincrement=True,
)

# Points as day blocks (see blocks.py): one row per (series, UTC day, origin) holding every
# version of that day's points, compressed. The summary columns answer the counter-neighbour
# and cap queries without decoding a body.
blocks = Table(
    "blocks",
    metadata,
    Column("series_id", Integer, primary_key=True, autoincrement=False),
    Column("day", BigInteger, primary_key=True, autoincrement=False),  # time // 86,400,000
    Column("origin", SmallInteger, primary_key=True, autoincrement=False),
    Column("n", Integer, nullable=False),  # points in the body, every version
    # Capture times in ms into the block's day (store.stored_row): the newest of any point,
    # the first and last of a DBL/INT point.
    Column("t_last", Integer, nullable=False),
    Column("num_first", Integer, nullable=True),
    Column("num_last", Integer, nullable=True),
    Column("body", LargeBinary, nullable=False),
    # The newest version per time alone, when the body holds older ones (blocks.Encoded).
    Column("latest", LargeBinary, nullable=True),
    # Sums per UTC hour of the newest live numeric points (blocks.HOURS records), from which
    # a read of hour-aligned buckets adds up whole days without decoding them; NULL: decode.
    Column("hours", LargeBinary, nullable=True),
    # The nearest block of an origin other than measured before or after a window, whatever
    # lies between: a counter's neighbours (store.neighbours) without walking the measured
    # days between, nor a whole series for an origin it does not hold. Measured blocks, most
    # of the table, are left out (migration 0017): their neighbours are found by the key, and
    # an index of every block cost 0.3 B a point on PostgreSQL and was rewritten by each write.
    Index(
        "ix_blocks_other_origins",
        "series_id",
        "origin",
        "day",
        sqlite_where=text(f"origin <> {ORIGIN_MEASURED}"),
        postgresql_where=text(f"origin <> {ORIGIN_MEASURED}"),
    ),
    sqlite_with_rowid=False,
)

# Points a write acknowledged before they were merged into their day blocks (store.py,
# "Write-ahead"): one row per series a deferring write touched, its points as columns in a
# zstd frame (`store.pack_runs`), in id order per series = commit order (writers of a series
# take turns). A merge (`SeriesStore.plan` and `apply`, or `drain_series`) moves them into
# `blocks` and deletes them; every transaction that may read blocks merges what is pending
# first (`Database.settler`).
pending = Table(
    "pending",
    metadata,
    # SQLite: the rowid itself (INTEGER PRIMARY KEY), no index of its own.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("series_id", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
    # A live write's stamp of the series (µs), every point's acq: not in `body` then.
    Column("stamp", BigInteger, nullable=True),
    Index("ix_pending_series_id_id", "series_id", "id"),
)
