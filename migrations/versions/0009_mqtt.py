"""MQTT ingestion: devices, the sensors each was given, settled message keys, dead letters.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BIG = sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column(
            "client_cid",
            sa.Integer(),
            sa.ForeignKey("clients.cid", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column("created_at", BIG, nullable=False),
        sa.Column("revoked_at", BIG, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_devices_client_cid", "devices", ["client_cid"])
    op.create_table(
        "device_sensors",
        sa.Column(
            "device_id",
            sa.Integer(),
            sa.ForeignKey("devices.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("sensor_mid", sa.Integer(), primary_key=True),
    )
    op.create_table(
        "mqtt_seen",
        sa.Column(
            "device_id",
            sa.Integer(),
            sa.ForeignKey("devices.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("msg_key", sa.Text(), primary_key=True),
        sa.Column("seen_at", BIG, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_mqtt_seen_seen_at", "mqtt_seen", ["seen_at"])
    op.create_table(
        "mqtt_rejected",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("received_at", BIG, nullable=False),
        sa.Column(
            "client_cid",
            sa.Integer(),
            sa.ForeignKey("clients.cid", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("device", sa.String(200), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_mqtt_rejected_client_cid", "mqtt_rejected", ["client_cid"])


def downgrade() -> None:
    op.drop_index("ix_mqtt_rejected_client_cid", table_name="mqtt_rejected")
    op.drop_table("mqtt_rejected")
    op.drop_index("ix_mqtt_seen_seen_at", table_name="mqtt_seen")
    op.drop_table("mqtt_seen")
    op.drop_table("device_sensors")
    op.drop_index("ix_devices_client_cid", table_name="devices")
    op.drop_table("devices")
