"""Sensor types (catalog) and sensors (metering points)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
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

sensor_types = Table(
    "sensor_types",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("sensor_custom_fields", Text, nullable=True),  # JSON Schema for sensors' info
    Column("sensor_state_custom_fields", Text, nullable=True),  # JSON Schema for states' info
    Column("is_system_type", Boolean, nullable=False, default=False),
    sqlite_autoincrement=True,
)

sensors = Table(
    "sensors",
    metadata,
    # sensor_mid: unique in the installation, assigned by the server.
    Column("mid", Integer, primary_key=True, autoincrement=True),
    Column("client_cid", Integer, ForeignKey("clients.cid", ondelete="CASCADE"), nullable=False),
    Column("name", String(500), nullable=False),
    Column("sensor_type_id", Integer, ForeignKey("sensor_types.id"), nullable=True),
    Column("sensor_eid", String(200), nullable=True),
    Column("lat", Float, nullable=True),
    Column("lon", Float, nullable=True),
    Column("node_id", Integer, ForeignKey("sensors.mid", ondelete="SET NULL"), nullable=True),
    Column("annotations", Text, nullable=True),  # JSON
    Column("info", Text, nullable=True),  # JSON
    Column("comments", Text, nullable=True),
    Column("uncertain", Boolean, nullable=False, default=False),
    Column("negligible", Boolean, nullable=False, default=False),
    Column("balance_calculation", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("client_cid", "sensor_eid"),
    Index("ix_sensors_client_cid", "client_cid"),
    Index("ix_sensors_node_id", "node_id"),
    sqlite_autoincrement=True,
)
