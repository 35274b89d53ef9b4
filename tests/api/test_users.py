"""Login, refresh, expiry, revocation, garbage tokens, throttling, API keys and roles."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from besmart_server.schemas.users import Role
from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.users import service
from besmart_server.server.users.tables import api_keys, tokens
from tests.factories import make_client, make_tenant, make_user

UNAUTHORIZED = {"detail": "Not valid authentication credentials"}


def login(client: TestClient, login: str, password: str, **kw: object) -> object:
    return client.post("/api/users/token", json={"login": login, "password": password}, **kw)


def test_login_returns_token_in_the_documented_shape(client: TestClient, db: Database) -> None:
    cid = make_client(db)
    actor = make_user(db, roles={cid: Role.read})
    before = time.time()
    res = client.post("/api/users/token", json={"login": actor.login, "password": actor.password})
    assert res.status_code == 200
    body = res.json()
    assert set(body) == {"token", "expiration", "user_id", "id"}
    assert body["user_id"] == body["id"] == actor.user_id
    assert isinstance(body["expiration"], float)
    assert before + 7200 - 5 <= body["expiration"] <= time.time() + 7200 + 5
    assert len(body["token"]) < 127
    assert len(res.content) < 2048
    me = client.get("/api/clients", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200
    assert me.json() == [
        {"client_cid": cid, "name": me.json()[0]["name"], "role": "read", "timezone": "UTC"}
    ]


def test_login_accepts_json_whatever_the_content_type(client: TestClient, db: Database) -> None:
    actor = make_user(db)
    body = f'{{"login": "{actor.login}", "password": "{actor.password}"}}'
    res = client.post(
        "/api/users/token",
        content=body,
        headers={"Content-Type": "text/plain", "X-Auth": "ignored"},
    )
    assert res.status_code == 200, res.text


def test_wrong_password_and_unknown_login_answer_alike(client: TestClient, db: Database) -> None:
    actor = make_user(db)
    wrong = client.post("/api/users/token", json={"login": actor.login, "password": "nope"})
    unknown = client.post("/api/users/token", json={"login": "nobody", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == UNAUTHORIZED
    assert wrong.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param(b"", ["body"], id="empty"),
        pytest.param(b"{not json", ["body"], id="garbage"),
        pytest.param(b'{"login": "x"}', ["body", "password"], id="missing-password"),
        pytest.param(b'{"login": 5, "password": "x"}', ["body", "login"], id="wrong-type"),
        pytest.param(b"[1, 2]", ["body"], id="not-an-object"),
    ],
)
def test_bad_login_body_is_422(client: TestClient, body: bytes, loc: list[str]) -> None:
    res = client.post("/api/users/token", content=body)
    assert res.status_code == 422
    detail = res.json()["detail"]
    assert detail[0]["loc"] == loc
    assert detail[0]["msg"]


def test_refresh_gives_a_new_working_token(client: TestClient, db: Database) -> None:
    actor = make_user(db)
    res = client.get("/api/users/token", headers=actor.headers)
    assert res.status_code == 200
    fresh = res.json()["token"]
    assert fresh != actor.token
    again = client.get("/api/users/token", headers={"Authorization": f"Bearer {fresh}"})
    assert again.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer"}, id="empty"),
        pytest.param({"Authorization": "Bearer garbage"}, id="garbage"),
        pytest.param({"Authorization": "Bearer bst_" + "A" * 43}, id="well-formed-unknown"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-scheme"),
        pytest.param({"Authorization": "Bearer " + "x" * 5000}, id="huge"),
    ],
)
def test_missing_or_garbage_token_is_401(client: TestClient, headers: dict[str, str]) -> None:
    for path in ("/api/users/token", "/api/clients"):
        res = client.get(path, headers=headers)
        assert res.status_code == 401
        assert res.json() == UNAUTHORIZED
        assert res.headers["WWW-Authenticate"] == "Bearer"


def test_expired_token_is_refused(client: TestClient, db: Database) -> None:
    actor = make_user(db)
    assert client.get("/api/clients", headers=actor.headers).status_code == 200
    with db.transaction() as conn:
        conn.execute(update(tokens).values(expires_at=int(time.time() * 1000) - 1))
    assert client.get("/api/clients", headers=actor.headers).status_code == 401


def test_revoked_token_is_refused_and_others_survive(client: TestClient, db: Database) -> None:
    actor = make_user(db)
    other = client.get("/api/users/token", headers=actor.headers).json()["token"]
    assert client.delete("/api/users/token", headers=actor.headers).status_code == 204
    assert client.get("/api/clients", headers=actor.headers).status_code == 401
    ok = client.get("/api/clients", headers={"Authorization": f"Bearer {other}"})
    assert ok.status_code == 200


def test_tokens_and_keys_are_stored_only_as_hashes(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db)
    with db.transaction() as conn:
        key = service.create_api_key(conn, client_cid=cid)
        stored = list(conn.scalars(select(tokens.c.token_hash))) + list(
            conn.scalars(select(api_keys.c.key_hash))
        )
    assert stored
    assert actor.token not in stored
    assert key not in stored
    assert all(len(h) == 64 for h in stored)


def test_api_key_is_not_a_bearer_token(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db)
    with db.transaction() as conn:
        key = service.create_api_key(conn, client_cid=cid)
    assert client.get("/api/clients", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert client.get("/api/clients", headers={"X-Auth": key}).status_code == 401
    assert client.get("/api/clients", headers={"X-Auth": actor.token}).status_code == 401


def test_api_key_authenticates_read_on_its_client_only(db: Database) -> None:
    cid = make_client(db)
    other = make_client(db)
    with db.transaction() as conn:
        key = service.create_api_key(conn, client_cid=cid)
        principal = service.authenticate_api_key(conn, key)
        assert principal.can(cid, Role.read)
        assert not principal.can(cid, Role.write)
        assert not principal.can(other, Role.read)
        assert service.revoke_api_key(conn, key)
    with db.transaction() as conn, pytest.raises(service.Unauthorized):
        service.authenticate_api_key(conn, key)


def test_roles_rank_and_admin_sees_everything(client: TestClient, db: Database) -> None:
    a, b = make_client(db), make_client(db)
    writer = make_user(db, roles={a: Role.write})
    admin = make_user(db, admin=True)
    mine = client.get("/api/clients", headers=writer.headers).json()
    assert [(c["client_cid"], c["role"]) for c in mine] == [(a, "write")]
    with db.transaction() as conn:
        system = service.create_client(conn, name="Weather (system)", is_system=True)
    everything = client.get("/api/clients", headers=admin.headers).json()
    assert {(c["client_cid"], c["role"]) for c in everything} >= {(a, "owner"), (b, "owner")}
    assert system not in {c["client_cid"] for c in everything}
    with db.transaction() as conn:
        principal = service.authenticate_token(conn, writer.token)
    assert principal.can(a, Role.read)
    assert principal.can(a, Role.write)
    assert not principal.can(a, Role.owner)
    assert not principal.can(b, Role.read)


def test_inactive_user_cannot_use_tokens(client: TestClient, db: Database) -> None:
    actor = make_user(db)
    from besmart_server.server.users.tables import users

    with db.transaction() as conn:
        conn.execute(update(users).values(is_active=False))
    assert client.get("/api/clients", headers=actor.headers).status_code == 401
    assert login(client, actor.login, actor.password).status_code == 401  # type: ignore[attr-defined]


def _throttled_client(settings: Settings, **overrides: int) -> TestClient:
    return TestClient(create_app(settings.model_copy(update=overrides)))


def test_failed_logins_are_throttled_per_login(settings: Settings, db: Database) -> None:
    actor = make_user(db)
    with _throttled_client(settings, login_max_failures=3) as client:
        for _ in range(3):
            assert login(client, actor.login, "wrong").status_code == 401  # type: ignore[attr-defined]
        res = login(client, actor.login, actor.password)
        assert res.status_code == 429  # type: ignore[attr-defined]
        retry = int(res.headers["Retry-After"])  # type: ignore[attr-defined]
        assert 1 <= retry <= settings.login_window_seconds
        other = make_user(db)
        assert login(client, other.login, other.password).status_code == 200  # type: ignore[attr-defined]


def test_failed_logins_are_throttled_per_address(settings: Settings, db: Database) -> None:
    actor = make_user(db)
    with _throttled_client(settings, login_max_failures_per_address=4) as client:
        for n in range(4):
            assert login(client, f"nobody-{n}", "wrong").status_code == 401  # type: ignore[attr-defined]
        assert login(client, actor.login, actor.password).status_code == 429  # type: ignore[attr-defined]


def test_successful_login_clears_the_login_failures(settings: Settings, db: Database) -> None:
    actor = make_user(db)
    with _throttled_client(settings, login_max_failures=3) as client:
        for _ in range(2):
            login(client, actor.login, "wrong")
        assert login(client, actor.login, actor.password).status_code == 200  # type: ignore[attr-defined]
        for _ in range(2):
            assert login(client, actor.login, "wrong").status_code == 401  # type: ignore[attr-defined]
        assert login(client, actor.login, actor.password).status_code == 200  # type: ignore[attr-defined]


def test_token_lifetime_follows_settings(settings: Settings, db: Database) -> None:
    actor = make_user(db)
    with _throttled_client(settings, token_ttl_seconds=600) as client:
        body = login(client, actor.login, actor.password).json()  # type: ignore[attr-defined]
    assert abs(body["expiration"] - (time.time() + 600)) < 5


def test_security_headers_and_body_limit(settings: Settings, db: Database) -> None:
    with _throttled_client(settings, max_body_bytes=2048) as client:
        res = client.post("/api/users/token", content=b"x" * 4096)
        assert res.status_code == 413
        assert "2048" in res.json()["detail"]
        ok = client.get("/api/clients")
        assert ok.headers["X-Content-Type-Options"] == "nosniff"
        assert ok.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/api/sensors/5.", "/api/sensors/.5", "/api/nothing-here"])
def test_unknown_paths_answer_404_with_a_json_string(client: TestClient, path: str) -> None:
    res = client.get(path)
    assert res.status_code == 404
    assert res.json() == f"Path {path} not found"


def test_wrong_method_keeps_405(client: TestClient) -> None:
    res = client.patch("/api/users/token")
    assert res.status_code == 405
    assert res.json() == {"detail": "Method Not Allowed"}
    assert res.headers["Allow"]
