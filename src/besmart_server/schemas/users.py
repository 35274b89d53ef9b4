"""Login, tokens, clients and roles on the wire."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class Role(StrEnum):
    """A user's rights on one client; each includes the ones before it."""

    read = "read"
    write = "write"
    owner = "owner"


ROLE_RANK = {Role.read: 1, Role.write: 2, Role.owner: 3}


class LoginRequest(BaseModel):
    """POST /api/users/token body."""

    login: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


class TokenResponse(BaseModel):
    """A bearer token and when it expires (unix seconds, float)."""

    token: str
    expiration: float
    user_id: int
    id: int


class ClientRole(BaseModel):
    """A client the caller can see, with the caller's role in it."""

    client_cid: int
    name: str
    role: Role
    timezone: str = Field(
        "UTC",
        description="IANA zone the client's calendar buckets are counted in when a read names "
        "no tz (the CLI's default; the REST routes keep UTC)",
    )


class ClientUpdate(BaseModel):
    """What an owner may change of a client."""

    timezone: str = Field(description="IANA time zone name, e.g. Europe/Warsaw")
