"""Sensor states (meter installation periods) and signal states."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from besmart_server.server.db import metadata

sensor_states = Table(
    "sensor_states",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sensor_mid", Integer, ForeignKey("sensors.mid", ondelete="CASCADE"), nullable=False),
    Column("since", BigInteger, nullable=False),
    Column("till", BigInteger, nullable=True),  # NULL: the meter is still installed
    Column("meter_eid", String(200), nullable=True),
    Column("meter_type_id", Integer, ForeignKey("meter_types.id"), nullable=True),
    Column("info", Text, nullable=True),  # JSON, e.g. {"current_ratio": 40}
    Index("ix_sensor_states_sensor_mid_since", "sensor_mid", "since"),
    Index("ix_sensor_states_meter_eid", "meter_eid"),
    sqlite_autoincrement=True,
)

signal_states = Table(
    "signal_states",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "sensor_state_id",
        Integer,
        ForeignKey("sensor_states.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("signal_type_moid", Integer, ForeignKey("signal_types.moid"), nullable=False),
    Column("value_for_since", Float, nullable=True),
    Column("value_for_till", Float, nullable=True),
    Column("info", Text, nullable=True),
    UniqueConstraint("sensor_state_id", "signal_type_moid"),
    sqlite_autoincrement=True,
)
