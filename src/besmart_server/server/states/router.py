"""HTTP routes of the states module (thin: parse, authorize, call the service).

Fixed paths (/states/find, /states/signals...) are declared before the
/states/{sensor_state_id} patterns so they are matched first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from besmart_server.schemas import ID_MAX
from besmart_server.schemas.sensors import SensorStateResponse, SignalStateDto
from besmart_server.server.deps import ConnDep, CurrentUser
from besmart_server.server.errors import R401, R403, R404, R409
from besmart_server.server.states import service
from besmart_server.server.states.service import MAX_MS, SignalStateFields, StateFields

router = APIRouter(tags=["Signals"])

StatePath = Annotated[int, Path(description="State ID", ge=0, le=ID_MAX)]
SignalStatePath = Annotated[int, Path(description="Signal state ID", ge=0, le=ID_MAX)]
ClientQ = Annotated[int | None, Query(description="Client CID", ge=0, le=ID_MAX)]
SensorQ = Annotated[int | None, Query(description="Sensor MID", ge=0, le=ID_MAX)]
SinceQ = Annotated[
    int | None, Query(description="Start date (UTC unix timestamp in ms)", ge=0, le=MAX_MS)
]
TillQ = Annotated[
    int | None, Query(description="End date (UTC unix timestamp in ms)", ge=0, le=MAX_MS)
]
InfoQ = Annotated[str | None, Query(description="Additional information")]
MeterEidQ = Annotated[str | None, Query(description="Meter external ID", max_length=200)]


# --- fixed paths first -----------------------------------------------------------------------


@router.get(
    "/api/sensors/states/find",
    summary="Find the sensor state of a meter",
    description="Beyond the spec, called by field devices: the sensor state whose `meter_eid` "
    "is `meter_dev` and that is in force now (since <= now < till, or till null), among the "
    "clients the caller can read. When one serial is installed in several places, states "
    "whose meter type is named `meter_type_name` win, then the latest `since`.",
    responses={200: {"description": "The state in force"}, **R401, **R404},
)
def find_state(
    conn: ConnDep,
    user: CurrentUser,
    meter_dev: Annotated[
        str, Query(description="Meter serial (meter_eid)", min_length=1, max_length=200)
    ],
    meter_type_name: Annotated[
        str | None, Query(description="Meter type name", max_length=200)
    ] = None,
) -> SensorStateResponse:
    """Find the state in force now for a meter serial."""
    return service.find_for_meter(conn, user, meter_dev=meter_dev, meter_type_name=meter_type_name)


@router.get(
    "/api/sensors/states/signals",
    summary="Get sensor states for signal",
    description="Using this endpoint client can read signals states for signal: the sensor "
    "states (filtered as in Get sensor states), each with the signal states of "
    "`signal_type_moid` only.",
    operation_id="api_endpoints_sensors_get_states_signals_api_sensors_states_signals_get",
    responses={200: {"description": "Successfully read signals states for signal"}, **R401, **R404},
)
def get_states_signals(
    conn: ConnDep,
    user: CurrentUser,
    client_cid: ClientQ = None,
    sensor_mid: SensorQ = None,
    signal_type_moid: Annotated[
        int | None, Query(description="Signal type MOID", ge=0, le=ID_MAX)
    ] = None,
) -> list[SensorStateResponse]:
    """Get sensor states with their signal states for one signal type."""
    return service.list_states(
        conn,
        user,
        client_cid=client_cid,
        sensor_mid=sensor_mid,
        signal_type_moid=signal_type_moid,
    )


@router.put(
    "/api/sensors/states/signals/{signal_state_id}",
    summary="Update sensor state for signal",
    description="Using this endpoint client can update sensor state for signal. Readings are "
    'numbers, also as text ("1.235e+04"); "" or "null" clears one. Answers the updated '
    "signal state.",
    operation_id="api_endpoints_sensors_put_states_signals_id_api_sensors_states_signals__signal_state_id__put",
    responses={200: {"description": "Updated state for signal"}, **R401, **R403, **R404},
)
def put_signal_state(
    conn: ConnDep,
    user: CurrentUser,
    signal_state_id: SignalStatePath,
    value_for_since: Annotated[
        str | None, Query(description="Value for state start", max_length=100)
    ] = None,
    value_for_till: Annotated[
        str | None, Query(description="Value for state end", max_length=100)
    ] = None,
    info: InfoQ = None,
) -> SignalStateDto:
    """Update sensor state for signal."""
    fields = SignalStateFields(
        value_for_since=value_for_since, value_for_till=value_for_till, info=info
    )
    return service.update_signal_state(conn, user, signal_state_id, fields)


@router.delete(
    "/api/sensors/states/signals/{signal_state_id}",
    status_code=204,
    summary="Delete sensor state for signal",
    description="Using this endpoint client can delete sensor state for signal",
    operation_id="api_endpoints_sensors_delete_states_signals_id_api_sensors_states_signals__signal_state_id__delete",
    responses={204: {"description": "Removed state for signal"}, **R401, **R403, **R404},
)
def delete_signal_state(
    conn: ConnDep, user: CurrentUser, signal_state_id: SignalStatePath
) -> Response:
    """Delete sensor state for signal."""
    service.delete_signal_state(conn, user, signal_state_id)
    return Response(status_code=204)


# --- one state -------------------------------------------------------------------------------


@router.post(
    "/api/sensors/states/{sensor_state_id}/signals",
    status_code=201,
    summary="Create sensor state for signal",
    description="Using this endpoint client can create signal state for given sensor state: "
    "the counter readings of one signal when the meter was installed (`value_for_since`) and "
    "removed (`value_for_till`). One per (state, signal type): 409 on a second.",
    operation_id="api_endpoints_sensors_post_states_id_signals_api_sensors_states__sensor_state_id__signals_post",
    responses={
        201: {"description": "Successfully created state for signal"},
        **R401,
        **R403,
        **R404,
        **R409,
    },
)
def post_signal_state(
    conn: ConnDep,
    user: CurrentUser,
    sensor_state_id: StatePath,
    signal_type_moid: Annotated[int, Query(description="Signal type moid", ge=0, le=ID_MAX)],
    value_for_since: Annotated[float | None, Query(description="Value for state start")] = None,
    value_for_till: Annotated[float | None, Query(description="Value for state end")] = None,
    info: InfoQ = None,
) -> SignalStateDto:
    """Create sensor state for signal."""
    fields = SignalStateFields(
        value_for_since=value_for_since, value_for_till=value_for_till, info=info
    )
    return service.create_signal_state(
        conn, user, sensor_state_id, signal_type_moid=signal_type_moid, fields=fields
    )


@router.put(
    "/api/sensors/states/{sensor_state_id}",
    summary="Update sensor state",
    description="Using this endpoint client can update sensor state. Only the given fields "
    'change; `meter_eid=""` and `meter_type_id=""` clear them. 409 when the new period '
    "would overlap another state of the sensor. Answers the updated state.",
    operation_id="api_endpoints_sensors_put_states_id_api_sensors_states__sensor_state_id__put",
    responses={200: {"description": "Updated state"}, **R401, **R403, **R404, **R409},
)
def put_state(
    conn: ConnDep,
    user: CurrentUser,
    sensor_state_id: StatePath,
    since: SinceQ = None,
    till: TillQ = None,
    info: InfoQ = None,
    meter_eid: MeterEidQ = None,
    meter_type_id: Annotated[str | None, Query(description="Meter type id", max_length=20)] = None,
) -> SensorStateResponse:
    """Update sensor state."""
    fields = StateFields(
        since=since, till=till, info=info, meter_eid=meter_eid, meter_type_id=meter_type_id
    )
    return service.update_state(conn, user, sensor_state_id, fields)


@router.delete(
    "/api/sensors/states/{sensor_state_id}",
    status_code=204,
    summary="Delete sensor state",
    description="Using this endpoint client can delete sensor state, with its signal states",
    operation_id="api_endpoints_sensors_delete_states_id_api_sensors_states__sensor_state_id__delete",
    responses={204: {"description": "Removed state"}, **R401, **R403, **R404},
)
def delete_state(conn: ConnDep, user: CurrentUser, sensor_state_id: StatePath) -> Response:
    """Delete sensor state."""
    service.delete_state(conn, user, sensor_state_id)
    return Response(status_code=204)


# --- the collection --------------------------------------------------------------------------


@router.get(
    "/api/sensors/states",
    summary="Get sensor states",
    description="Using this endpoint client can get all states for given sensor. Without "
    "filters: the states of every sensor the caller can read; a client or sensor the caller "
    "cannot read is 404. Sorted by client, sensor and `since`; each state carries its "
    "signal states.",
    operation_id="api_endpoints_sensors_get_states_api_sensors_states_get",
    responses={200: {"description": "Successfully read signals states"}, **R401, **R404},
)
def get_states(
    conn: ConnDep, user: CurrentUser, client_cid: ClientQ = None, sensor_mid: SensorQ = None
) -> list[SensorStateResponse]:
    """Get sensor states."""
    return service.list_states(conn, user, client_cid=client_cid, sensor_mid=sensor_mid)


@router.post(
    "/api/sensors/states",
    status_code=201,
    summary="Create sensor state",
    description="Using this endpoint client can create sensor state (a meter installation "
    "period) for given sensor: [since, till) in UTC ms, till absent while the meter is "
    "installed, since defaulting to now. Periods of one sensor never overlap (409); since "
    "must be earlier than till (422); `meter_type_id` must name a meter type (422); `info` "
    "is validated against the sensor type's state custom fields. Answers the created state.",
    operation_id="api_endpoints_sensors_post_states_api_sensors_states_post",
    responses={201: {"description": "Successfully created state"}, **R401, **R403, **R404, **R409},
)
def post_state(
    conn: ConnDep,
    user: CurrentUser,
    client_cid: Annotated[int, Query(description="Client CID", ge=0, le=ID_MAX)],
    sensor_mid: Annotated[int, Query(description="Sensor MID", ge=0, le=ID_MAX)],
    since: SinceQ = None,
    till: TillQ = None,
    info: InfoQ = None,
    meter_eid: MeterEidQ = None,
    meter_type_id: Annotated[
        int | None, Query(description="Meter type id", ge=0, le=ID_MAX)
    ] = None,
) -> SensorStateResponse:
    """Create sensor state."""
    fields = StateFields(
        since=since, till=till, info=info, meter_eid=meter_eid, meter_type_id=meter_type_id
    )
    return service.create_state(
        conn, user, client_cid=client_cid, sensor_mid=sensor_mid, fields=fields
    )
