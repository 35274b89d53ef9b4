"""The bridge: a persistent MQTT session whose messages are stored, then acknowledged.

paho-mqtt's network thread only queues each message; the bridge's own thread takes up to
`batch_max` of them (or what arrived within `linger_s` of the first), stores them in one
transaction (`service.ingest`) and only after the commit sends their PUBACKs, in arrival order
as MQTT requires. Until then the broker keeps them: a bridge killed at any point gets them
again on its next connection (same client id, clean_session false), and `ingest` stores a
redelivered message once. After a reconnect, messages of the old connection are never
acknowledged (their packet ids may name other messages now): the broker sends them again.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MessageType, MQTTErrorCode

from besmart_server.server.config import Settings
from besmart_server.server.db import Database, now_ms
from besmart_server.server.mqtt import broker, service, topics
from besmart_server.server.mqtt.service import BRIDGE_USER, IngestResult, Message
from besmart_server.server.signals.store import SeriesStore

log = logging.getLogger("besmart.mqtt")

CLIENT_ID = "besmart-bridge"
PURGE_EVERY_S = 600.0


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is and the bridge's account on it."""

    host: str
    port: int
    username: str | None
    password: str | None


def broker_address(url: str, config_dir: str | Path | None = None) -> BrokerAddress:
    """mqtt://[user:password@]host[:port]; without a user, the bridge's account of the
    configuration folder `besmart mqtt config` wrote (when given)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp"):
        raise ValueError(f"not an mqtt:// URL: {url!r}")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if user is None and config_dir is not None:
        user, password = BRIDGE_USER, broker.bridge_secret(Path(config_dir))
    return BrokerAddress(parts.hostname or "127.0.0.1", parts.port or 1883, user, password)


class BufferedClient(mqtt.Client):
    """paho-mqtt's client, reading the socket 64 KiB at a time.

    paho reads a packet in three or more `recv` calls (type, length, body) and one packet per
    pass of its network loop, each pass a `select`: at thousands of small PUBLISH packets a
    second that is most of a subscriber's time. Here one `recv` fills a buffer that paho's
    reads are served from, and a read pass goes on while the buffer holds bytes. Relies on
    paho 2.x's `_sock_recv` and `_sock_close` (tests/mqtt exercise it on every run).
    """

    _BUFFER = 65_536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(self._BUFFER)
            if len(data) <= bufsize:
                return data
            self._rbuf, self._rpos = data, 0
        end = self._rpos + bufsize
        out = self._rbuf[self._rpos : end]
        self._rpos = min(end, len(self._rbuf))
        return out

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0
        super()._sock_close()

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._rpos < len(self._rbuf):
            rc = super().loop_read(max_packets)
        return rc

    def ack_many(self, mids: list[int]) -> None:
        """PUBACKs of QoS 1 messages, in this order, written as one send: `ack` queues and
        sends each 4-byte packet on its own (a wake-up and a syscall per message)."""
        if mids:
            blob = b"".join([_PUBACK.pack(0x40, 2, mid) for mid in mids])
            self._packet_queue(MessageType.PUBACK, blob, 0, 0)


_PUBACK = struct.Struct("!BBH")  # MQTT 3.1.1 PUBACK: type 4, remaining length 2, packet id


# (connection generation, packet id, qos, message)
_Pending = tuple[int, int, int, Message]


class Bridge:
    """Subscribes to every device topic and stores what arrives; `run` until `stop`."""

    def __init__(
        self,
        db: Database,
        address: BrokerAddress,
        *,
        settings: Settings,
        client_id: str = CLIENT_ID,
        batch_max: int = 2000,
        linger_s: float = 0.2,
        dedupe_days: float = 7.0,
        on_batch: Callable[[IngestResult], None] | None = None,
    ) -> None:
        self._db = db
        self._settings = settings  # what ingest needs of them: validation after writes
        self._store = SeriesStore(db.dialect)
        self._address = address
        self._batch_max = batch_max
        self._linger_s = linger_s
        self._dedupe_ms = int(dedupe_days * 86_400_000)
        self._on_batch = on_batch
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._first_at = 0.0  # monotonic time the oldest pending message arrived
        self._generation = 0
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.totals = IngestResult()
        self._client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if address.username is not None:
            self._client.username_pw_set(address.username, address.password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    # --- paho's network thread --------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the bridge: %s", reason)
            return
        with self._cond:
            self._generation += 1
            self._pending.clear()  # the broker sends these again, under this connection
        client.subscribe(topics.SUBSCRIPTION, qos=1)
        log.info("bridge connected to %s:%d", self._address.host, self._address.port)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        if any(c.is_failure for c in codes):
            log.error("broker refused the bridge's subscription: %s", codes)
            return
        self.connected.set()
        log.info("bridge subscribed to %s", topics.SUBSCRIPTION)

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("bridge disconnected (%s); reconnecting", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")  # refused by parse_topic, then
        item = (self._generation, msg.mid, msg.qos, Message(topic, bytes(msg.payload), now_ms()))
        with self._cond:
            if not self._pending:
                self._first_at = time.monotonic()
            self._pending.append(item)
            if len(self._pending) >= self._batch_max:
                self._cond.notify()

    # --- the bridge's thread --------------------------------------------------------------

    def stop(self) -> None:
        """Finish the batch in hand, then disconnect."""
        self._stop.set()
        with self._cond:
            self._cond.notify()

    def run(self) -> None:
        """Connect (retrying until the broker answers), then store batches until `stop`."""
        a = self._address
        self._client.connect_async(a.host, a.port, keepalive=30)
        self._client.loop_start()
        next_purge = time.monotonic()
        try:
            while not self._stop.is_set():
                batch = self._take()
                if batch:
                    self._settle(batch)
                if time.monotonic() >= next_purge:
                    self._purge()
                    next_purge = time.monotonic() + PURGE_EVERY_S
        finally:
            self._client.disconnect()
            self._client.loop_stop()

    def _take(self) -> list[_Pending]:
        """Up to batch_max messages, once that many wait or the oldest waited linger_s."""
        with self._cond:
            while not self._stop.is_set():
                if len(self._pending) >= self._batch_max:
                    break
                if self._pending:
                    left = self._first_at + self._linger_s - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                else:
                    self._cond.wait(0.5)
            batch = self._pending[: self._batch_max]
            del self._pending[: self._batch_max]
            if self._pending:
                self._first_at = time.monotonic()
        return batch

    def _settle(self, batch: list[_Pending]) -> None:
        """Store a batch (retrying while the database fails), then acknowledge it."""
        messages = [m for _, _, _, m in batch]
        delay = 0.1
        while True:
            try:
                with self._db.transaction() as conn:
                    result = service.ingest(conn, self._store, messages, settings=self._settings)
                break
            except Exception:
                # Nothing was acknowledged: the broker keeps the batch. Try again.
                log.exception("storing %d MQTT messages failed; retrying", len(messages))
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, 5.0)
        with self._cond:  # no reconnect between the generation check and the acks
            current = self._generation
            self._client.ack_many([mid for g, mid, qos, _ in batch if g == current and qos == 1])
        t = self.totals
        t.stored += result.stored
        t.duplicates += result.duplicates
        t.rejected += result.rejected
        t.points += result.points
        for reason in result.reasons[:5]:
            log.warning("MQTT message refused: %s", reason)
        if self._on_batch is not None:
            self._on_batch(result)

    def _purge(self) -> None:
        try:
            with self._db.transaction() as conn:
                service.purge_seen(conn, older_than_ms=now_ms() - self._dedupe_ms)
        except Exception:
            log.exception("purging settled MQTT message keys failed")


def start_thread(bridge: Bridge) -> threading.Thread:
    """Run a bridge on a daemon thread (for `besmart serve` with mqtt_bridge set)."""
    thread = threading.Thread(target=bridge.run, name="mqtt-bridge", daemon=True)
    thread.start()
    return thread
