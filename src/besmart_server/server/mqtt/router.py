"""Owners' routes for MQTT devices and the messages the bridge refused (thin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam

from besmart_server.schemas import ID_MAX
from besmart_server.schemas.devices import Device, DeviceCreate, DeviceCreated, RejectedMessage
from besmart_server.schemas.users import Role
from besmart_server.server.deps import ConnDep, CurrentUser, SettingsDep
from besmart_server.server.errors import R401, R403, R404, R409
from besmart_server.server.mqtt import broker, service

router = APIRouter(tags=["Devices"])

ClientQuery = Annotated[int | None, Query(ge=0, le=ID_MAX, description="Only this client's")]


@router.post(
    "/api/devices",
    status_code=201,
    response_model=DeviceCreated,
    summary="Add an MQTT device",
    responses={**R401, **R403, **R404, **R409},
)
def add_device(
    conn: ConnDep, user: CurrentUser, settings: SettingsDep, body: DeviceCreate
) -> DeviceCreated:
    """Add a device to a client you own; the answer holds its MQTT secret, shown once."""
    user.require(body.client_cid, Role.owner, what=f"Client {body.client_cid}")
    created = service.add_device(
        conn, name=body.name, client_cid=body.client_cid, sensor_mids=body.sensors
    )
    broker.sync_devices(conn, settings.mqtt_config_dir)
    return created


@router.get(
    "/api/devices",
    response_model=list[Device],
    summary="List MQTT devices",
    responses={**R401, **R403, **R404},
)
def list_devices(conn: ConnDep, user: CurrentUser, client_cid: ClientQuery = None) -> list[Device]:
    """Devices of the clients you own."""
    return service.list_devices(conn, service.owned_clients(user, client_cid))


@router.get(
    "/api/devices/rejected",
    response_model=list[RejectedMessage],
    summary="List refused MQTT messages",
    responses={**R401, **R403, **R404},
)
def list_rejected(
    conn: ConnDep,
    user: CurrentUser,
    client_cid: ClientQuery = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[RejectedMessage]:
    """Messages your clients' devices published that the bridge refused, newest first."""
    return service.list_rejected(conn, service.owned_clients(user, client_cid), limit=limit)


@router.delete(
    "/api/devices/{name}",
    status_code=204,
    response_class=Response,
    summary="Revoke an MQTT device",
    responses={**R401, **R403, **R404},
)
def revoke_device(
    conn: ConnDep,
    user: CurrentUser,
    settings: SettingsDep,
    name: Annotated[str, PathParam(max_length=64)],
) -> Response:
    """Revoke a device of a client you own: the broker refuses its login from now on."""
    cid = service.device_client(conn, name)
    user.require(cid, Role.owner, what=f"Device {name}")
    service.revoke_device(conn, name)
    broker.sync_devices(conn, settings.mqtt_config_dir)
    return Response(status_code=204)
