"""MQTT ingestion rate: single-reading messages through Mosquitto and the bridge into the store,
beside what the same broker delivers to a plain subscriber that stores nothing (the ceiling).

    .venv/bin/python -m bench.mqtt                         # 100,000 messages, SQLite
    .venv/bin/python -m bench.mqtt --pg-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python -m bench.mqtt --messages 20000 --devices 10

One run: a scratch database with one client, a sensor and a device per `--devices`; a
Mosquitto on a free port with `besmart mqtt config`'s files. Three persistent sessions
subscribe once and go offline: two plain subscribers that store nothing, and the bridge
(clean_session false); the devices publish every message at QoS 1 (each
`{"time", "value", "id"}`), so the broker queues them for all three. Then each consumer in
turn connects and is timed from connecting until it has all of them:

- the paho subscriber (the ceiling): paho-mqtt's own path, an `on_message` call per message,
  acknowledged by paho;
- the raw subscriber: the bridge's receiving path (PUBLISH packets cut from the socket
  buffer), each read pass acknowledged at once: how fast the broker delivers, to Python;
- the bridge (its storing side in this process, on a thread, its receiving process a child)
  until its last batch has committed.

CPU milliseconds per 1,000 messages of each (the bench process's threads; the receiver's
from its rusage) are printed too: on a loaded machine they hold steadier than the rates.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from sqlalchemy import func, insert, select

from bench.scratch import scratch_database
from besmart_server.server import migrate
from besmart_server.server.config import Settings
from besmart_server.server.db import Database, now_ms
from besmart_server.server.mqtt import broker as broker_config
from besmart_server.server.mqtt import service, topics
from besmart_server.server.mqtt.bridge import Bridge, BrokerAddress
from besmart_server.server.mqtt.receiver import BufferedClient, Raw
from besmart_server.server.mqtt.tables import mqtt_seen
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.signals.catalog import signal_type_by_symbol
from besmart_server.server.users import service as users

T0 = 1_767_225_600_000  # 2026-01-01 UTC
MINUTE = 60_000
SUBSCRIBER_ID = "bench-plain-subscriber"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


class _Plain:
    """A subscriber that counts messages and stores nothing.

    `raw` False: paho-mqtt's own path, each message an `on_message` call that paho
    acknowledges (what a plain paho subscriber is). `raw` True: the bridge's receiving path
    (`BufferedClient` with a sink: PUBLISH packets cut from the socket buffer), each read
    pass acknowledged at once — what the bridge's receiver does, minus the storing process.
    """

    def __init__(self, port: int, secret: str, *, raw: bool) -> None:
        self.count = 0
        self.done = threading.Event()
        self.target = 0
        self.subscribed = threading.Event()
        self.sink: list[Raw] = []
        self.client = _CountingClient(
            self,
            CallbackAPIVersion.VERSION2,
            client_id=f"{SUBSCRIBER_ID}-{'raw' if raw else 'paho'}",
            clean_session=False,
            manual_ack=raw,
            sink=self.sink if raw else None,
        )
        # The bridge's account: it may read every device topic.
        self.client.username_pw_set(service.BRIDGE_USER, secret)
        self.client.on_connect = lambda c, *_: c.subscribe(topics.SUBSCRIPTION, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        if not raw:
            self.client.on_message = self._on_message
        self.port = port

    def _on_message(self, *_: Any) -> None:
        self.count += 1
        if self.count >= self.target:
            self.done.set()

    def read_pass(self) -> None:
        if self.sink:
            self.client.ack_many([mid for mid, qos, _, _ in self.sink if qos == 1])
            self.count += len(self.sink)
            self.sink.clear()
            if self.count >= self.target:
                self.done.set()

    def run(self, target: int) -> None:
        self.target = target
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class _CountingClient(BufferedClient):
    def __init__(self, plain: _Plain, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain = plain

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        self._plain.read_pass()
        return rc


def _publish(port: int, creds: list[tuple[str, str, int]], each: int, moid: int) -> float:
    """Every device publishes `each` readings at QoS 1; seconds until all are acknowledged."""
    clients = []
    for name, secret, _ in creds:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{name}")
        c.username_pw_set(name, secret)
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", port)
        c.loop_start()
        clients.append(c)
    started = time.perf_counter()
    infos = []
    for i in range(each):
        for c, (name, _, mid) in zip(clients, creds, strict=True):
            body = {"time": T0 + i * MINUTE, "value": float(i % 1000), "id": f"{name}-{i}"}
            infos.append(c.publish(f"besmart/v1/{name}/{mid}/{moid}", orjson.dumps(body), qos=1))
    for info in infos:
        info.wait_for_publish(120)
    elapsed = time.perf_counter() - started
    for c in clients:
        c.disconnect()
        c.loop_stop()
    return elapsed


def measure(url: str, messages: int, devices: int, batch: int = 5000) -> dict[str, Any]:
    """One run on one database: the rates of the plain subscriber and of the bridge."""
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    each = messages // devices
    total = each * devices
    t = signal_type_by_symbol("A+")
    assert t is not None
    settings = Settings(database_url=url)
    db = Database(url)
    migrate.upgrade(db)
    with db.transaction() as conn:
        cid = users.create_client(conn, name="bench-mqtt")
        creds = []
        for i in range(devices):
            mid = conn.execute(
                insert(sensors)
                .values(client_cid=cid, name=f"m{i}", created_at=now_ms())
                .returning(sensors.c.mid)
            ).scalar_one()
            d = service.add_device(conn, name=f"bench-{i}", client_cid=cid, sensor_mids=[mid])
            creds.append((d.name, d.secret, int(mid)))
        accounts = service.broker_accounts(conn)
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        paths = broker_config.write_config(Path(tmp), accounts, port=port)
        proc = subprocess.Popen([mosquitto, "-c", str(paths.conf)])
        try:
            _wait(lambda: _listening(port), 10, "mosquitto")
            secret = broker_config.bridge_secret(paths.root)
            address = BrokerAddress("127.0.0.1", port, service.BRIDGE_USER, secret)
            # Every session exists before anything is published, then goes offline.
            for raw in (False, True):
                plain = _Plain(port, secret, raw=raw)
                plain.run(10**12)
                _wait(plain.subscribed.is_set, 10, "the plain subscriber")
                plain.stop()
            settled = [0]
            done = threading.Event()

            def on_batch(r: service.IngestResult) -> None:
                settled[0] += r.stored + r.duplicates + r.rejected
                if settled[0] >= total:
                    done.set()

            bridge = Bridge(db, address, settings=settings, on_batch=on_batch)
            thread = threading.Thread(target=bridge.run)
            thread.start()
            _wait(bridge.connected.is_set, 10, "the bridge")
            bridge.stop()
            thread.join()

            publish_s = _publish(port, creds, each, t.moid)

            plain_s, plain_cpu = {}, {}
            for raw in (False, True):
                plain = _Plain(port, secret, raw=raw)
                started, cpu = time.perf_counter(), time.process_time()
                plain.run(total)
                plain.done.wait(600)
                plain_s[raw] = time.perf_counter() - started
                plain_cpu[raw] = time.process_time() - cpu
                plain.stop()

            bridge = Bridge(db, address, settings=settings, batch_max=batch, on_batch=on_batch)
            started, cpu = time.perf_counter(), time.process_time()
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            thread = threading.Thread(target=bridge.run)
            thread.start()
            done.wait(600)
            bridge_s = time.perf_counter() - started
            bridge_cpu = time.process_time() - cpu
            bridge.stop()
            thread.join()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the receiver, reaped
            receiver_cpu = (after.ru_utime + after.ru_stime) - (
                children.ru_utime + children.ru_stime
            )
            with db.transaction(write=False) as conn:
                seen = conn.scalar(select(func.count()).select_from(mqtt_seen))
            if seen != total or bridge.totals.stored != total:
                raise RuntimeError(f"stored {bridge.totals.stored} ({seen} keys) of {total}")
        finally:
            proc.terminate()
            proc.wait(30)
            db.dispose()
    return {
        "engine": db.dialect,
        "messages": total,
        "devices": devices,
        "publish_per_s": total / publish_s,
        "ceiling_per_s": total / plain_s[False],
        "raw_per_s": total / plain_s[True],
        "bridge_per_s": total / bridge_s,
        "ratio": plain_s[False] / bridge_s,
        "raw_ratio": plain_s[True] / bridge_s,
        # CPU seconds per 1,000 messages: steadier than rates on a loaded machine
        "plain_cpu_ms": plain_cpu[False] * 1e6 / total,
        "raw_cpu_ms": plain_cpu[True] * 1e6 / total,
        "writer_cpu_ms": bridge_cpu * 1e6 / total,
        "receiver_cpu_ms": receiver_cpu * 1e6 / total,
    }


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--devices", type=int, default=10)
    p.add_argument("--batch", type=int, default=5000, help="the bridge's messages per transaction")
    p.add_argument("--pg-url", default=None, help="also measure on this PostgreSQL server")
    p.add_argument("--skip-sqlite", action="store_true", help="PostgreSQL only")
    args = p.parse_args(argv)
    rows = []
    if not args.skip_sqlite:
        with scratch_database(None, "mqtt") as url:
            rows.append(measure(url, args.messages, args.devices, args.batch))
    if args.pg_url:
        with scratch_database(args.pg_url, "mqtt") as url:
            rows.append(measure(url, args.messages, args.devices, args.batch))
    print(
        "| engine | messages | devices published/s | paho subscriber/s (ceiling) "
        "| raw subscriber/s | bridge → store/s | bridge / ceiling | bridge / raw "
        "| CPU ms per 1,000: paho, raw, bridge's receiver, bridge's writer |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['engine']} | {r['messages']:,} | {r['publish_per_s']:,.0f} "
            f"| {r['ceiling_per_s']:,.0f} | {r['raw_per_s']:,.0f} | {r['bridge_per_s']:,.0f} "
            f"| {r['ratio']:.0%} | {r['raw_ratio']:.0%} | {r['plain_cpu_ms']:.0f}, "
            f"{r['raw_cpu_ms']:.0f}, {r['receiver_cpu_ms']:.0f}, {r['writer_cpu_ms']:.0f} |"
        )


if __name__ == "__main__":
    main()
