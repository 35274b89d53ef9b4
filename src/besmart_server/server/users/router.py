"""Login, token refresh and revocation; the clients a caller can see."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from besmart_server.schemas import ID_MAX
from besmart_server.schemas.users import ClientRole, ClientUpdate, LoginRequest, TokenResponse
from besmart_server.server.deps import (
    ConnDep,
    CurrentUser,
    DatabaseDep,
    SettingsDep,
    bearer_token,
)
from besmart_server.server.errors import R401, R403, R404, R429, Invalid
from besmart_server.server.users import service

router = APIRouter(tags=["Users"])

_LOGIN_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": LoginRequest.model_json_schema()}},
    }
}


def _parse_login(raw: bytes) -> LoginRequest:
    try:
        return LoginRequest.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        raise Invalid(
            f"body is not valid JSON: {exc}", loc=("body",), type_="json_invalid"
        ) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Invalid(first["msg"], loc=("body", *first["loc"]), type_=str(first["type"])) from exc


@router.post(
    "/api/users/token",
    response_model=TokenResponse,
    summary="Login and get token",
    description="Client logs in to the server with login and password. "
    "As a result, they receive a token.",
    responses={
        200: {"description": "User logged in"},
        **R401,
        422: {"description": "The body is not a JSON login object"},
        **R429,
    },
    openapi_extra=_LOGIN_BODY,
)
async def post_token(request: Request, db: DatabaseDep, settings: SettingsDep) -> TokenResponse:
    """Login and get token."""
    # Public clients send JSON with any (or no) Content-Type, so the body is parsed by hand.
    body = _parse_login(await request.body())
    address = request.client.host if request.client else "unknown"
    return await run_in_threadpool(
        service.login,
        db,
        login=body.login,
        password=body.password,
        address=address,
        settings=settings,
    )


@router.get(
    "/api/users/token",
    response_model=TokenResponse,
    summary="Refresh token and get token info",
    description="Client reads endpoint to refresh the token.",
    responses={200: {"description": "Successfully token was refreshed"}, **R401},
)
def get_token(conn: ConnDep, user: CurrentUser, settings: SettingsDep) -> TokenResponse:
    """Refresh token: a fresh token for the caller; the old one stays valid until it expires."""
    assert user.user_id is not None  # bearer tokens always belong to a user
    return service.issue_token(
        conn,
        user_id=user.user_id,
        ttl_seconds=settings.token_ttl_seconds,
        pepper=settings.secret_pepper.get_secret_value(),
    )


@router.delete(
    "/api/users/token",
    status_code=204,
    summary="Revoke the token",
    description="Beyond the spec: revokes the bearer token of this request (logout).",
    responses={204: {"description": "Token revoked"}, **R401},
)
def delete_token(
    conn: ConnDep,
    _user: CurrentUser,
    token: Annotated[str, Depends(bearer_token)],
    settings: SettingsDep,
) -> Response:
    """Revoke the bearer token of this request."""
    service.revoke_token(conn, token, pepper=settings.secret_pepper.get_secret_value())
    return Response(status_code=204)


@router.get(
    "/api/clients",
    response_model=list[ClientRole],
    summary="List my clients",
    description="Beyond the spec: the clients the caller can see, with the caller's role.",
    responses={200: {"description": "Clients of the caller"}, **R401},
)
def get_clients(conn: ConnDep, user: CurrentUser) -> list[ClientRole]:
    """The clients the caller can see, each with the caller's role."""
    return service.list_client_roles(conn, user)


@router.patch(
    "/api/clients/{client_cid}",
    response_model=ClientRole,
    summary="Change a client",
    description="Beyond the spec: an owner sets the client's `timezone` (an IANA name; unknown "
    "names are 422). It is the zone the CLI counts calendar buckets in when no tz is given; "
    "the REST data routes keep UTC unless a request names `tz`.",
    responses={
        200: {"description": "The client as changed"},
        400: {"description": "The body is not text (FastAPI's answer before JSON parsing)"},
        **R401,
        **R403,
        **R404,
        422: {"description": "Validation Error"},
    },
)
def patch_client(
    conn: ConnDep,
    user: CurrentUser,
    client_cid: Annotated[int, Path(ge=0, le=ID_MAX)],
    body: ClientUpdate,
) -> ClientRole:
    """Change a client's time zone (owners)."""
    return service.set_client_timezone(conn, user, client_cid, body.timezone)
