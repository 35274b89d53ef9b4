"""MQTT end to end: devices publish to a Mosquitto of the test's own (the platform's generated
configuration on a free port), the bridge runs as a process of its own, and the readings are
read back from the store. Runs on the engine --db-url names."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from besmart_server.server.mqtt import service
from besmart_server.server.mqtt.tables import mqtt_rejected, mqtt_seen
from besmart_server.server.signals.store import SeriesStore
from besmart_server.server.vee import service as vee_service
from besmart_server.server.vee.worker import process
from tests.api.signal_helpers import T0, get, make_sensor, moid
from tests.api.test_devices import MALFORMED
from tests.factories import Actor, make_tenant
from tests.mqtt.harness import MOSQUITTO, BridgeProcess, Broker, Device
from tests.processes import wait_for

pytestmark = pytest.mark.skipif(
    not os.path.exists(MOSQUITTO), reason="mosquitto is not installed (.ci/run installs it)"
)

A_PLUS = moid("A+")
EA_PLUS = moid("EA+")  # interval energy: a negative value is a defect
MINUTE = 60_000


@pytest.fixture
def broker(tmp_path: Path, db: Database) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker", db)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def bridge(broker: Broker, database_url: str, tmp_path: Path) -> Iterator[BridgeProcess]:
    p = BridgeProcess(broker, database_url, tmp_path)
    p.start()
    yield p
    p.stop()


@pytest.fixture
def tenant(db: Database) -> tuple[int, Actor]:
    return make_tenant(db, Role.owner)


def new_device(db: Database, broker: Broker, cid: int, name: str, **kw: Any) -> Device:
    with db.transaction() as conn:
        created = service.add_device(
            conn, name=name, client_cid=cid, sensor_mids=kw.pop("mids", None)
        )
    broker.sync()
    dev = Device(name, created.secret, broker.port, **kw)
    assert dev.connected.wait(10), dev.connect_result
    return dev


def count(db: Database, table: Any) -> int:
    with db.transaction(write=False) as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


def reasons(db: Database) -> list[str]:
    with db.transaction(write=False) as conn:
        return list(conn.scalars(select(mqtt_rejected.c.reason).order_by(mqtt_rejected.c.id)))


def test_a_published_reading_is_stored_and_read_back(
    client: TestClient, db: Database, broker: Broker, bridge: BridgeProcess, tenant: Any
) -> None:
    cid, owner = tenant
    mid = make_sensor(db, cid)
    dev = new_device(db, broker, cid, "meter-1")
    info = dev.publish(f"besmart/v1/meter-1/{mid}/{A_PLUS}", {"time": T0, "value": 12.5, "id": 1})
    info.wait_for_publish(10)

    def read() -> list[Any]:
        body = get(client, owner.headers, cid, mid, A_PLUS, T0, T0 + MINUTE)
        return list(body["data"]["value"])

    wait_for(lambda: read() == [12.5], 20, "the reading")
    dev.close()
    out = bridge.stop()
    assert "1 stored, 0 duplicates, 0 refused" in out


def test_a_defective_reading_through_the_bridge_becomes_a_quality_event(
    client: TestClient, db: Database, broker: Broker, bridge: BridgeProcess, tenant: Any
) -> None:
    """The bridge (a process of its own) queues the windows it wrote in its own transaction;
    a drain of the queue (a validation worker's, here the test's) finds it."""
    cid, owner = tenant
    mid = make_sensor(db, cid)
    dev = new_device(db, broker, cid, "meter-v")
    info = dev.publish(f"besmart/v1/meter-v/{mid}/{EA_PLUS}", {"time": T0, "value": -4.0})
    info.wait_for_publish(10)

    def queued() -> int:
        with db.transaction(write=False) as conn:
            return vee_service.pending(conn)

    wait_for(lambda: queued() == 1, 20, "the bridge's queued window")

    def found() -> bool:
        process(db, SeriesStore(db.dialect), 10_000)
        r = client.get(
            f"/api/sensors/{cid}.{mid}/signals/{EA_PLUS}/quality",
            params={"since": T0, "till": T0 + MINUTE},
            headers=owner.headers,
        )
        assert r.status_code == 200, r.text
        return ("negative", T0) in {(e["rule"], e["since"]) for e in r.json()["events"]}

    wait_for(found, 20, "the negative reading's quality event")
    assert queued() == 0
    dev.close()


def test_the_broker_confines_each_device_to_its_own_topics(
    db: Database, broker: Broker, bridge: BridgeProcess, tenant: Any
) -> None:
    cid, _ = tenant
    mine, not_given = make_sensor(db, cid), make_sensor(db, cid)
    other_cid, _ = make_tenant(db)
    foreign = make_sensor(db, other_cid)
    a = new_device(db, broker, cid, "dev-a", mids=[mine], protocol=mqtt.MQTTv5)
    new_device(db, broker, other_cid, "dev-b").close()
    reading = {"time": T0, "value": 1.0}
    # Another device's topic: the broker refuses it (MQTT 5 says so in the PUBACK).
    denied = a.publish(f"besmart/v1/dev-b/{foreign}/{A_PLUS}", reading)
    denied.wait_for_publish(10)
    assert a.reason_codes[denied.mid].getName() == "Not authorized"
    outside = a.publish(f"elsewhere/{mine}", reading)
    outside.wait_for_publish(10)
    assert a.reason_codes[outside.mid].getName() == "Not authorized"
    # Its own prefix, but a sensor of another client or one it was not given: dead letters.
    a.publish(f"besmart/v1/dev-a/{foreign}/{A_PLUS}", reading)
    a.publish(f"besmart/v1/dev-a/{not_given}/{A_PLUS}", reading)
    a.publish(f"besmart/v1/dev-a/{mine}/{A_PLUS}", {**reading, "id": "ok"}).wait_for_publish(10)
    wait_for(lambda: count(db, mqtt_seen) == 3, 20, "three settled messages")
    assert reasons(db) == [
        f"sensor {foreign} is not a sensor of client {cid}",
        f"device dev-a was not given sensor {not_given}",
    ]
    a.close()
    # Nothing reached dev-b's client; dev-a's one good reading is the only point stored.
    assert "1 stored, 0 duplicates, 2 refused" in bridge.stop()


def test_wrong_secrets_and_revoked_devices_cannot_log_in(
    db: Database, broker: Broker, tenant: Any
) -> None:
    cid, _ = tenant
    good = new_device(db, broker, cid, "dev-r")
    good.close()
    secret = good.secret
    wrong = Device("dev-r", "not-the-secret", broker.port)
    wait_for(lambda: wrong.connect_result is not None, 10, "a CONNACK")
    assert wrong.connect_result.is_failure
    wrong.close()
    with db.transaction() as conn:
        service.revoke_device(conn, "dev-r")
    broker.sync()
    revoked = Device("dev-r", secret, broker.port)
    anonymous = Device("", "", broker.port)
    for refused in (revoked, anonymous):
        wait_for(lambda r=refused: r.connect_result is not None, 10, "a CONNACK")
        assert refused.connect_result.is_failure
        refused.close()
    assert "dev-r" not in broker.paths.passwd.read_text()


def test_malformed_payloads_are_dead_lettered_and_the_bridge_keeps_going(
    client: TestClient, db: Database, broker: Broker, bridge: BridgeProcess, tenant: Any
) -> None:
    cid, owner = tenant
    mid = make_sensor(db, cid)
    dev = new_device(db, broker, cid, "dev-m")
    topic = f"besmart/v1/dev-m/{mid}/{A_PLUS}"
    for i, (payload, _) in enumerate(MALFORMED):
        dev.publish(topic, payload)
        dev.publish(topic, {"time": T0 + i * MINUTE, "value": float(i)})
    dev.publish(f"besmart/v1/dev-m/{mid}/x", b"1")
    dev.publish(f"besmart/v1/dev-m/{mid}/{A_PLUS}/extra", b"1")
    wait_for(lambda: len(reasons(db)) == len(MALFORMED) + 2, 30, "every dead letter")
    got = reasons(db)
    for (_, says), reason in zip(MALFORMED, got, strict=False):
        assert says in reason
    body = get(client, owner.headers, cid, mid, A_PLUS, T0, T0 + 100 * MINUTE)
    assert body["data"]["value"] == [float(i) for i in range(len(MALFORMED))]
    dev.close()


# --- crash safety ---------------------------------------------------------------------------


def _crash_run(
    db: Database, broker: Broker, bridge: BridgeProcess, cid: int, devices: int, each: int
) -> None:
    """`devices` devices publish `each` readings (each with an id) at QoS 1 while the bridge
    is killed with SIGKILL twice and the broker is restarted gracefully once; then every
    reading must be stored exactly once."""
    total = devices * each
    mids = [make_sensor(db, cid, f"m{i}") for i in range(devices)]
    devs = [new_device(db, broker, cid, f"crash-{i}", mids=[m]) for i, m in enumerate(mids)]
    published = [0]
    rate = 4000.0  # readings/s over all devices: publishing spans the whole run of chaos

    def publish_all() -> None:
        started = time.monotonic()
        for i in range(each):
            for d, m in zip(devs, mids, strict=True):
                payload = {"time": T0 + i * MINUTE, "value": float(i), "id": f"{d.name}-{i}"}
                d.publish(f"besmart/v1/{d.name}/{m}/{A_PLUS}", payload)
            published[0] += devices
            ahead = published[0] / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    # The first kill hits the storing process alone (its receiving process, orphaned, must
    # exit by itself and acknowledge nothing more), the second both processes at once; in
    # between the receiving process alone is killed, and the storing process starts another.
    for fraction, act in (
        (0.25, lambda: bridge.kill(group=False)),
        (0.4, bridge.kill_receiver),
        (0.5, broker.restart),
        (0.75, lambda: bridge.kill(group=True)),
    ):
        wait_for(lambda f=fraction: published[0] >= f * total, 120, f"{fraction:.0%} published")
        if act not in (broker.restart, bridge.kill_receiver):
            # Killed while readings are on their way: some were never acknowledged.
            wait_for(lambda: count(db, mqtt_seen) > 0, 30, "the bridge storing")
            assert count(db, mqtt_seen) < published[0]
        act()
        if act not in (broker.restart, bridge.kill_receiver):
            bridge.start(wait=False)
    publisher.join()
    # Whatever the broker has not acknowledged within 10 s (it was down), the devices send
    # again; a device whose acknowledgments stop for 20 s connects again. It must settle: the
    # test fails when the count stops falling for 60 s.
    _settle(devs, broker)
    wait_for(lambda: count(db, mqtt_seen) >= total, 300, f"{total} settled messages", every=0.5)
    for d in devs:
        d.close()
    bridge.stop()
    assert count(db, mqtt_seen) == total
    store = SeriesStore(db.dialect)
    with db.transaction(write=False) as conn:
        ids = store.series_ids(conn, [(m, A_PLUS) for m in mids], create=False)
        for m in mids:
            f = store.read(
                conn, ids[(m, A_PLUS)], T0, T0 + each * MINUTE, origin=None, limit=each * 2
            )
            assert len(f) == each, f"sensor {m}: {len(f)} versions for {each} readings"
            assert np.array_equal(f.time, T0 + np.arange(each) * MINUTE)
            assert np.array_equal(f.value, np.arange(each, dtype=np.float64))
    assert count(db, mqtt_rejected) == 0


def _settle(devs: list[Device], broker: Broker) -> None:
    now = time.monotonic()
    left = {d.name: d.unacknowledged() for d in devs}
    progressed = {d.name: now for d in devs}
    while sum(left.values()):
        time.sleep(2)
        now = time.monotonic()
        for d in devs:
            d.republish_unacknowledged(waited=10)
            n = d.unacknowledged()
            if n < left[d.name] or not n:
                progressed[d.name] = now
            elif now - progressed[d.name] > 60:
                states = "; ".join(d.state() for d in devs)
                raise AssertionError(
                    f"the broker acknowledged nothing more for 60 s: {states}\n"
                    f"{broker.log()[-2000:]}"
                )
            elif now - progressed[d.name] > 20 * (d.reconnects + 1):
                d.reconnect()
            left[d.name] = n


def test_bridge_killed_twice_and_broker_restarted_store_every_reading_once(
    db: Database, broker: Broker, bridge: BridgeProcess, tenant: Any
) -> None:
    """CI's size: 10 devices x 2,000 readings (the full 100,000 is the slow test below)."""
    _crash_run(db, broker, bridge, tenant[0], devices=10, each=2_000)


@pytest.mark.slow
def test_100000_readings_through_two_bridge_kills_and_a_broker_restart(
    db: Database, broker: Broker, bridge: BridgeProcess, tenant: Any
) -> None:
    _crash_run(db, broker, bridge, tenant[0], devices=10, each=10_000)


def test_serve_runs_the_bridge_when_asked(
    db: Database, broker: Broker, database_url: str, tenant: Any
) -> None:
    """BESMART_MQTT_BRIDGE: the server's lifespan runs the bridge on a thread."""
    from besmart_server.server.app import create_app
    from besmart_server.server.config import Settings

    cid, owner = tenant
    mid = make_sensor(db, cid)
    dev = new_device(db, broker, cid, "dev-s")
    settings = Settings(
        database_url=database_url,
        demo=False,
        mqtt_bridge=True,
        mqtt_broker_url=f"mqtt://127.0.0.1:{broker.port}",
        mqtt_config_dir=str(broker.paths.root),
    )
    app = create_app(settings)
    with TestClient(app) as client:
        # The broker keeps messages for the bridge's session only once it has subscribed.
        assert app.state.mqtt_bridge.connected.wait(10)
        dev.publish(f"besmart/v1/dev-s/{mid}/{A_PLUS}", {"time": T0, "value": 3.0, "id": 1})

        def read() -> list[Any]:
            body = get(client, owner.headers, cid, mid, A_PLUS, T0, T0 + MINUTE)
            return list(body["data"]["value"])

        wait_for(lambda: read() == [3.0], 20, "the reading through the server's bridge")

        def queued() -> int:
            with db.transaction(write=False) as conn:
                return vee_service.pending(conn)

        # queued in the transaction that stored it, for a validation worker to drain
        assert queued() == 1
        process(db, SeriesStore(db.dialect), 10_000)
        assert queued() == 0
    dev.close()
