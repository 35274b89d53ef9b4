"""Demo sensors: a station with a transformer, two meters (one swapped) and a PV installation."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection

from besmart_server.server.access import Principal
from besmart_server.server.demo_info import DemoInfo
from besmart_server.server.sensors import service as sensors
from besmart_server.server.sensors.catalog import SENSOR_TYPE_IDS
from besmart_server.server.states import service as states

# Kraków: where the demo grid stands.
LAT, LON = 50.06, 19.94
# Installation of every first meter: 2026-01-01T00:00:00Z.
INSTALLED_MS = 1_767_225_600_000
# meter_2's meter swap: 2026-10-15T00:00:00Z; the old meter's period ends here, the new
# one's starts here (half-open periods touch without overlapping).
SWAP_MS = 1_792_022_400_000
A_PLUS, A_MINUS = 32, 34
# Counter readings (kWh) at meter_2's swap: old meter's registers at removal, new meter's at
# installation. Data loaders should write meter_2's counters consistently with these.
METER_2_READINGS: dict[str, dict[int, tuple[float, float | None]]] = {
    "old": {A_PLUS: (1520.0, 4873.25), A_MINUS: (12.0, 40.5)},
    "new": {A_PLUS: (0.0, None), A_MINUS: (0.0, None)},
}
# Meter types of the seeded catalog (meters/catalog.py).
_THREE_PHASE, _CT_CONNECTED, _THREE_PHASE_AMI = 2, 3, 5

_LOADER = Principal(user_id=None, login="demo-loader", is_admin=True)


def _sensor(
    conn: Connection,
    demo: DemoInfo,
    role: str,
    *,
    details: dict[str, Any],
    annotations: dict[str, Any] | None = None,
    **fields: Any,
) -> int:
    created = sensors.create_sensor(
        conn,
        _LOADER,
        client_cid=demo.client_cid,
        fields=sensors.SensorFields(
            info=orjson.dumps(details).decode(),
            annotations=None if annotations is None else orjson.dumps(annotations).decode(),
            **fields,
        ),
    )
    demo.sensors[role] = created.sensor_mid
    return created.sensor_mid


def _state(
    conn: Connection,
    info: DemoInfo,
    mid: int,
    *,
    since: int,
    till: int | None,
    meter_eid: str,
    meter_type_id: int,
    state_info: dict[str, Any] | None = None,
    readings: dict[int, tuple[float, float | None]] | None = None,
) -> None:
    state = states.create_state(
        conn,
        _LOADER,
        client_cid=info.client_cid,
        sensor_mid=mid,
        fields=states.StateFields(
            since=since,
            till=till,
            meter_eid=meter_eid,
            meter_type_id=meter_type_id,
            info=None if state_info is None else orjson.dumps(state_info).decode(),
        ),
    )
    for moid, (at_since, at_till) in (readings or {}).items():
        states.create_signal_state(
            conn,
            _LOADER,
            state.sensor_state_id,
            signal_type_moid=moid,
            fields=states.SignalStateFields(value_for_since=at_since, value_for_till=at_till),
        )


def load(conn: Connection, info: DemoInfo) -> None:
    """Create the demo sensors under `info.client_cid` and record them in `info.sensors`."""
    station = _sensor(
        conn,
        info,
        "station",
        name="Station Krakow 15/0.4 kV",
        sensor_type_id=SENSOR_TYPE_IDS["station"],
        sensor_eid="ST-KRK-001",
        lat=LAT,
        lon=LON,
        details={"voltage_level_kv": 15},
    )
    transformer = _sensor(
        conn,
        info,
        "transformer",
        name="Transformer T1 630 kVA",
        sensor_type_id=SENSOR_TYPE_IDS["transformer"],
        sensor_eid="TR-KRK-001",
        lat=LAT,
        lon=LON,
        node_id=station,
        details={"rated_power_kva": 630, "primary_kv": 15, "secondary_kv": 0.4},
    )
    meter_1 = _sensor(
        conn,
        info,
        "meter_1",
        name="Meter 1 - workshop",
        sensor_type_id=SENSOR_TYPE_IDS["energy meter"],
        sensor_eid="PPE-KRK-0001",
        lat=50.0612,
        lon=19.9391,
        node_id=transformer,
        details={"contracted_power_kw": 40, "phases": 3},
        balance_calculation=True,
    )
    meter_2 = _sensor(
        conn,
        info,
        "meter_2",
        name="Meter 2 - apartment block",
        sensor_type_id=SENSOR_TYPE_IDS["energy meter"],
        sensor_eid="PPE-KRK-0002",
        lat=50.0595,
        lon=19.9420,
        node_id=transformer,
        details={"contracted_power_kw": 25, "phases": 3},
        balance_calculation=True,
    )
    _sensor(
        conn,
        info,
        "pv",
        name="PV rooftop 9.8 kWp",
        sensor_type_id=SENSOR_TYPE_IDS["PV installation"],
        sensor_eid="PV-KRK-0001",
        lat=50.0601,
        lon=19.9405,
        # On the apartment block's roof, behind meter 2: its surplus is meter 2's export, so it
        # is no member of the transformer's balance (counting it too would count it twice).
        node_id=meter_2,
        details={"kwp": 9.8, "tilt": 35, "azimuth": 180},
        balance_calculation=False,
        annotations={"inverter": "10 kW string inverter"},
    )
    _state(
        conn,
        info,
        meter_1,
        since=INSTALLED_MS,
        till=None,
        meter_eid="CT-100001",
        meter_type_id=_CT_CONNECTED,
        state_info={"current_ratio": 40, "voltage_ratio": 1},
        readings={A_PLUS: (0.0, None), A_MINUS: (0.0, None)},
    )
    _state(
        conn,
        info,
        meter_2,
        since=INSTALLED_MS,
        till=SWAP_MS,
        meter_eid="EM-200001",
        meter_type_id=_THREE_PHASE,
        readings=METER_2_READINGS["old"],
    )
    _state(
        conn,
        info,
        meter_2,
        since=SWAP_MS,
        till=None,
        meter_eid="AMI-200002",
        meter_type_id=_THREE_PHASE_AMI,
        readings=METER_2_READINGS["new"],
    )
    info.notes.append(
        "Demo sensors: a station, a transformer, two meters (meter_2 swapped on 2026-10-15) "
        "and a 9.8 kWp PV installation behind meter_2, in Krakow."
    )
