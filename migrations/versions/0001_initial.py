"""Initial schema: tenants, users, tokens, sensors, states, catalog, series and points.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIG = sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("cid", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("is_system", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", BIG, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("login", sa.String(200), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("created_at", BIG, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "user_roles",
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "client_cid",
            sa.Integer(),
            sa.ForeignKey("clients.cid", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("role", sa.String(10), nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("created_at", BIG, nullable=False),
        sa.Column("expires_at", BIG, nullable=False),
        sa.Column("revoked_at", BIG, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "client_cid",
            sa.Integer(),
            sa.ForeignKey("clients.cid", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("created_at", BIG, nullable=False),
        sa.Column("revoked_at", BIG, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("login", sa.String(200), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("at", BIG, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_login_failures_login_at", "login_failures", ["login", "at"])
    op.create_index("ix_login_failures_address_at", "login_failures", ["address", "at"])

    op.create_table(
        "sensor_types",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("sensor_custom_fields", sa.Text(), nullable=True),
        sa.Column("sensor_state_custom_fields", sa.Text(), nullable=True),
        sa.Column("is_system_type", sa.Boolean(), nullable=False, server_default=sa.false()),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "sensors",
        sa.Column("mid", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "client_cid",
            sa.Integer(),
            sa.ForeignKey("clients.cid", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("sensor_type_id", sa.Integer(), sa.ForeignKey("sensor_types.id"), nullable=True),
        sa.Column("sensor_eid", sa.String(200), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column(
            "node_id",
            sa.Integer(),
            sa.ForeignKey("sensors.mid", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("annotations", sa.Text(), nullable=True),
        sa.Column("info", sa.Text(), nullable=True),
        sa.Column("comments", sa.Text(), nullable=True),
        sa.Column("uncertain", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("negligible", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("balance_calculation", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", BIG, nullable=False),
        sa.UniqueConstraint("client_cid", "sensor_eid", name="uq_sensors_client_cid_sensor_eid"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_sensors_client_cid", "sensors", ["client_cid"])
    op.create_index("ix_sensors_node_id", "sensors", ["node_id"])

    op.create_table(
        "meter_types",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "client_cid",
            sa.Integer(),
            sa.ForeignKey("clients.cid", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("meter_type_name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("number_of_phases", sa.Integer(), nullable=True),
        sa.Column("is_ami", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("is_dcu", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("is_balance", sa.Boolean(), nullable=False, server_default=sa.false()),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "sensor_states",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "sensor_mid",
            sa.Integer(),
            sa.ForeignKey("sensors.mid", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("since", BIG, nullable=False),
        sa.Column("till", BIG, nullable=True),
        sa.Column("meter_eid", sa.String(200), nullable=True),
        sa.Column("meter_type_id", sa.Integer(), sa.ForeignKey("meter_types.id"), nullable=True),
        sa.Column("info", sa.Text(), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_sensor_states_sensor_mid_since", "sensor_states", ["sensor_mid", "since"])
    op.create_index("ix_sensor_states_meter_eid", "sensor_states", ["meter_eid"])

    op.create_table(
        "units",
        sa.Column("unit_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("symbol", sa.String(20), nullable=False, unique=True),
        sa.Column("dimension", sa.String(40), nullable=False),
        sa.Column("factor", sa.Float(), nullable=False),
        sa.Column("offset", sa.Float(), nullable=False),
    )
    op.create_table(
        "signal_types",
        sa.Column("moid", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("symbol", sa.String(40), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("unit_id", sa.Integer(), sa.ForeignKey("units.unit_id"), nullable=False),
        sa.Column("time_series_type", sa.SmallInteger(), nullable=False),
        sa.Column("obis_mapping", sa.String(40), nullable=True),
        sa.Column("apply_current_ratio", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("apply_voltage_ratio", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("is_measurement", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("group_name", sa.String(100), nullable=True),
        sa.Column("chart_expected_unit", sa.String(20), nullable=True),
        sa.Column("draw_chart", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("keep_prefix", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "signal_states",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "sensor_state_id",
            sa.Integer(),
            sa.ForeignKey("sensor_states.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "signal_type_moid", sa.Integer(), sa.ForeignKey("signal_types.moid"), nullable=False
        ),
        sa.Column("value_for_since", sa.Float(), nullable=True),
        sa.Column("value_for_till", sa.Float(), nullable=True),
        sa.Column("info", sa.Text(), nullable=True),
        sa.UniqueConstraint(
            "sensor_state_id",
            "signal_type_moid",
            name="uq_signal_states_sensor_state_id_signal_type_moid",
        ),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "series",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "sensor_mid",
            sa.Integer(),
            sa.ForeignKey("sensors.mid", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "signal_type_moid", sa.Integer(), sa.ForeignKey("signal_types.moid"), nullable=False
        ),
        sa.UniqueConstraint(
            "sensor_mid", "signal_type_moid", name="uq_series_sensor_mid_signal_type_moid"
        ),
        sqlite_autoincrement=True,
    )
    # No foreign key from points to series: it would cost a lookup per inserted point; the
    # sensor deletion removes a series' points explicitly in the same transaction.
    op.create_table(
        "points",
        sa.Column("series_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("time", BIG, primary_key=True, autoincrement=False),
        sa.Column("origin", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("acq", BIG, primary_key=True, autoincrement=False),
        sa.Column("type", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "version_clock",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_us", BIG, nullable=False),
    )
    op.bulk_insert(
        sa.table("version_clock", sa.column("id", sa.Integer), sa.column("last_us", BIG)),
        [{"id": 1, "last_us": 0}],
    )


def downgrade() -> None:
    for name in (
        "version_clock",
        "points",
        "series",
        "signal_states",
        "signal_types",
        "units",
        "sensor_states",
        "meter_types",
        "sensors",
        "sensor_types",
        "login_failures",
        "api_keys",
        "tokens",
        "user_roles",
        "users",
        "clients",
    ):
        op.drop_table(name)
