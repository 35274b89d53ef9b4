"""Devices that publish over MQTT, the messages already stored (de-duplication) and the
messages refused (dead letters)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from besmart_server.server.db import metadata

devices = Table(
    "devices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # The MQTT username and the topic segment after besmart/v1/.
    Column("name", String(64), nullable=False, unique=True),
    Column("client_cid", Integer, ForeignKey("clients.cid", ondelete="CASCADE"), nullable=False),
    # Mosquitto's own PBKDF2-SHA512 line ($7$...): the password file is rewritten from these.
    Column("secret_hash", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    Index("ix_devices_client_cid", "client_cid"),
    sqlite_autoincrement=True,
)

# The sensors a device was given; none means every sensor of its client.
device_sensors = Table(
    "device_sensors",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("sensor_mid", Integer, primary_key=True),
)

# One row per message the bridge has settled (stored or refused), by the device and the
# message's identity: a redelivery finds it and is acknowledged without a second version.
mqtt_seen = Table(
    "mqtt_seen",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("msg_key", Text, primary_key=True),
    Column("seen_at", BigInteger, nullable=False),
    Index("ix_mqtt_seen_seen_at", "seen_at"),
    # On SQLite the key is the table: one B-tree insert per settled message instead of two.
    sqlite_with_rowid=False,
)

mqtt_rejected = Table(
    "mqtt_rejected",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", BigInteger, nullable=False),
    # Known when the topic names a device; owners list their clients' rows.
    Column("client_cid", Integer, ForeignKey("clients.cid", ondelete="CASCADE"), nullable=True),
    Column("device", String(200), nullable=False),
    Column("topic", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_mqtt_rejected_client_cid", "client_cid"),
    sqlite_autoincrement=True,
)
