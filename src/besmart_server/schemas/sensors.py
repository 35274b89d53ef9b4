"""Sensor types, sensors, sensor states (meter installation periods) and signal states."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, JsonValue


class SensorTypeResponse(BaseModel):
    """A kind of sensor; the custom fields are JSON Schema documents served as JSON strings."""

    id: int
    name: str
    description: str
    sensor_state_custom_fields: str | None = Field(
        default=None, description="JSON Schema (as a string) for the `info` of this type's states"
    )
    sensor_custom_fields: str | None = Field(
        default=None, description="JSON Schema (as a string) for the `info` of this type's sensors"
    )
    is_system_type: bool


class SensorResponse(BaseModel):
    """A metering point, with its JSON fields as JSON values and the caller's rights on it."""

    client_cid: int
    sensor_mid: int
    name: str
    sensor_type_id: int | None = None
    sensor_type_name: str | None = None
    sensor_type_description: str | None = None
    sensor_eid: str | None = None
    lat: float | None = None
    lon: float | None = None
    node_id: int | None = Field(default=None, description="sensor_mid of the parent node")
    annotations: JsonValue = None
    info: dict[str, Any] | None = None
    comments: str | None = None
    uncertain: bool = False
    negligible: bool = False
    balance_calculation: bool = False
    write: bool = Field(default=False, description="The caller may change this sensor")
    execute: bool = Field(default=False, description="The caller may run graphs on this sensor")


class SignalStateDto(BaseModel):
    """Counter readings of one signal when a meter was installed and removed."""

    signal_state_id: int
    sensor_state_id: int
    signal_type_moid: int
    value_for_since: float | None = None
    value_for_till: float | None = None
    info: dict[str, Any] | None = None


class SensorStateResponse(BaseModel):
    """A meter installation period on a sensor: [since, till), till null while installed."""

    sensor_state_id: int
    client_cid: int
    sensor_mid: int
    since: int = Field(description="Start (UTC unix ms, inclusive)")
    till: int | None = Field(default=None, description="End (UTC unix ms, exclusive); null: open")
    meter_eid: str | None = None
    info: dict[str, Any] | None = None
    meter_type_id: int | None = None
    meter_type_name: str | None = None
    meter_type_is_ami: bool | None = None
    meter_type_is_dcu: bool | None = None
    signal_states: list[SignalStateDto] = Field(default_factory=list)


class MeterTypeResponse(BaseModel):
    """A kind of meter a sensor state may name: a seeded system type or a client's own."""

    id: int
    client_cid: int | None = Field(
        default=None, description="The client that owns this type; null for a system type"
    )
    meter_type_name: str
    description: str
    number_of_phases: int | None = Field(
        default=None, description="1 or 3 (2 for split-phase); null when not applicable"
    )
    is_ami: bool = Field(description="A smart meter read remotely (AMI)")
    is_dcu: bool = Field(description="A data concentrator unit")
    is_balance: bool = Field(description="A meter used for energy balance (station, feeder)")
