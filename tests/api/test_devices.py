"""MQTT devices over REST, and `ingest` (the bridge's transaction) against the real store:
what it stores, de-duplicates and dead-letters. The broker end to end is tests/mqtt."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from besmart_server.schemas.users import Role
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.mqtt import service
from besmart_server.server.mqtt.service import IngestResult, Message
from besmart_server.server.mqtt.tables import mqtt_rejected
from besmart_server.server.signals.store import SeriesStore
from tests.api.signal_helpers import T0, Q, get, make_sensor, moid
from tests.factories import Actor, make_tenant, make_user

A_PLUS = moid("A+")
P_PLUS = moid("P+")


def add(client: TestClient, a: Actor, cid: int, name: str, **extra: Any) -> Any:
    r = client.post(
        "/api/devices", json={"name": name, "client_cid": cid, **extra}, headers=a.headers
    )
    assert r.status_code == 201, r.text
    return r.json()


def ingest(db: Database, *msgs: tuple[str, Any]) -> IngestResult:
    """One bridge batch: (topic, payload) pairs; dict payloads are JSON-encoded."""
    batch = [Message(t, p if isinstance(p, bytes) else orjson.dumps(p), T0 + 7) for t, p in msgs]
    with db.transaction() as conn:
        return service.ingest(conn, SeriesStore(db.dialect), batch, settings=Settings(demo=False))


def stored(client: TestClient, a: Actor, cid: int, mid: int, m: int = A_PLUS) -> dict[str, Any]:
    """Every version stored in the window (raw read, not only the newest)."""
    body = get(client, a.headers, cid, mid, m, T0 - Q, T0 + 100 * Q)
    data: dict[str, Any] = body["data"]
    return data


def rejected(db: Database) -> list[tuple[str, str]]:
    with db.transaction(write=False) as conn:
        rows = conn.execute(
            select(mqtt_rejected.c.topic, mqtt_rejected.c.reason).order_by(mqtt_rejected.c.id)
        )
        return [(str(t), str(r)) for t, r in rows]


@pytest.fixture
def owner(db: Database) -> tuple[int, int, int, Actor]:
    """A client with two sensors and its owner."""
    cid, a = make_tenant(db, Role.owner)
    return cid, make_sensor(db, cid), make_sensor(db, cid), a


# --- REST -----------------------------------------------------------------------------------


def test_owner_adds_lists_and_revokes_a_device(
    client: TestClient, owner: tuple[int, int, int, Actor]
) -> None:
    cid, m1, _m2, a = owner
    created = add(client, a, cid, "gw-1", sensors=[m1])
    assert created["username"] == "gw-1"
    assert len(created["secret"]) >= 32
    assert created["topic_prefix"] == "besmart/v1/gw-1/"
    assert created["sensors"] == [m1]
    listed = client.get("/api/devices", headers=a.headers).json()
    assert [(d["name"], d["sensors"], d["revoked_at"]) for d in listed] == [("gw-1", [m1], None)]
    assert "secret" not in listed[0]
    assert client.delete("/api/devices/gw-1", headers=a.headers).status_code == 204
    assert client.get("/api/devices", headers=a.headers).json()[0]["revoked_at"] is not None


def test_device_names_are_unique_and_sensors_must_be_the_clients(
    client: TestClient, db: Database, owner: tuple[int, int, int, Actor]
) -> None:
    cid, m1, _, a = owner
    other_cid, _ = make_tenant(db)
    foreign = make_sensor(db, other_cid)
    add(client, a, cid, "gw-1")
    again = {"name": "gw-1", "client_cid": cid}
    assert client.post("/api/devices", json=again, headers=a.headers).status_code == 409
    bad = {"name": "gw-2", "client_cid": cid, "sensors": [m1, foreign]}
    r = client.post("/api/devices", json=bad, headers=a.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "sensors", 1]
    for name in ("a/b", "a+b", "#", "", "besmart-bridge"):
        r = client.post("/api/devices", json={"name": name, "client_cid": cid}, headers=a.headers)
        assert r.status_code == 422, name


def test_only_owners_manage_devices(
    client: TestClient, db: Database, owner: tuple[int, int, int, Actor]
) -> None:
    cid, _, _, a = owner
    add(client, a, cid, "gw-1")
    writer = make_user(db, roles={cid: Role.write})
    stranger = make_user(db)
    body = {"name": "gw-2", "client_cid": cid}
    assert client.post("/api/devices", json=body, headers=writer.headers).status_code == 403
    assert client.post("/api/devices", json=body, headers=stranger.headers).status_code == 404
    assert client.delete("/api/devices/gw-1", headers=writer.headers).status_code == 403
    assert client.delete("/api/devices/gw-1", headers=stranger.headers).status_code == 404
    assert client.get("/api/devices", headers=stranger.headers).json() == []
    assert client.get("/api/devices", params={"client_cid": cid}).status_code == 401
    r = client.get("/api/devices/rejected", params={"client_cid": cid}, headers=writer.headers)
    assert r.status_code == 403


# --- ingest ---------------------------------------------------------------------------------


def test_readings_of_every_shape_are_stored_through_the_write_path(
    client: TestClient, db: Database, owner: tuple[int, int, int, Actor]
) -> None:
    cid, m1, _, a = owner
    add(client, a, cid, "gw-1")
    topic = f"besmart/v1/gw-1/{m1}/{A_PLUS}"
    res = ingest(
        db,
        (topic, {"time": T0, "value": 1.5}),
        (topic, {"time": T0 + Q, "value": 2500, "unit": "Wh", "id": "r-2"}),  # converted
        (topic, {"time": [T0 + 2 * Q, T0 + 3 * Q], "value": [3, 4], "origin": [1, 1]}),
        (f"besmart/v1/gw-1/{m1}/{P_PLUS}", b"7.25"),
    )
    assert (res.stored, res.duplicates, res.rejected, res.points) == (4, 0, 0, 5)
    data = stored(client, a, cid, m1)
    assert data["time"] == [T0 + i * Q for i in range(4)]
    assert data["value"] == [1.5, 2.5, 3.0, 4.0]
    power = stored(client, a, cid, m1, P_PLUS)
    assert power["value"] == [7.25]
    assert power["time"] == [T0 + 7]  # a bare number is timed on arrival


def test_a_redelivered_message_is_stored_once(
    client: TestClient, db: Database, owner: tuple[int, int, int, Actor]
) -> None:
    cid, m1, _, a = owner
    add(client, a, cid, "gw-1")
    topic = f"besmart/v1/gw-1/{m1}/{A_PLUS}"
    with_id = {"time": T0, "value": 1.0, "id": 17}
    without = {"time": T0 + Q, "value": 2.0}
    first = ingest(db, (topic, with_id), (topic, without), (topic, with_id))
    assert (first.stored, first.duplicates) == (2, 1)  # within one batch, too
    again = ingest(db, (topic, with_id), (topic, without))
    assert (again.stored, again.duplicates) == (0, 2)
    # Same id, other points: still the message already stored. Same points, other origin: new.
    other = ingest(db, (topic, {"time": T0 + 5 * Q, "value": 9, "id": 17}))
    assert other.duplicates == 1
    assert ingest(db, (topic, {**without, "origin": 2})).stored == 1
    data = stored(client, a, cid, m1)
    assert list(zip(data["time"], data["origin"], strict=True)) == [
        (T0, 1),
        (T0 + Q, 1),
        (T0 + Q, 2),
    ]


def test_other_devices_clients_and_sensors_not_given_are_refused(
    client: TestClient, db: Database, owner: tuple[int, int, int, Actor]
) -> None:
    cid, m1, m2, a = owner
    other_cid, b = make_tenant(db)
    foreign = make_sensor(db, other_cid)
    add(client, a, cid, "gw-1", sensors=[m1])
    add(client, b, other_cid, "gw-b")
    client.delete("/api/devices/gw-b", headers=b.headers)
    reading = {"time": T0, "value": 1.0}
    res = ingest(
        db,
        (f"besmart/v1/gw-1/{foreign}/{A_PLUS}", reading),
        (f"besmart/v1/gw-1/{m2}/{A_PLUS}", reading),
        (f"besmart/v1/gw-1/{m1}/999999", reading),
        (f"besmart/v1/gw-b/{foreign}/{A_PLUS}", reading),
        (f"besmart/v1/nobody/{m1}/{A_PLUS}", reading),
        (f"besmart/v1/gw-1/{m1}/{A_PLUS}", reading),
    )
    assert (res.stored, res.rejected) == (1, 5)
    assert [r for _, r in rejected(db)] == [
        f"sensor {foreign} is not a sensor of client {cid}",
        f"device gw-1 was not given sensor {m2}",
        "signal type 999999 not found",
        "device gw-b is unknown or revoked",
        "device nobody is unknown or revoked",
    ]
    assert stored(client, a, cid, m2)["time"] == []
    assert stored(client, b, other_cid, foreign)["time"] == []
    # The owner sees their client's refusals; the other tenant sees none of them.
    mine = client.get("/api/devices/rejected", params={"client_cid": cid}, headers=a.headers)
    assert len(mine.json()) == 3
    assert mine.json()[0]["reason"] == "signal type 999999 not found"
    assert client.get("/api/devices/rejected", headers=b.headers).json() == []


MALFORMED: list[tuple[Any, str]] = [
    (b"", "empty payload"),
    (b"{not json", "payload is not JSON"),
    (b"[1]", "payload must be a JSON object or a number"),
    ({"value": 1}, "field required: time"),
    ({"time": T0, "value": "high"}, 'value[0]: a DBL point needs a number, got "high"'),
    ({"time": "noon", "value": 1}, 'time[0]: expected a number, got "noon"'),
    ({"time": T0, "value": 1, "origin": 9}, "origin[0]: 9 is not an origin"),
    ({"time": T0, "value": 1, "type": "FOO"}, 'type[0]: unknown type "FOO"'),
    ({"time": T0, "value": 1.5, "type": "INT"}, "value[0]: an INT point needs an integer"),
    ({"time": [T0], "value": [1, 2]}, "column 'value' has 2 items but 'time' has 1"),
    ({"time": T0, "value": 1, "unit": "furlong"}, "furlong"),
    ({"time": T0, "value": 1, "unit": "V"}, "V"),  # a known unit of another dimension
    ({"time": T0, "value": 1, "id": [1]}, "id must be"),
]


def test_malformed_payloads_are_dead_lettered_and_the_batch_goes_on(
    client: TestClient, db: Database, owner: tuple[int, int, int, Actor]
) -> None:
    cid, m1, _, a = owner
    add(client, a, cid, "gw-1")
    topic = f"besmart/v1/gw-1/{m1}/{A_PLUS}"
    good = [(topic, {"time": T0 + i * Q, "value": float(i)}) for i in range(3)]
    bad = [(topic, p) for p, _ in MALFORMED]
    res = ingest(db, good[0], *bad[:6], good[1], *bad[6:], good[2], ("besmart/v1/gw-1/x/1", b"1"))
    assert (res.stored, res.rejected) == (3, len(MALFORMED) + 1)
    assert stored(client, a, cid, m1)["value"] == [0.0, 1.0, 2.0]
    reasons = [r for _, r in rejected(db)]
    assert len(reasons) == len(MALFORMED) + 1
    for (_, says), reason in zip(MALFORMED, reasons, strict=False):
        assert says in reason, (says, reason)
    # A redelivered refusal is settled already: not a second dead letter.
    again = ingest(db, *bad)
    assert (again.duplicates, again.rejected) == (len(MALFORMED), 0)
    with db.transaction(write=False) as conn:
        assert conn.scalar(select(func.count()).select_from(mqtt_rejected)) == len(reasons)


def test_settled_keys_are_forgotten_after_the_window(
    client: TestClient, db: Database, owner: tuple[int, int, int, Actor]
) -> None:
    cid, m1, _, a = owner
    add(client, a, cid, "gw-1")
    topic = f"besmart/v1/gw-1/{m1}/{A_PLUS}"
    assert ingest(db, (topic, {"time": T0, "value": 1, "id": "old"})).stored == 1
    with db.transaction() as conn:
        assert service.purge_seen(conn, older_than_ms=0) == 0  # nothing that old
        assert service.purge_seen(conn, older_than_ms=2**62) == 1
    # Forgotten: the same id counts as a new message again (a new version of the point).
    assert ingest(db, (topic, {"time": T0, "value": 1, "id": "old"})).stored == 1


def test_nul_characters_are_dead_letters_on_both_engines(
    client: TestClient, db: Database, owner: tuple[int, int, int, Actor]
) -> None:
    """U+0000 in any text of a payload is refused as the REST writes refuse it, and a dead
    letter holds any payload or topic: on PostgreSQL a NUL in an id (a text key) or in a
    letter's text failed the whole batch, which the bridge then retried for ever (issue #14,
    item 9: every string that reaches PostgreSQL is checked)."""
    cid, m1, _, a = owner
    add(client, a, cid, "gw-1")
    topic = f"besmart/v1/gw-1/{m1}/{P_PLUS}"
    good = (topic, {"time": T0, "value": 1.0})
    res = ingest(
        db,
        (topic, {"time": T0 + Q, "value": 2.0, "id": "a\u0000b"}),
        (topic, {"time": T0 + Q, "value": "a\u0000b", "type": "STR"}),
        (topic, {"time": [T0 + Q], "value": [2.0], "origin": [1], "\u0000": [1]}),
        (topic, b"\x00\x01binary\x00"),  # a device sending binary frames
        (f"besmart/v1/gw\u00001/{m1}/{P_PLUS}", {"time": T0 + Q, "value": 2.0}),
        good,
    )
    assert (res.stored, res.rejected) == (1, 5)
    reasons = [r for _, r in rejected(db)]
    assert all("U+0000" in r for r in reasons[:3]), reasons
    assert "payload is not JSON" in reasons[3]
    assert "\x00" not in "".join(reasons)
    assert stored(client, a, cid, m1, P_PLUS)["value"] == [1.0]
    letters = client.get("/api/devices/rejected", params={"client_cid": cid}, headers=a.headers)
    assert letters.status_code == 200, letters.text
    payloads = [x["payload"] for x in letters.json()]
    assert "\ufffd\x01binary\ufffd" in payloads  # kept, its NULs replaced


def test_values_and_times_reads_cannot_give_back_are_dead_letters(
    client: TestClient, db: Database, owner: tuple[int, int, int, Actor]
) -> None:
    """The bridge refuses what the REST writes refuse (issue #14, items 5 and 6): a value
    beyond ±1e250 (also after unit conversion), an INT beyond ±(2**53 - 1), a time outside
    ±2**62; a bare number is a DBL, stored as the double it is."""
    cid, m1, _, a = owner
    add(client, a, cid, "gw-1")
    topic = f"besmart/v1/gw-1/{m1}/{A_PLUS}"
    bad: list[tuple[bytes, str]] = [
        (b'{"time": %d, "value": 1e300}' % T0, "beyond"),
        (b"1e300", "beyond"),
        (b'{"time": %d, "value": 18446744073709551616, "type": "INT"}' % T0, "INT"),
        (b'{"time": %d, "value": 9007199254740993, "type": "INT"}' % T0, "INT"),
        (b'{"time": %d, "value": 1e250, "unit": "MWh"}' % T0, "beyond"),
        (b'{"time": %d, "value": 1}' % 2**62, "outside the times"),
        (b'{"time": %d, "value": 1}' % (-(2**62) - 1), "outside the times"),
    ]
    res = ingest(db, *[(topic, p) for p, _ in bad], (topic, {"time": T0, "value": 2.5}))
    assert (res.stored, res.rejected) == (1, len(bad))
    for (_, says), reason in zip(bad, [r for _, r in rejected(db)], strict=True):
        assert says in reason, (says, reason)
    assert stored(client, a, cid, m1)["value"] == [2.5]
