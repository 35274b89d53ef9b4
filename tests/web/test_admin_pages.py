"""Admin pages for owners: users and roles, API keys shown once, meter types; 404 for other
tenants, 403 below owner, CSRF on every change."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from tests.factories import make_tenant, make_user
from tests.web.test_pages import page_csrf, web_login

KEY = re.compile(r'<pre class="curl-out" id="new-key">(bsk_[^<]+)</pre>')


def test_owner_manages_roles_keys_and_meter_types(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    colleague = make_user(db)
    web_login(client, owner)
    assert client.get("/admin", follow_redirects=False).headers["location"] == f"/admin/{cid}"
    page = client.get(f"/admin/{cid}")
    assert page.status_code == 200
    assert owner.login in page.text
    csrf = page_csrf(client, f"/admin/{cid}")

    res = client.post(
        f"/admin/{cid}/role", data={"csrf": csrf, "login": colleague.login, "role": "write"}
    )
    assert res.status_code == 200
    assert f"<td>{colleague.login}</td><td>write</td>" in res.text
    res = client.post(f"/admin/{cid}/role", data={"csrf": csrf, "login": "nobody", "role": "read"})
    assert res.status_code == 404
    res = client.post(
        f"/admin/{cid}/role", data={"csrf": csrf, "login": colleague.login, "role": "none"}
    )
    assert f"<td>{colleague.login}</td>" not in res.text

    res = client.post(f"/admin/{cid}/key", data={"csrf": csrf, "name": "dashboard"})
    key = KEY.search(res.text)
    assert key
    weather = "/api/weather/50.06/19.94/139/data?since=0&till=3600000"
    assert client.get(weather, headers={"X-Auth": key.group(1)}).status_code != 401
    again = client.get(f"/admin/{cid}").text
    assert key.group(1) not in again  # shown once
    assert "dashboard" in again
    key_id = re.search(r'name="key_id" value="(\d+)"', again)
    assert key_id
    res = client.post(f"/admin/{cid}/revoke-key", data={"csrf": csrf, "key_id": key_id.group(1)})
    assert "revoked" in res.text
    client.cookies.clear()
    assert client.get(weather, headers={"X-Auth": key.group(1)}).status_code == 401
    web_login(client, owner)
    csrf = page_csrf(client, f"/admin/{cid}")

    form = {
        "csrf": csrf,
        "meter_type_name": "Feeder meter",
        "number_of_phases": "3",
        "is_balance": "1",
    }
    res = client.post(f"/admin/{cid}/meter-type", data=form)
    assert res.status_code == 200
    assert "<td>Feeder meter</td>" in res.text
    res = client.post(f"/admin/{cid}/meter-type", data=form)
    assert res.status_code == 409

    res = client.post(f"/admin/{cid}/timezone", data={"csrf": csrf, "timezone": "Europe/Warsaw"})
    assert res.status_code == 200
    assert 'value="Europe/Warsaw"' in res.text
    res = client.post(f"/admin/{cid}/timezone", data={"csrf": csrf, "timezone": "Mars/Base"})
    assert res.status_code == 422
    assert 'value="Europe/Warsaw"' in res.text  # unchanged


def test_changes_need_csrf(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    web_login(client, owner)
    res = client.post(f"/admin/{cid}/key", data={"name": "x"})
    assert res.status_code == 403
    assert "bsk_" not in res.text
    assert "<td>x</td>" not in client.get(f"/admin/{cid}").text


def test_other_tenants_404_and_non_owners_403(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    other_cid, _ = make_tenant(db)
    writer = make_user(db, roles={cid: Role.write})
    web_login(client, owner)
    csrf = page_csrf(client)
    assert client.get(f"/admin/{other_cid}").status_code == 404
    res = client.post(f"/admin/{other_cid}/key", data={"csrf": csrf, "name": "x"})
    assert res.status_code == 404
    assert "bsk_" not in res.text
    client.cookies.clear()
    web_login(client, writer)
    assert client.get(f"/admin/{cid}").status_code == 403
    res = client.post(f"/admin/{cid}/key", data={"csrf": page_csrf(client), "name": "x"})
    assert res.status_code == 403
    assert "You own no client" in client.get("/admin").text
