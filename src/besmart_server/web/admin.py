"""Client administration for owners: users and their roles, API keys (shown once), meter types.

Every action needs the owner role on the client: a client the user cannot see is 404 (no
leak), one the user only reads or writes is 403; every form carries the session's CSRF token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import Connection, delete, select, update

from besmart_server.schemas.users import Role
from besmart_server.server.db import now_ms
from besmart_server.server.deps import ConnDep, SettingsDep
from besmart_server.server.errors import AppError, Forbidden, NotFound
from besmart_server.server.meters import service as meters
from besmart_server.server.users import security
from besmart_server.server.users import service as users
from besmart_server.server.users.tables import api_keys, user_roles
from besmart_server.server.users.tables import users as users_table
from besmart_server.web.router import (
    CidPath,
    Session,
    SessionDep,
    form_fields,
    not_found_page,
    render,
)

router = APIRouter(include_in_schema=False)


def require_owner(conn: Connection, s: Session, client_cid: int) -> None:
    """404 for a client the user cannot see (or that does not exist), 403 below owner."""
    s.principal.require(client_cid, Role.owner, what=f"Client {client_cid}")
    if not users.client_exists(conn, client_cid):  # admins pass `require` for any cid
        raise NotFound(f"Client {client_cid} not found")


def members(conn: Connection, client_cid: int) -> list[dict[str, Any]]:
    """The users with a role on the client, by login."""
    rows = conn.execute(
        select(users_table.c.id, users_table.c.login, user_roles.c.role)
        .select_from(user_roles.join(users_table, users_table.c.id == user_roles.c.user_id))
        .where(user_roles.c.client_cid == client_cid)
        .order_by(users_table.c.login)
    )
    return [{"user_id": int(r.id), "login": r.login, "role": r.role} for r in rows]


def keys(conn: Connection, client_cid: int) -> list[dict[str, Any]]:
    """The client's API keys (never the keys themselves: only their digests are stored)."""
    rows = conn.execute(
        select(api_keys.c.id, api_keys.c.name, api_keys.c.created_at, api_keys.c.revoked_at)
        .where(api_keys.c.client_cid == client_cid)
        .order_by(api_keys.c.id.desc())
    )
    return [dict(r._mapping) for r in rows]


def _page(
    request: Request,
    conn: Connection,
    s: Session,
    client_cid: int,
    *,
    status: int = 200,
    **extra: Any,
) -> Response:
    clients = [c for c in users.list_client_roles(conn, s.principal) if c.role == Role.owner]
    return render(
        request,
        "admin.html",
        {
            "cid": client_cid,
            "owned": clients,
            "current": next((c for c in clients if c.client_cid == client_cid), None),
            "members": members(conn, client_cid),
            "keys": keys(conn, client_cid),
            "meter_types": [
                m
                for m in meters.list_meter_types(conn, s.principal, client_cid=client_cid)
                if m.client_cid == client_cid
            ],
            "roles": [r.value for r in Role],
            "timezone": users.client_timezone(conn, client_cid),
            **extra,
        },
        s=s,
        status=status,
    )


@router.get("/admin")
def admin_home(request: Request, conn: ConnDep, s: SessionDep) -> Response:
    """The first client the user owns (or a note that there is none)."""
    owned = [c for c in users.list_client_roles(conn, s.principal) if c.role == Role.owner]
    if not owned:
        return render(request, "admin.html", {"owned": [], "current": None}, s=s)
    return RedirectResponse(f"/admin/{owned[0].client_cid}", status_code=303)


@router.get("/admin/{client_cid}")
def admin_page(request: Request, conn: ConnDep, s: SessionDep, client_cid: CidPath) -> Response:
    """A client's users and roles, API keys and meter types (owners only)."""
    try:
        require_owner(conn, s, client_cid)
    except NotFound as exc:
        return not_found_page(request, s, str(exc.detail))
    except Forbidden as exc:
        return render(request, "not_found.html", {"detail": exc.detail}, s=s, status=403)
    return _page(request, conn, s, client_cid)


@router.post("/admin/{client_cid}/{action}")
async def admin_action(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    s: SessionDep,
    client_cid: CidPath,
    action: str,
) -> Response:
    """One change: `role` (grant or remove), `key` (create, shown once), `revoke-key`,
    `timezone` (the client's calendar), `meter-type` (create). CSRF-checked; owners only."""
    form = await form_fields(request)
    pepper = settings.secret_pepper.get_secret_value()
    if not security.csrf_matches(s.token, form.get("csrf"), pepper):
        return Response("CSRF token missing or wrong", status_code=403, media_type="text/plain")
    try:
        require_owner(conn, s, client_cid)
    except NotFound as exc:
        return not_found_page(request, s, str(exc.detail))
    except Forbidden as exc:
        return render(request, "not_found.html", {"detail": exc.detail}, s=s, status=403)
    try:
        if action == "role":
            uid = users.user_id_by_login(conn, form.get("login", "").strip())
            if form.get("role") == "none":
                conn.execute(
                    delete(user_roles).where(
                        user_roles.c.user_id == uid, user_roles.c.client_cid == client_cid
                    )
                )
                return _page(request, conn, s, client_cid, notice="Role removed.")
            users.grant_role(conn, user_id=uid, client_cid=client_cid, role=Role(form["role"]))
            return _page(request, conn, s, client_cid, notice="Role granted.")
        if action == "key":
            key = users.create_api_key(
                conn, client_cid=client_cid, name=form.get("name") or None, pepper=pepper
            )
            return _page(request, conn, s, client_cid, new_key=key)
        if action == "revoke-key":
            conn.execute(
                update(api_keys)
                .where(
                    api_keys.c.id == int(form.get("key_id", "0") or 0),
                    api_keys.c.client_cid == client_cid,
                    api_keys.c.revoked_at.is_(None),
                )
                .values(revoked_at=now_ms())
            )
            return _page(request, conn, s, client_cid, notice="API key revoked.")
        if action == "timezone":
            users.set_client_timezone(conn, s.principal, client_cid, form.get("timezone", ""))
            return _page(request, conn, s, client_cid, notice="Time zone changed.")
        if action == "meter-type":
            phases = form.get("number_of_phases", "")
            meters.create_meter_type(
                conn,
                s.principal,
                client_cid=client_cid,
                fields=meters.MeterTypeFields(
                    meter_type_name=form.get("meter_type_name") or None,
                    description=form.get("description") or None,
                    number_of_phases=int(phases) if phases.isdigit() else None,
                    is_ami=form.get("is_ami") == "1",
                    is_dcu=form.get("is_dcu") == "1",
                    is_balance=form.get("is_balance") == "1",
                ),
            )
            return _page(request, conn, s, client_cid, notice="Meter type added.")
    except AppError as exc:  # raised before anything is written (checks come first)
        return _page(request, conn, s, client_cid, status=exc.status, error=str(exc.detail))
    except (ValueError, KeyError) as exc:
        return _page(request, conn, s, client_cid, status=422, error=f"Invalid input: {exc}")
    return not_found_page(request, s, f"No action {action}")
