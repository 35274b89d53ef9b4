"""MQTT devices of a client, for its owners: list, add (username and secret shown once),
revoke, and the messages the bridge refused.

The same calls as `/api/devices` (`mqtt.service`, then `mqtt.broker.sync_devices` inside the
transaction); the same rules as the admin pages: a client the user cannot see is 404 (no
leak), one the user only reads or writes is 403, every form carries the session's CSRF
token, and a device of another client answers exactly like a missing one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy import Connection

from besmart_server.server.deps import ConnDep, SettingsDep
from besmart_server.server.errors import AppError, Forbidden, NotFound
from besmart_server.server.mqtt import broker, service, topics
from besmart_server.server.users import security
from besmart_server.server.users import service as users
from besmart_server.web.admin import require_owner
from besmart_server.web.router import CidPath, Session, SessionDep, form_fields, not_found_page
from besmart_server.web.router import render as render_page

router = APIRouter(include_in_schema=False)

REFUSED_SHOWN = 20


def _sensor_mids(text: str) -> list[int] | None:
    """'3, 4 7' → [3, 4, 7]; empty: every sensor of the client (None)."""
    parts = text.replace(",", " ").split()
    if not parts:
        return None
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"sensors: {text!r} is not a list of sensor_mids (e.g. 3, 4, 7)") from None


def _page(
    request: Request,
    conn: Connection,
    s: Session,
    client_cid: int,
    *,
    status: int = 200,
    **extra: Any,
) -> Response:
    clients = users.list_client_roles(conn, s.principal)
    return render_page(
        request,
        "devices.html",
        {
            "cid": client_cid,
            "current": next((c for c in clients if c.client_cid == client_cid), None),
            "devices": service.list_devices(conn, [client_cid]),
            "refused": service.list_rejected(conn, [client_cid], limit=REFUSED_SHOWN),
            "prefix": topics.PREFIX,
            **extra,
        },
        s=s,
        status=status,
    )


def _denied(request: Request, s: Session, exc: AppError) -> Response:
    if isinstance(exc, Forbidden):
        return render_page(request, "not_found.html", {"detail": exc.detail}, s=s, status=403)
    return not_found_page(request, s, str(exc.detail))


@router.get("/admin/{client_cid}/devices")
def devices_page(request: Request, conn: ConnDep, s: SessionDep, client_cid: CidPath) -> Response:
    """A client's MQTT devices and the messages the bridge refused (owners only)."""
    try:
        require_owner(conn, s, client_cid)
    except (NotFound, Forbidden) as exc:
        return _denied(request, s, exc)
    return _page(request, conn, s, client_cid)


@router.post("/admin/{client_cid}/devices/{action}")
async def devices_action(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    s: SessionDep,
    client_cid: CidPath,
    action: str,
) -> Response:
    """`add` (the secret is in this answer only) or `revoke`. CSRF-checked; owners only."""
    form = await form_fields(request)
    pepper = settings.secret_pepper.get_secret_value()
    if not security.csrf_matches(s.token, form.get("csrf"), pepper):
        return Response("CSRF token missing or wrong", status_code=403, media_type="text/plain")
    try:
        require_owner(conn, s, client_cid)
    except (NotFound, Forbidden) as exc:
        return _denied(request, s, exc)
    try:
        if action == "add":
            created = service.add_device(
                conn,
                name=form.get("name", "").strip(),
                client_cid=client_cid,
                sensor_mids=_sensor_mids(form.get("sensors", "")),
            )
            broker.sync_devices(conn, settings.mqtt_config_dir)
            return _page(request, conn, s, client_cid, created=created)
        if action == "revoke":
            name = form.get("name", "")
            if service.device_client(conn, name) != client_cid:
                raise NotFound(f"Device {name} not found")  # another client's: as if missing
            changed = service.revoke_device(conn, name)
            broker.sync_devices(conn, settings.mqtt_config_dir)
            notice = f"Device {name} revoked." if changed else f"Device {name} was revoked already."
            return _page(request, conn, s, client_cid, notice=notice)
    except AppError as exc:  # raised before anything is written (checks come first)
        return _page(request, conn, s, client_cid, status=exc.status, error=str(exc.detail))
    except ValueError as exc:
        return _page(request, conn, s, client_cid, status=422, error=str(exc))
    return not_found_page(request, s, f"No action {action}")
