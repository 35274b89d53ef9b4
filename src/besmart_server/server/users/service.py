"""Users, clients, roles, tokens and API keys: plain functions over a connection."""

from __future__ import annotations

import math

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from besmart_server.schemas.users import ClientRole, Role, TokenResponse
from besmart_server.server.access import Principal
from besmart_server.server.config import Settings
from besmart_server.server.db import Database, now_ms
from besmart_server.server.errors import (
    Conflict,
    Invalid,
    NotFound,
    Throttled,
    Unauthorized,
)
from besmart_server.server.signals import calendar
from besmart_server.server.users import security
from besmart_server.server.users.tables import (
    api_keys,
    clients,
    login_failures,
    tokens,
    user_roles,
    users,
)

# --- clients and users -----------------------------------------------------------------


def create_client(conn: Connection, *, name: str, is_system: bool = False) -> int:
    """A new tenant; returns its client_cid."""
    result = conn.execute(
        insert(clients)
        .values(name=name, is_system=is_system, created_at=now_ms())
        .returning(clients.c.cid)
    )
    return int(result.scalar_one())


def client_exists(conn: Connection, client_cid: int) -> bool:
    """Whether a client with this cid exists."""
    return conn.scalar(select(clients.c.cid).where(clients.c.cid == client_cid)) is not None


def create_user(conn: Connection, *, login: str, password: str, is_admin: bool = False) -> int:
    """A new user (409 when the login is taken); returns the user id."""
    if conn.scalar(select(users.c.id).where(users.c.login == login)) is not None:
        raise Conflict(f"User {login} already exists")
    result = conn.execute(
        insert(users)
        .values(
            login=login,
            password_hash=security.hash_password(password),
            is_admin=is_admin,
            is_active=True,
            created_at=now_ms(),
        )
        .returning(users.c.id)
    )
    return int(result.scalar_one())


def user_id_by_login(conn: Connection, login: str) -> int:
    """The id of a user by login (404 when none)."""
    uid = conn.scalar(select(users.c.id).where(users.c.login == login))
    if uid is None:
        raise NotFound(f"User {login} not found")
    return int(uid)


def grant_role(conn: Connection, *, user_id: int, client_cid: int, role: Role) -> None:
    """Give (or change) a user's role on a client."""
    if not client_exists(conn, client_cid):
        raise NotFound(f"Client {client_cid} not found")
    conn.execute(
        delete(user_roles).where(
            user_roles.c.user_id == user_id, user_roles.c.client_cid == client_cid
        )
    )
    conn.execute(insert(user_roles).values(user_id=user_id, client_cid=client_cid, role=role.value))


def list_client_roles(conn: Connection, principal: Principal) -> list[ClientRole]:
    """The tenants the caller can see, each with the caller's role, by cid (system clients,
    such as the weather grid's, are internal and never listed)."""
    query = (
        select(clients.c.cid, clients.c.name, clients.c.timezone)
        .where(clients.c.is_system.is_(False))
        .order_by(clients.c.cid)
    )
    if not principal.is_admin:
        query = query.where(clients.c.cid.in_(list(principal.roles)))
    result = []
    for cid, name, tz in conn.execute(query):
        role = principal.role_in(cid)
        if role is not None:
            result.append(ClientRole(client_cid=cid, name=name, role=role, timezone=tz))
    return result


def set_client_timezone(
    conn: Connection, principal: Principal, client_cid: int, timezone: str
) -> ClientRole:
    """Change a client's time zone (owners only): 404 unseen, 403 below owner, 422 unknown."""
    what = f"Client {client_cid}"
    principal.require(client_cid, Role.owner, what=what)
    row = conn.execute(
        select(clients.c.name).where(clients.c.cid == client_cid, clients.c.is_system.is_(False))
    ).first()
    if row is None:
        raise NotFound(f"{what} not found")
    try:
        calendar.zone(timezone)
    except calendar.CalendarError as exc:
        raise Invalid(str(exc), loc=("body", "timezone")) from exc
    conn.execute(update(clients).where(clients.c.cid == client_cid).values(timezone=timezone))
    return ClientRole(client_cid=client_cid, name=row.name, role=Role.owner, timezone=timezone)


def client_timezone(conn: Connection, client_cid: int) -> str:
    """A client's time zone name (UTC for a client that does not exist)."""
    tz = conn.scalar(select(clients.c.timezone).where(clients.c.cid == client_cid))
    return str(tz) if tz else "UTC"


# --- tokens ----------------------------------------------------------------------------


def issue_token(
    conn: Connection, *, user_id: int, ttl_seconds: int, pepper: str = "", kind: str = "session"
) -> TokenResponse:
    """Store the digest of a new random token and return the token once."""
    token = security.new_token()
    now = now_ms()
    expires_at = now + ttl_seconds * 1000
    conn.execute(
        insert(tokens).values(
            user_id=user_id,
            token_hash=security.digest(token, pepper),
            kind=kind,
            created_at=now,
            expires_at=expires_at,
        )
    )
    return TokenResponse(token=token, expiration=expires_at / 1000.0, user_id=user_id, id=user_id)


# Built once: every authenticated request runs it, and building the statement cost about as
# much as executing it (SQLAlchemy's construction and cache key, ~0.1 ms).
_TOKEN_PRINCIPAL = (
    select(
        tokens.c.expires_at,
        tokens.c.revoked_at,
        users.c.id,
        users.c.login,
        users.c.is_admin,
        users.c.is_active,
        user_roles.c.client_cid,
        user_roles.c.role,
    )
    .select_from(
        tokens.join(users, users.c.id == tokens.c.user_id).outerjoin(
            user_roles, user_roles.c.user_id == users.c.id
        )
    )
    .where(tokens.c.token_hash == bindparam("token_hash"))
)


def authenticate_token(conn: Connection, token: str, *, pepper: str = "") -> Principal:
    """The principal of a valid bearer token; 401 for unknown, expired or revoked ones.

    One statement (token, user and roles joined, a row per role): every authenticated request
    pays it, and on PostgreSQL each statement is a round trip."""
    if not token.startswith(security.TOKEN_PREFIX) or len(token) > 200:
        raise Unauthorized()
    rows = conn.execute(_TOKEN_PRINCIPAL, {"token_hash": security.digest(token, pepper)}).all()
    if not rows:
        raise Unauthorized()
    first = rows[0]
    if first.revoked_at is not None or first.expires_at <= now_ms() or not first.is_active:
        raise Unauthorized()
    roles = {int(r.client_cid): Role(r.role) for r in rows if r.client_cid is not None}
    return Principal(
        user_id=int(first.id), login=first.login, is_admin=bool(first.is_admin), roles=roles
    )


def revoke_token(conn: Connection, token: str, *, pepper: str = "") -> bool:
    """Revoke one token; False when it was unknown or already revoked."""
    result = conn.execute(
        update(tokens)
        .where(tokens.c.token_hash == security.digest(token, pepper), tokens.c.revoked_at.is_(None))
        .values(revoked_at=now_ms())
    )
    return result.rowcount > 0


def revoke_user_tokens(conn: Connection, *, user_id: int) -> int:
    """Revoke every live token of a user; returns how many."""
    result = conn.execute(
        update(tokens)
        .where(tokens.c.user_id == user_id, tokens.c.revoked_at.is_(None))
        .values(revoked_at=now_ms())
    )
    return int(result.rowcount)


# --- login with throttling ---------------------------------------------------------------


def _check_throttle(conn: Connection, *, login: str, address: str, settings: Settings) -> None:
    window_start = now_ms() - settings.login_window_seconds * 1000
    for column, key, limit in (
        (login_failures.c.login, login, settings.login_max_failures),
        (login_failures.c.address, address, settings.login_max_failures_per_address),
    ):
        count, oldest = conn.execute(
            select(func.count(), func.min(login_failures.c.at)).where(
                column == key, login_failures.c.at > window_start
            )
        ).one()
        if count >= limit:
            retry_ms = int(oldest) + settings.login_window_seconds * 1000 - now_ms()
            raise Throttled(
                "Too many failed logins; try again later",
                retry_after=max(1, math.ceil(retry_ms / 1000)),
            )


def login(
    db: Database, *, login: str, password: str, address: str, settings: Settings
) -> TokenResponse:
    """Check credentials and issue a token; failures are recorded even though the call fails."""
    pepper = settings.secret_pepper.get_secret_value()
    with db.transaction() as conn:
        _check_throttle(conn, login=login, address=address, settings=settings)
        row = conn.execute(
            select(users.c.id, users.c.password_hash, users.c.is_active).where(
                users.c.login == login
            )
        ).first()
        ok = security.verify_password(row.password_hash if row else None, password)
        if row is not None and ok and row.is_active:
            conn.execute(delete(login_failures).where(login_failures.c.login == login))
            conn.execute(
                delete(tokens).where(
                    tokens.c.user_id == row.id, tokens.c.expires_at < now_ms() - 86_400_000
                )
            )
            return issue_token(
                conn, user_id=int(row.id), ttl_seconds=settings.token_ttl_seconds, pepper=pepper
            )
    # Recorded in its own transaction: the failed request must not roll it back.
    with db.transaction() as conn:
        conn.execute(
            delete(login_failures).where(
                login_failures.c.at < now_ms() - settings.login_window_seconds * 1000
            )
        )
        conn.execute(insert(login_failures).values(login=login, address=address, at=now_ms()))
    raise Unauthorized()


# --- API keys --------------------------------------------------------------------------


def create_api_key(
    conn: Connection, *, client_cid: int, name: str | None = None, pepper: str = ""
) -> str:
    """A new API key for one client; only its digest is stored, the key is returned once."""
    if not client_exists(conn, client_cid):
        raise NotFound(f"Client {client_cid} not found")
    key = security.new_api_key()
    conn.execute(
        insert(api_keys).values(
            client_cid=client_cid,
            key_hash=security.digest(key, pepper),
            name=name,
            created_at=now_ms(),
        )
    )
    return key


def authenticate_api_key(conn: Connection, key: str, *, pepper: str = "") -> Principal:
    """A read-only principal on the key's client; 401 for unknown or revoked keys."""
    if not key.startswith(security.API_KEY_PREFIX) or len(key) > 200:
        raise Unauthorized()
    row = conn.execute(
        select(api_keys.c.client_cid, api_keys.c.revoked_at).where(
            api_keys.c.key_hash == security.digest(key, pepper)
        )
    ).first()
    if row is None or row.revoked_at is not None:
        raise Unauthorized()
    return Principal(user_id=None, login=None, roles={int(row.client_cid): Role.read})


def revoke_api_key(conn: Connection, key: str, *, pepper: str = "") -> bool:
    """Revoke an API key; False when unknown or already revoked."""
    result = conn.execute(
        update(api_keys)
        .where(api_keys.c.key_hash == security.digest(key, pepper), api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now_ms())
    )
    return result.rowcount > 0
