"""The MQTT devices page for owners: list, add (username and secret shown once), revoke,
refused messages; 404 for other tenants (their devices included), 403 below owner, CSRF on
every change, and the broker's password file kept in step as /api/devices keeps it."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from besmart_server.schemas.users import Role
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.mqtt import broker, passwords, service
from besmart_server.server.mqtt.service import Message
from besmart_server.server.mqtt.tables import devices
from besmart_server.server.signals.store import SeriesStore
from tests.api.signal_helpers import T0, make_sensor, moid
from tests.factories import make_tenant, make_user
from tests.web.test_accessibility import _Audit
from tests.web.test_pages import page_csrf, web_login

SECRET = re.compile(r'<pre class="curl-out" id="new-secret">([^<]+)</pre>')


@pytest.fixture
def broker_dir(tmp_path: Path) -> Path:
    root = tmp_path / "broker"
    broker.write_config(root, [], port=1883)
    return root


@pytest.fixture
def settings(database_url: str, broker_dir: Path) -> Settings:
    return Settings(database_url=database_url, demo=False, mqtt_config_dir=str(broker_dir))


def main(page: str) -> str:
    found = re.search(r"<main id=\"main\">(.*)</main>", page, re.S)
    assert found
    return found.group(1)


def device_count(db: Database) -> int:
    with db.transaction(write=False) as conn:
        return int(conn.scalar(select(func.count()).select_from(devices)) or 0)


def test_owner_adds_lists_and_revokes_a_device(
    client: TestClient, db: Database, broker_dir: Path
) -> None:
    cid, owner = make_tenant(db)
    m1, m2 = make_sensor(db, cid), make_sensor(db, cid)
    web_login(client, owner)
    assert f'href="/admin/{cid}/devices"' in client.get(f"/admin/{cid}").text
    page = client.get(f"/admin/{cid}/devices")
    assert page.status_code == 200
    assert "No devices." in page.text
    csrf = page_csrf(client, f"/admin/{cid}/devices")

    res = client.post(
        f"/admin/{cid}/devices/add", data={"csrf": csrf, "name": "gw-17", "sensors": f"{m1}, {m2}"}
    )
    assert res.status_code == 200
    secret = SECRET.search(res.text)
    assert secret
    assert '<code id="new-username">gw-17</code>' in res.text
    # The same device the API lists, with the sensors it was given; the broker can log it in.
    listed = client.get("/api/devices", params={"client_cid": cid}).json()
    assert [(d["name"], d["sensors"], d["revoked_at"]) for d in listed] == [
        ("gw-17", sorted([m1, m2]), None)
    ]
    line = next(
        x for x in (broker_dir / "passwd").read_text().splitlines() if x.startswith("gw-17:")
    )
    assert passwords.verify(secret.group(1), line.split(":", 1)[1])

    again = client.get(f"/admin/{cid}/devices").text
    assert secret.group(1) not in again  # shown once
    assert "<td>gw-17</td>" in again
    assert "active" in again

    res = client.post(f"/admin/{cid}/devices/revoke", data={"csrf": csrf, "name": "gw-17"})
    assert res.status_code == 200
    assert "Device gw-17 revoked." in res.text
    assert "revoked 20" in res.text
    assert "gw-17:" not in (broker_dir / "passwd").read_text()
    res = client.post(f"/admin/{cid}/devices/revoke", data={"csrf": csrf, "name": "gw-17"})
    assert "was revoked already" in res.text


def test_bad_input_is_a_clear_error_that_changes_nothing(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    other_cid, _ = make_tenant(db)
    foreign = make_sensor(db, other_cid)
    web_login(client, owner)
    csrf = page_csrf(client, f"/admin/{cid}/devices")
    cases = [
        ({"name": "bad name/#"}, 422, "is not a device name"),
        ({"name": "gw-1", "sensors": "3, x"}, 422, "is not a list of sensor_mids"),
        ({"name": "gw-1", "sensors": str(foreign)}, 422, f"{foreign} is not a sensor of client"),
        ({"name": ""}, 422, "is not a device name"),
    ]
    for form, status, says in cases:
        res = client.post(f"/admin/{cid}/devices/add", data={"csrf": csrf, **form})
        assert res.status_code == status, form
        assert says in res.text, form
    assert device_count(db) == 0
    client.post(f"/admin/{cid}/devices/add", data={"csrf": csrf, "name": "gw-1"})
    res = client.post(f"/admin/{cid}/devices/add", data={"csrf": csrf, "name": "gw-1"})
    assert res.status_code == 409
    assert "already exists" in res.text
    assert device_count(db) == 1
    res = client.post(f"/admin/{cid}/devices/remove", data={"csrf": csrf, "name": "gw-1"})
    assert res.status_code == 404


def test_changes_need_the_csrf_token(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    web_login(client, owner)
    for data in ({"name": "gw-2"}, {"name": "gw-2", "csrf": "forged"}):
        res = client.post(f"/admin/{cid}/devices/add", data=data)
        assert res.status_code == 403
    assert device_count(db) == 0


def test_other_tenants_and_their_devices_are_not_found_and_non_owners_are_refused(
    client: TestClient, db: Database
) -> None:
    cid, owner = make_tenant(db)
    theirs, _ = make_tenant(db)
    with db.transaction() as conn:
        service.add_device(conn, name="their-gw", client_cid=theirs, sensor_mids=None)
    web_login(client, owner)
    csrf = page_csrf(client, f"/admin/{cid}/devices")
    missing = client.get("/admin/999999/devices")
    assert missing.status_code == 404
    other = client.get(f"/admin/{theirs}/devices")
    assert other.status_code == 404
    assert main(other.text).replace(str(theirs), "X") == main(missing.text).replace("999999", "X")
    res = client.post(f"/admin/{theirs}/devices/revoke", data={"csrf": csrf, "name": "their-gw"})
    assert res.status_code == 404
    # Another client's device through one's own client: the same answer as a missing one.
    res = client.post(f"/admin/{cid}/devices/revoke", data={"csrf": csrf, "name": "their-gw"})
    nothing = client.post(f"/admin/{cid}/devices/revoke", data={"csrf": csrf, "name": "no-gw"})
    assert res.status_code == nothing.status_code == 404
    assert "their-gw" not in client.get(f"/admin/{cid}/devices").text
    with db.transaction(write=False) as conn:
        assert service.list_devices(conn, [theirs])[0].revoked_at is None

    writer = make_user(db, roles={cid: Role.write})
    client.cookies.clear()
    web_login(client, writer)
    assert client.get(f"/admin/{cid}/devices").status_code == 403
    csrf = page_csrf(client, "/grid")
    res = client.post(f"/admin/{cid}/devices/add", data={"csrf": csrf, "name": "gw-3"})
    assert res.status_code == 403
    assert device_count(db) == 1


def test_refused_messages_are_listed_with_their_reason(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    mid = make_sensor(db, cid)
    with db.transaction() as conn:
        service.add_device(conn, name="gw-r", client_cid=cid, sensor_mids=[mid])
    bad = Message(f"besmart/v1/gw-r/{mid}/{moid('A+')}", orjson.dumps({"value": 1}), T0)
    with db.transaction() as conn:
        service.ingest(conn, SeriesStore(db.dialect), [bad], settings=Settings(demo=False))
    web_login(client, owner)
    page = client.get(f"/admin/{cid}/devices").text
    assert "field required: time" in page
    assert f"besmart/v1/gw-r/{mid}/" in page


def test_the_page_is_labelled_and_navigable(client: TestClient, db: Database) -> None:
    """The structure tests/web/test_accessibility.py asks of every page, here of this one with
    a device shown once and a refused message in its tables."""
    cid, owner = make_tenant(db)
    web_login(client, owner)
    csrf = page_csrf(client, f"/admin/{cid}/devices")
    res = client.post(f"/admin/{cid}/devices/add", data={"csrf": csrf, "name": "gw-a"})
    for text in (res.text, client.get(f"/admin/{cid}/devices").text):
        audit = _Audit()
        audit.feed(text)
        assert (audit.lang, audit.skip, audit.main, audit.h1) == (True, True, True, 1)
        assert audit.problems == []
