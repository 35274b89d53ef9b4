"""The bridge: a persistent MQTT session whose messages are stored, then acknowledged.

Two processes, so that receiving and storing each have a core: `receiver` (a child process)
holds the MQTT session and forwards each message raw; `Bridge` (here, in the process that
runs it) takes up to `batch_max` of them (or what arrived within `linger_s` of the first),
stores them in one transaction (`service.ingest`) and only after the commit asks the
receiver for their PUBACKs, in arrival order as MQTT requires. Until then the broker keeps
them: a bridge killed at any point — either process or both — gets them again on its next
connection (same client id, clean_session false), and `ingest` stores a redelivered message
once. After a reconnect, messages of the old connection are never acknowledged (their packet
ids may name other messages now): the broker sends them again. A receiver that dies is
started again; one whose storing process died exits on its own.
"""

from __future__ import annotations

import gc
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from besmart_server.server.config import Settings
from besmart_server.server.db import Database, now_ms
from besmart_server.server.mqtt import broker, service
from besmart_server.server.mqtt.receiver import Channel
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


# (receiver process number, connection generation, packet id, qos, message)
_Pending = tuple[int, int, int, int, Message]


class Bridge:
    """Subscribes to every device topic and stores what arrives; `run` until `stop`."""

    def __init__(
        self,
        db: Database,
        address: BrokerAddress,
        *,
        settings: Settings,
        client_id: str = CLIENT_ID,
        batch_max: int = 5000,
        linger_s: float = 0.2,
        dedupe_days: float = 7.0,
    ) -> None:
        self._db = db
        self._settings = settings  # what ingest needs of them: validation after writes
        self._store = SeriesStore(db.dialect)
        self._address = address
        self._client_id = client_id
        self._batch_max = batch_max
        self._linger_s = linger_s
        self._dedupe_ms = int(dedupe_days * 86_400_000)
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._first_at = 0.0  # monotonic time the oldest pending message arrived
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.totals = IngestResult()
        self._link = 0  # the receiver process's number: acks go only to the one that delivered
        self._chan: Channel | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    # --- the receiver process and the thread that reads what it forwards ---------------------

    def _start_receiver(self) -> None:
        ours, theirs = socket.socketpair()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "besmart_server.server.mqtt.receiver", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        chan = Channel(ours)
        a = self._address
        chan.send(
            {
                "host": a.host,
                "port": a.port,
                "username": a.username,
                "password": a.password,
                "client_id": self._client_id,
                "keepalive": 30,
            }
        )
        with self._cond:
            self._link += 1
            self._chan = chan
        self._reader = threading.Thread(
            target=self._read, args=(chan, self._link), name="mqtt-receiver-link", daemon=True
        )
        self._reader.start()

    def _read(self, chan: Channel, link: int) -> None:
        """Queue what the receiver forwards until its socket closes."""
        try:
            while True:
                frame = chan.recv()
                kind = frame[0]
                if kind == "batch":
                    _, generation, arrival, raws = frame
                    items = [
                        (link, generation, mid, qos, Message(_topic(t), p, arrival))
                        for mid, qos, t, p in raws
                    ]
                    with self._cond:
                        if not self._pending:
                            self._first_at = time.monotonic()
                        self._pending.extend(items)
                        if len(self._pending) >= self._batch_max:
                            self._cond.notify()
                elif kind == "subscribed":
                    self.connected.set()
                    log.info("bridge subscribed to %s", frame[1])
                elif kind == "connected":
                    log.info("bridge connected to %s", frame[1])
                elif kind == "disconnected":
                    self.connected.clear()
                    if not self._stop.is_set():
                        log.warning("bridge disconnected (%s); reconnecting", frame[1])
                elif kind == "refused":
                    log.error("broker refused the bridge: %s", frame[1])
        except (EOFError, OSError):
            pass
        self.connected.clear()
        with self._cond:
            # Never acknowledged: the broker sends them again to the next receiver.
            self._pending = [p for p in self._pending if p[0] != link]
            if self._chan is chan:
                self._chan = None
            self._cond.notify()

    def _stop_receiver(self) -> None:
        with self._cond:
            chan, self._chan = self._chan, None
        if chan is not None:
            with suppress(OSError):
                chan.send(("stop",))
        self._reap()
        if chan is not None:
            chan.close()
        if self._reader is not None:
            self._reader.join(timeout=10)

    def _reap(self) -> int | None:
        """The receiver's exit code, once it has exited (killed when it will not)."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return self._proc.wait()

    # --- the bridge's thread --------------------------------------------------------------

    def stop(self) -> None:
        """Finish the batch in hand, then disconnect."""
        self._stop.set()
        with self._cond:
            self._cond.notify()

    def run(self) -> None:
        """Start the receiver (it retries until the broker answers), then store batches until
        `stop`; a receiver that died is started again."""
        next_purge = time.monotonic()
        self._start_receiver()
        try:
            while not self._stop.is_set():
                if self._chan is None:
                    log.error(
                        "the bridge's receiving process ended (%s); starting it again",
                        self._reap(),
                    )
                    if self._stop.wait(1.0):
                        break
                    self._start_receiver()
                batch = self._take()
                if batch:
                    self._settle(batch)
                if time.monotonic() >= next_purge:
                    self._purge()
                    next_purge = time.monotonic() + PURGE_EVERY_S
        finally:
            self._stop_receiver()

    def _take(self) -> list[_Pending]:
        """Up to batch_max messages, once that many wait or the oldest waited linger_s."""
        with self._cond:
            while not self._stop.is_set() and self._chan is not None:
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
        messages = [m for *_, m in batch]
        delay = 0.1
        while True:
            try:
                # settle=False: a batch reads no blocks and defers its points (store.py)
                with _collector_paused(), self._db.transaction(settle=False) as conn:
                    result = service.ingest(conn, self._store, messages, settings=self._settings)
                break
            except Exception:
                # Nothing was acknowledged: the broker keeps the batch. Try again.
                log.exception("storing %d MQTT messages failed; retrying", len(messages))
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, 5.0)
        self._acknowledge(batch)
        t = self.totals
        t.stored += result.stored
        t.duplicates += result.duplicates
        t.rejected += result.rejected
        t.points += result.points
        for reason in result.reasons[:5]:
            log.warning("MQTT message refused: %s", reason)

    def _acknowledge(self, batch: list[_Pending]) -> None:
        """Ask the receiver that delivered them for the PUBACKs, one frame per connection; the
        receiver drops those of a connection it no longer has."""
        with self._cond:
            link, chan = self._link, self._chan
        if chan is None:
            return  # the receiver died: the broker sends them again
        runs: list[tuple[int, list[int]]] = []
        for lnk, generation, mid, qos, _ in batch:
            if lnk != link or qos != 1:
                continue
            if not runs or runs[-1][0] != generation:
                runs.append((generation, []))
            runs[-1][1].append(mid)
        try:
            for generation, mids in runs:
                chan.send(("ack", generation, mids))
        except OSError:
            pass  # it died meanwhile: the broker sends them again

    def _purge(self) -> None:
        try:
            with self._db.transaction() as conn:
                service.purge_seen(conn, older_than_ms=now_ms() - self._dedupe_ms)
        except Exception:
            log.exception("purging settled MQTT message keys failed")


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while a batch is stored: the batch's tens of thousands of
    objects all live until it ends, so the collector scanned them again and again as they
    aged (a third of the storing process's CPU, `bench.mqtt`), and none is part of a cycle:
    reference counting frees them. Off for the whole process while it lasts (no collection
    in the server's other threads either, for those milliseconds); back on afterwards."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _topic(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")  # refused by parse_topic, then


def start_thread(bridge: Bridge) -> threading.Thread:
    """Run a bridge on a daemon thread (for `besmart serve` with mqtt_bridge set)."""
    thread = threading.Thread(target=bridge.run, name="mqtt-bridge", daemon=True)
    thread.start()
    return thread
