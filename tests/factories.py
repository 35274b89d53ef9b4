"""Plain factory functions with overrides: tenants, users with roles, and their tokens."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from besmart_server.server.users import service

_seq = itertools.count(1)


@dataclass(frozen=True)
class Actor:
    """A user with a token, ready to call the API."""

    user_id: int
    login: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_client(db: Database, name: str | None = None) -> int:
    with db.transaction() as conn:
        return service.create_client(conn, name=name or f"client-{next(_seq)}")


def make_user(
    db: Database,
    *,
    roles: dict[int, Role] | None = None,
    login: str | None = None,
    password: str = "correct horse battery staple",
    admin: bool = False,
    ttl_seconds: int = 7200,
) -> Actor:
    login = login or f"user-{next(_seq)}"
    with db.transaction() as conn:
        uid = service.create_user(conn, login=login, password=password, is_admin=admin)
        for cid, role in (roles or {}).items():
            service.grant_role(conn, user_id=uid, client_cid=cid, role=role)
        token = service.issue_token(conn, user_id=uid, ttl_seconds=ttl_seconds).token
    return Actor(user_id=uid, login=login, password=password, token=token)


def make_tenant(db: Database, role: Role = Role.owner) -> tuple[int, Actor]:
    """A client and a user with `role` on it."""
    cid = make_client(db)
    return cid, make_user(db, roles={cid: role})
