"""Idempotent upsert of the system catalogs; run by migrations (new rows, changed rows)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Table, select

from besmart_server.server.meters.catalog import METER_TYPES
from besmart_server.server.meters.tables import meter_types
from besmart_server.server.sensors.catalog import SENSOR_TYPES
from besmart_server.server.sensors.tables import sensor_types
from besmart_server.server.signals.catalog import SIGNAL_TYPES, UNITS, unit_by_symbol
from besmart_server.server.signals.tables import signal_types, units


def _upsert(conn: Connection, table: Table, key: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert missing rows and bring existing ones up to date, portable across dialects."""
    rows = list(rows)
    col = table.c[key]
    existing = set(conn.scalars(select(col).where(col.in_([r[key] for r in rows]))))
    fresh = [r for r in rows if r[key] not in existing]
    if fresh:
        conn.execute(table.insert(), fresh)
    for r in rows:
        if r[key] in existing:
            conn.execute(table.update().where(col == r[key]).values(**r))


def seed_catalog(conn: Connection) -> None:
    """Upsert sensor types, meter types, units and signal types."""
    _upsert(
        conn,
        sensor_types,
        "id",
        (
            {
                "id": t.id,
                "name": t.name,
                "description": t.description,
                "sensor_custom_fields": t.sensor_schema_text(),
                "sensor_state_custom_fields": t.state_schema_text(),
                "is_system_type": True,
            }
            for t in SENSOR_TYPES
        ),
    )
    _upsert(
        conn,
        meter_types,
        "id",
        (
            {
                "id": m.id,
                "client_cid": None,
                "meter_type_name": m.meter_type_name,
                "description": m.description,
                "number_of_phases": m.number_of_phases,
                "is_ami": m.is_ami,
                "is_dcu": m.is_dcu,
                "is_balance": m.is_balance,
            }
            for m in METER_TYPES
        ),
    )
    _upsert(
        conn,
        units,
        "unit_id",
        (
            {
                "unit_id": u.unit_id,
                "symbol": u.symbol,
                "dimension": u.dimension,
                "factor": u.factor,
                "offset": u.offset,
            }
            for u in UNITS
        ),
    )
    _upsert(
        conn,
        signal_types,
        "moid",
        (
            {
                "moid": s.moid,
                "symbol": s.symbol,
                "description": s.description,
                "unit_id": unit_by_symbol(s.unit_symbol).unit_id,
                "time_series_type": int(s.time_series_type),
                "obis_mapping": s.obis,
                "apply_current_ratio": s.apply_current_ratio,
                "apply_voltage_ratio": s.apply_voltage_ratio,
                "is_measurement": s.is_measurement,
                "group_id": s.group_id,
                "group_name": s.group,
                "chart_expected_unit": s.chart_expected_unit,
                "draw_chart": s.draw_chart,
                "keep_prefix": s.keep_prefix,
            }
            for s in SIGNAL_TYPES
        ),
    )
    _fix_sequences(conn)


def _fix_sequences(conn: Connection) -> None:
    """Seeded explicit ids must not collide with ids PostgreSQL's sequences hand out later."""
    if conn.dialect.name != "postgresql":
        return
    for table, col in (("sensor_types", "id"), ("meter_types", "id")):
        conn.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table}', '{col}'), "
            f"(SELECT COALESCE(MAX({col}), 1) FROM {table}))"
        )
