"""HTTP routes of the sensors module (thin: parse, authorize, call the service).

Fixed paths (/api/sensors/types, /find...) are declared before the
/api/sensors/{client_cid}.{sensor_mid} patterns and the bare-number catch-all; the meter type
catalog (/api/sensors/meters) is a router of its own, mounted by the app before this one."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from besmart_server.schemas import ID_MAX
from besmart_server.schemas.sensors import SensorResponse, SensorTypeResponse
from besmart_server.server.deps import ConnDep, CurrentUser
from besmart_server.server.errors import R401, R403, R404, R409, Invalid
from besmart_server.server.sensors import service
from besmart_server.server.sensors.service import SensorFields, SensorFilter

router = APIRouter(tags=["Sensors"])

ClientPath = Annotated[int, Path(description="Client CID", ge=0, le=ID_MAX)]
SensorPath = Annotated[int, Path(description="Sensor MID", ge=0, le=ID_MAX)]
TypeQ = Annotated[int | None, Query(description="Sensor type ID", ge=0, le=ID_MAX)]
EidQ = Annotated[str | None, Query(description="Sensor external ID", max_length=200)]
LatQ = Annotated[float | None, Query(description="Sensor latitude", ge=-90, le=90)]
LonQ = Annotated[float | None, Query(description="Sensor longitude", ge=-180, le=180)]
InfoQ = Annotated[str | None, Query(description="Additional information, in json format")]
CommentsQ = Annotated[str | None, Query(max_length=10_000)]
UncertainQ = Annotated[bool | None, Query(description="Uncertain sensor")]
NegligibleQ = Annotated[bool | None, Query(description="Negligible sensor")]
BalanceQ = Annotated[bool | None, Query(description="Include in energy balance calculation")]

NodeQ = Annotated[int | None, Query(description="Node ID (parent sensor_mid)", ge=0, le=ID_MAX)]
AnnotationsQ = Annotated[str | None, Query(description="Annotations, in json format")]
NameQ = Annotated[str, Query(description="Name of the sensor", min_length=1, max_length=500)]


def _fields(
    sensor_type_id: TypeQ = None,
    sensor_eid: EidQ = None,
    lat: LatQ = None,
    lon: LonQ = None,
    info: InfoQ = None,
    comments: CommentsQ = None,
    uncertain: UncertainQ = None,
    negligible: NegligibleQ = None,
    balance_calculation: BalanceQ = None,
    node_id: NodeQ = None,
    annotations: AnnotationsQ = None,
) -> SensorFields:
    """The optional sensor fields of a create or an update, as the query gives them (the
    routes add `name`, required on create)."""
    return SensorFields(
        sensor_type_id=sensor_type_id,
        sensor_eid=sensor_eid,
        lat=lat,
        lon=lon,
        node_id=node_id,
        annotations=annotations,
        info=info,
        comments=comments,
        uncertain=uncertain,
        negligible=negligible,
        balance_calculation=balance_calculation,
    )


FieldsQ = Annotated[SensorFields, Depends(_fields)]

_SENSOR_KEY_HELP = (
    "The sensor is addressed as {client_cid}.{sensor_mid}, two integers (e.g. 14.10594)."
)


@router.get(
    "/api/sensors/types",
    summary="Get list of sensor types",
    description="Using this endpoint client gets the list of all sensor types",
    operation_id="api_endpoints_sensors_get_types_api_sensors_types_get",
    responses={200: {"description": "Successfully read sensor types"}, **R401},
)
def get_types(conn: ConnDep, _user: CurrentUser) -> list[SensorTypeResponse]:
    """Every sensor type, system ones included, by id."""
    return service.list_types(conn)


@router.get(
    "/api/sensors/find",
    summary="Find sensors",
    description="Beyond the spec (the real service's older name for a sensor search): the "
    "sensors the caller can read, narrowed by every filter given, in `sensor_mid` order, "
    "each as Get sensor answers it. `name` matches a substring, ignoring case (ASCII letters "
    "on SQLite); `sensor_eid` matches exactly; `meter_eid` names the meter of the sensor's "
    "state in force now. A `client_cid` the caller cannot read is 404, as for a missing "
    "client (like Get sensor states); an unknown `sensor_type_id` is 422. Without "
    "`client_cid`, internal system clients (the weather grid's) are left out, as in GET "
    "/api/clients. Pages: `limit` "
    "(1-1000, default 100) and `offset`; a page shorter than `limit` is the last.",
    responses={200: {"description": "The matching sensors"}, **R401, **R404},
)
def find_sensors(
    conn: ConnDep,
    user: CurrentUser,
    client_cid: Annotated[int | None, Query(description="Client CID", ge=0, le=ID_MAX)] = None,
    sensor_type_id: TypeQ = None,
    name: Annotated[
        str | None, Query(description="Part of the name, case-insensitive", max_length=500)
    ] = None,
    sensor_eid: EidQ = None,
    meter_eid: Annotated[
        str | None,
        Query(description="Serial of the meter installed now (state in force)", max_length=200),
    ] = None,
    limit: Annotated[int, Query(description="Page size", ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(description="Sensors to skip", ge=0, le=ID_MAX)] = 0,
) -> list[SensorResponse]:
    """Find the caller's sensors, filtered and paginated."""
    where = SensorFilter(
        client_cid=client_cid,
        sensor_type_id=sensor_type_id,
        name=name,
        sensor_eid=sensor_eid,
        meter_eid=meter_eid,
    )
    return service.find_sensors(conn, user, where, limit=limit, offset=offset)


@router.post(
    "/api/sensors",
    status_code=201,
    summary="Create new sensor",
    description="Using this endpoint client can create new sensor in app. The server assigns "
    "`sensor_mid`; `sensor_eid` is unique per client (409); `info` is validated against the "
    "sensor type's custom fields. Beyond the spec, `node_id` and `annotations` may be given "
    "here too. Answers the created sensor.",
    operation_id="api_endpoints_sensors_post_api_sensors_post",
    responses={201: {"description": "Successfully created sensor"}, **R401, **R403, **R404, **R409},
)
def post_sensor(
    conn: ConnDep,
    user: CurrentUser,
    client_cid: Annotated[int, Query(description="Client CID", ge=0, le=ID_MAX)],
    name: NameQ,
    fields: FieldsQ,
) -> SensorResponse:
    """Create new sensor."""
    fields = replace(fields, name=name)
    return service.create_sensor(conn, user, client_cid=client_cid, fields=fields)


@router.get(
    "/api/sensors/{client_cid}.{sensor_mid}",
    summary="Get sensor",
    description="Using this endpoint client can get sensor information: every field, JSON "
    "fields as JSON values, and whether the caller may write.",
    operation_id="api_endpoints_sensors_get_id_api_sensors__client_cid___sensor_mid__get",
    responses={200: {"description": "Successfully read sensor information"}, **R401, **R404},
)
def get_sensor(
    conn: ConnDep, user: CurrentUser, client_cid: ClientPath, sensor_mid: SensorPath
) -> SensorResponse:
    """Get sensor."""
    return service.get_sensor(conn, user, client_cid, sensor_mid)


@router.put(
    "/api/sensors/{client_cid}.{sensor_mid}",
    summary="Update sensor",
    description="Using this endpoint client can update sensor data. Only the given fields "
    'change; `sensor_eid=""` clears the external id, `node_id=0` detaches the sensor from '
    "its parent, and the JSON text `null` clears `info` or `annotations`. Answers the "
    "updated sensor.",
    operation_id="api_endpoints_sensors_put_id_api_sensors__client_cid___sensor_mid__put",
    responses={200: {"description": "Successfully updated sensor"}, **R401, **R403, **R404, **R409},
)
def put_sensor(
    conn: ConnDep,
    user: CurrentUser,
    client_cid: ClientPath,
    sensor_mid: SensorPath,
    fields: FieldsQ,
    name: Annotated[
        str | None, Query(description="Name of the sensor", min_length=1, max_length=500)
    ] = None,
) -> SensorResponse:
    """Update sensor: only the given fields change."""
    fields = replace(fields, name=name)
    return service.update_sensor(conn, user, client_cid, sensor_mid, fields)


@router.delete(
    "/api/sensors/{client_cid}.{sensor_mid}",
    status_code=204,
    summary="Remove sensor",
    description="Using this endpoint client can delete sensor, with its states, signal "
    "states and all its series data, in one transaction. Its children in the sensor tree "
    "stay, detached (their node_id becomes null).",
    operation_id="api_endpoints_sensors_delete_id_api_sensors__client_cid___sensor_mid__delete",
    responses={204: {"description": "Successfully removed sensor"}, **R401, **R403, **R404},
)
def delete_sensor(
    conn: ConnDep, user: CurrentUser, client_cid: ClientPath, sensor_mid: SensorPath
) -> Response:
    """Remove sensor."""
    service.delete_sensor(conn, user, client_cid, sensor_mid)
    return Response(status_code=204)


@router.api_route(
    "/api/sensors/{sensor_key:int}", methods=["GET", "PUT", "DELETE"], include_in_schema=False
)
def malformed_sensor_key(request: Request) -> None:
    """A bare number where {client_cid}.{sensor_mid} belongs: 422 saying what is expected."""
    raise Invalid(
        f"'{request.path_params['sensor_key']}' is not a sensor address. {_SENSOR_KEY_HELP}",
        loc=("path", "sensor_mid"),
        type_="missing",
    )
