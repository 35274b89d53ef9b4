"""HTTP routes of the meter type catalog (beyond the spec; thin: parse, call the service).

Mounted by the app before the sensors router and its /api/sensors/{client_cid}.{sensor_mid}
patterns."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from besmart_server.schemas import ID_MAX
from besmart_server.schemas.sensors import MeterTypeResponse
from besmart_server.server.deps import ConnDep, CurrentUser
from besmart_server.server.errors import R401, R403, R404, R409
from besmart_server.server.meters import service
from besmart_server.server.meters.service import MeterTypeFields

router = APIRouter(tags=["Sensors"])

MeterTypePath = Annotated[int, Path(description="Meter type ID", ge=0, le=ID_MAX)]
DescriptionQ = Annotated[str | None, Query(description="Description", max_length=10_000)]
PhasesQ = Annotated[
    int | None,
    Query(
        description="Number of phases (1-3); 0 means not applicable (stored as null)", ge=0, le=3
    ),
]
AmiQ = Annotated[bool | None, Query(description="A smart meter read remotely (AMI)")]
DcuQ = Annotated[bool | None, Query(description="A data concentrator unit")]
BalanceQ = Annotated[bool | None, Query(description="A meter used for energy balance")]


def _fields(
    description: DescriptionQ = None,
    number_of_phases: PhasesQ = None,
    is_ami: AmiQ = None,
    is_dcu: DcuQ = None,
    is_balance: BalanceQ = None,
) -> MeterTypeFields:
    """The optional meter type fields of a create or an update, as the query gives them (the
    routes add `meter_type_name`, required on create)."""
    return MeterTypeFields(
        description=description,
        number_of_phases=number_of_phases,
        is_ami=is_ami,
        is_dcu=is_dcu,
        is_balance=is_balance,
    )


FieldsQ = Annotated[MeterTypeFields, Depends(_fields)]

_RULES = (
    "System types (`client_cid` null) are seeded and cannot be changed (403); a type of a "
    "client the caller cannot read is 404, exactly like a missing one; changing a client's "
    "type needs the owner role on that client (403 otherwise)."
)


@router.get(
    "/api/sensors/meters",
    summary="Get list of meter types",
    description="Beyond the spec: the meter types a sensor state's `meter_type_id` may name. "
    "Without `client_cid`: the system types and those of every client the caller can read; "
    "with it: the system types and that client's own (404 when the caller cannot read the "
    "client, as for a missing one). Sorted by id.",
    responses={200: {"description": "Meter types"}, **R401, **R404},
)
def get_meter_types(
    conn: ConnDep,
    user: CurrentUser,
    client_cid: Annotated[
        int | None,
        Query(description="Client CID: its own types and the system ones", ge=0, le=ID_MAX),
    ] = None,
) -> list[MeterTypeResponse]:
    """Meter types visible to the caller."""
    return service.list_meter_types(conn, user, client_cid=client_cid)


@router.post(
    "/api/sensors/meters",
    status_code=201,
    summary="Create meter type",
    description="Beyond the spec: a meter type of the client `client_cid` (owner role; 404 "
    "when the caller cannot read the client, 403 for a lower role). Its name must differ, "
    "ignoring case, from the system types and the client's other types (409). Answers the "
    "created type.",
    responses={
        201: {"description": "Successfully created meter type"},
        **R401,
        **R403,
        **R404,
        **R409,
    },
)
def post_meter_type(
    conn: ConnDep,
    user: CurrentUser,
    client_cid: Annotated[int, Query(description="Client CID", ge=0, le=ID_MAX)],
    meter_type_name: Annotated[
        str, Query(description="Name of the meter type", min_length=1, max_length=200)
    ],
    fields: FieldsQ,
) -> MeterTypeResponse:
    """Create meter type."""
    fields = replace(fields, meter_type_name=meter_type_name)
    return service.create_meter_type(conn, user, client_cid=client_cid, fields=fields)


@router.put(
    "/api/sensors/meters/{meter_type_id}",
    summary="Update meter type",
    description="Beyond the spec: change a client's meter type; only the given fields change. "
    f"{_RULES} A name another visible type has is 409. Answers the updated type.",
    responses={
        200: {"description": "Successfully updated meter type"},
        **R401,
        **R403,
        **R404,
        **R409,
    },
)
def put_meter_type(
    conn: ConnDep,
    user: CurrentUser,
    meter_type_id: MeterTypePath,
    fields: FieldsQ,
    meter_type_name: Annotated[
        str | None, Query(description="Name of the meter type", min_length=1, max_length=200)
    ] = None,
) -> MeterTypeResponse:
    """Update meter type: only the given fields change."""
    fields = replace(fields, meter_type_name=meter_type_name)
    return service.update_meter_type(conn, user, meter_type_id, fields)


@router.delete(
    "/api/sensors/meters/{meter_type_id}",
    status_code=204,
    summary="Remove meter type",
    description=f"Beyond the spec: remove a client's meter type. {_RULES} While a sensor "
    "state names the type: 409 (change or remove those states first).",
    responses={
        204: {"description": "Successfully removed meter type"},
        **R401,
        **R403,
        **R404,
        **R409,
    },
)
def delete_meter_type(conn: ConnDep, user: CurrentUser, meter_type_id: MeterTypePath) -> Response:
    """Remove meter type."""
    service.delete_meter_type(conn, user, meter_type_id)
    return Response(status_code=204)
