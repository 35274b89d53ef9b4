"""A client's `timezone`: UTC by default, shown by GET /api/clients, changed by owners only."""

from __future__ import annotations

from fastapi.testclient import TestClient

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from tests.factories import make_tenant, make_user


def _listed(client: TestClient, headers: dict[str, str]) -> dict[int, str]:
    r = client.get("/api/clients", headers=headers)
    assert r.status_code == 200, r.text
    return {c["client_cid"]: c["timezone"] for c in r.json()}


def test_default_utc_and_an_owner_changes_it(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db, Role.owner)
    assert _listed(client, owner.headers) == {cid: "UTC"}
    r = client.patch(
        f"/api/clients/{cid}", json={"timezone": "Europe/Warsaw"}, headers=owner.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["timezone"] == "Europe/Warsaw"
    reader = make_user(db, roles={cid: Role.read})
    assert _listed(client, reader.headers) == {cid: "Europe/Warsaw"}


def test_only_owners_and_known_zones(client: TestClient, db: Database) -> None:
    cid, writer = make_tenant(db, Role.write)
    owner = make_user(db, roles={cid: Role.owner})
    other_cid, stranger = make_tenant(db, Role.owner)
    url = f"/api/clients/{cid}"
    body = {"timezone": "Asia/Kolkata"}
    assert client.patch(url, json=body).status_code == 401
    assert client.patch(url, json=body, headers=writer.headers).status_code == 403
    assert client.patch(url, json=body, headers=stranger.headers).status_code == 404
    bad = client.patch(url, json={"timezone": "Mars/Olympus"}, headers=owner.headers)
    assert bad.status_code == 422
    assert "timezone" in str(bad.json())
    # the server machine's own setting, not a place: its meaning would move with the host
    for machine in ("localtime", "posixrules"):
        res = client.patch(url, json={"timezone": machine}, headers=owner.headers)
        assert res.status_code == 422, res.text
    assert client.patch(url, json={}, headers=owner.headers).status_code == 422
    assert _listed(client, owner.headers) == {cid: "UTC"}  # nothing changed
    assert _listed(client, stranger.headers) == {other_cid: "UTC"}
