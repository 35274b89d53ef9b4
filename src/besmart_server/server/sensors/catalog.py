"""System sensor types seeded by migration, with JSON Schemas for their custom fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class SensorTypeSeed:
    """One system sensor type; schemas are JSON Schema documents (None: free-form info)."""

    id: int
    name: str
    description: str
    sensor_custom_fields: dict[str, Any] | None = None
    sensor_state_custom_fields: dict[str, Any] | None = None

    def sensor_schema_text(self) -> str | None:
        """The sensor schema as the API serves it: a JSON string."""
        return _dump(self.sensor_custom_fields)

    def state_schema_text(self) -> str | None:
        """The state schema as the API serves it: a JSON string."""
        return _dump(self.sensor_state_custom_fields)


def _dump(schema: dict[str, Any] | None) -> str | None:
    return None if schema is None else orjson.dumps(schema).decode()


def _obj(**props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "additionalProperties": True}


_NUM = {"type": "number"}
_POS = {"type": "number", "exclusiveMinimum": 0}
# Transformer ratios and tariff of a meter installation: what the multiplier step reads.
METER_STATE_FIELDS = _obj(
    current_ratio=_POS,
    voltage_ratio=_POS,
    multiplier=_POS,
    tariff={"type": "string"},
)

SENSOR_TYPES: tuple[SensorTypeSeed, ...] = (
    SensorTypeSeed(1, "virtual", "A computed point: sums, differences, balances."),
    SensorTypeSeed(
        2,
        "energy meter",
        "An electricity meter at a point of delivery.",
        _obj(
            contracted_power_kw=_POS,
            tariff={"type": "string"},
            phases={"type": "integer", "enum": [1, 3]},
        ),
        METER_STATE_FIELDS,
    ),
    SensorTypeSeed(
        3,
        "station",
        "A substation or transformer station: the root of a feeder tree.",
        _obj(voltage_level_kv=_POS),
        METER_STATE_FIELDS,
    ),
    SensorTypeSeed(
        4,
        "transformer",
        "A distribution transformer below a station.",
        _obj(rated_power_kva=_POS, primary_kv=_POS, secondary_kv=_POS),
        METER_STATE_FIELDS,
    ),
    SensorTypeSeed(
        5,
        "PV installation",
        "A photovoltaic installation with its inverter(s).",
        _obj(
            kwp=_POS,
            tilt={"type": "number", "minimum": 0, "maximum": 90},
            azimuth={"type": "number", "minimum": 0, "maximum": 360},
            inverter_kw=_POS,
            efficiency={"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        ),
        METER_STATE_FIELDS,
    ),
    SensorTypeSeed(
        6,
        "wind turbine",
        "A wind turbine with its power curve parameters.",
        _obj(
            rated_kw=_POS,
            hub_height_m=_POS,
            cut_in_speed=_POS,
            cut_out_speed=_POS,
            rated_speed=_POS,
        ),
        METER_STATE_FIELDS,
    ),
    SensorTypeSeed(
        7,
        "storage",
        "A battery energy storage system.",
        _obj(capacity_kwh=_POS, power_kw=_POS, round_trip_efficiency=_NUM),
        METER_STATE_FIELDS,
    ),
    SensorTypeSeed(
        8,
        "EV charger",
        "An electric vehicle charging point.",
        _obj(power_kw=_POS, connectors={"type": "integer", "minimum": 1}),
        METER_STATE_FIELDS,
    ),
    SensorTypeSeed(
        9,
        "heat pump",
        "A heat pump with its electrical rating.",
        _obj(power_kw=_POS, cop_nominal=_POS),
        METER_STATE_FIELDS,
    ),
    SensorTypeSeed(
        10,
        "weather point",
        "A weather grid point or station; its series are weather signals.",
        _obj(provider={"type": "string"}, elevation_m=_NUM),
    ),
)

SENSOR_TYPE_IDS = {t.name: t.id for t in SENSOR_TYPES}
