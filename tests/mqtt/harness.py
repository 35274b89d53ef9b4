"""A Mosquitto of the test's own (the platform's generated configuration, a free port), the
bridge as a separate process that can be killed, and devices that publish at QoS 1."""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from besmart_server.server.db import Database
from besmart_server.server.mqtt import broker as broker_config
from besmart_server.server.mqtt import service
from tests.processes import alive, children, free_port, wait_for

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Broker:
    """Mosquitto on a free port with `besmart mqtt config`'s files in `root`."""

    def __init__(self, root: Path, db: Database, *, autosave_seconds: int = 10) -> None:
        self.port = free_port()
        self.db = db
        with db.transaction(write=False) as conn:
            accounts = service.broker_accounts(conn)
        self.paths = broker_config.write_config(
            root, accounts, port=self.port, autosave_seconds=autosave_seconds
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.paths.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._listening, 10, "mosquitto to listen")

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"mosquitto exited: {self.log()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """A graceful stop: Mosquitto saves its persistence file on SIGTERM."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def sync(self) -> None:
        """Rewrite the password file from the database and reload (as device add does)."""
        with self.db.transaction(write=False) as conn:
            accounts = service.broker_accounts(conn)
        assert broker_config.sync_accounts(self.paths.root, accounts)
        time.sleep(0.3)  # SIGHUP is asynchronous

    def log(self) -> str:
        return self.paths.log.read_text() if self.paths.log.exists() else ""


class BridgeProcess:
    """`besmart mqtt bridge` in a process of its own, stoppable with SIGKILL."""

    def __init__(self, broker: Broker, database_url: str, log_dir: Path) -> None:
        self.broker = broker
        self.database_url = database_url
        self.log_dir = log_dir
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> None:
        self.runs += 1
        log = self.log_dir / f"bridge-{self.runs}.log"
        env = {
            **os.environ,
            "BESMART_DATABASE_URL": self.database_url,
            "BESMART_MQTT_CONFIG_DIR": str(self.broker.paths.root),
        }
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "besmart_server",
                    "mqtt",
                    "bridge",
                    "--broker",
                    f"mqtt://127.0.0.1:{self.broker.port}",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: both its processes
            )
        if wait:
            wait_for(lambda: b"bridge subscribed" in log.read_bytes(), 30, "the bridge")

    def kill(self, *, group: bool) -> None:
        """SIGKILL the storing process alone (its receiving process must then exit by
        itself), or both of the bridge's processes at once (`group`)."""
        assert self.proc is not None
        pid = self.proc.pid
        wait_for(lambda: children(pid), 30, "the bridge's receiving process")
        receivers = children(pid)
        if group:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        for pid in receivers:
            wait_for(lambda p=pid: not alive(p), 10, f"the orphaned receiver {pid} to exit")

    def kill_receiver(self) -> None:
        """SIGKILL the receiving process alone: the storing process starts another."""
        assert self.proc is not None
        pid = self.proc.pid
        wait_for(lambda: children(pid), 30, "the bridge's receiving process")
        (receiver,) = children(pid)
        os.kill(receiver, signal.SIGKILL)
        try:
            wait_for(lambda: children(pid) not in ([], [receiver]), 30, "a new receiving process")
        except AssertionError as exc:  # what the bridge was doing meanwhile, to read
            log = (self.log_dir / f"bridge-{self.runs}.log").read_text()
            raise AssertionError(f"{exc}; children {children(pid)}; log:\n{log[-3000:]}") from None

    def stop(self) -> str:
        """SIGTERM; the bridge finishes its batch and says what it did."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        return (self.log_dir / f"bridge-{self.runs}.log").read_text()


class Device:
    """A device that keeps every reading until the broker acknowledged it (QoS 1)."""

    def __init__(self, name: str, secret: str, port: int, *, protocol: int = mqtt.MQTTv311) -> None:
        self.name = name
        self.secret = secret
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"dev-{name}",
            clean_session=False if protocol != mqtt.MQTTv5 else None,
            protocol=protocol,
        )
        if name:
            self.client.username_pw_set(name, secret)
        self.client.max_inflight_messages_set(500)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 2)
        self.reason_codes: dict[int, Any] = {}
        self.client.on_publish = self._on_publish
        self.connect_result: Any = None
        self.client.on_connect = self._on_connect
        self.connected = threading.Event()
        # Every reading the device sent: what the device still owes the broker
        self.sent: list[Reading] = []
        self.reconnects = 0
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connect_result = reason
        if not reason.is_failure:
            self.connected.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        self.reason_codes[mid] = reason

    def publish(self, topic: str, payload: Any) -> mqtt.MQTTMessageInfo:
        raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        info = self.client.publish(topic, raw, qos=1)
        self.sent.append(Reading(topic, raw, [info], time.monotonic()))
        return info

    def unacknowledged(self) -> int:
        return sum(not r.acknowledged() for r in self.sent)

    def republish_unacknowledged(self, *, waited: float = 0.0) -> int:
        """The device's side of end-to-end safety: send again each reading none of whose
        copies the broker acknowledged within `waited` seconds of the last. The copies sent
        before stay in paho's queue and may be acknowledged first: any one delivers the
        reading (counting only the last copy, a device whose queue drained more slowly than it
        looked saw no progress while the broker acknowledged every earlier copy)."""
        now = time.monotonic()
        again = [r for r in self.sent if now - r.last >= waited and not r.acknowledged()]
        for r in again:
            r.copies.append(self.client.publish(r.topic, r.raw, qos=1))
            r.last = time.monotonic()
        return len(again)

    def reconnect(self) -> None:
        """Drop the connection and open a new one, keeping the session: paho then sends again
        everything it holds. What a device does when the broker stops acknowledging."""
        self.reconnects += 1
        sock = self.client.socket()
        if sock is not None:  # paho's loop sees the connection lost and connects again
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def state(self) -> str:
        """For a failure's message: what the device and paho's own queue hold."""
        c = self.client
        # paho's network thread changes its queue as we read it: read it under paho's own lock
        with c._out_message_mutex:
            held = collections.Counter(m.state for m in c._out_messages.values())
            inflight = c._inflight_messages
        why = collections.Counter(r.copies[-1].rc.name for r in self.sent if not r.acknowledged())
        thread = c._thread
        return (
            f"{self.name}: {self.unacknowledged()} unacknowledged (paho's rc {dict(why)}), "
            f"connected={c.is_connected()}, network thread alive="
            f"{thread is not None and thread.is_alive()}, reconnects={self.reconnects}, "
            f"paho inflight={inflight} of {c._max_inflight_messages}, held by state {dict(held)}"
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Reading:
    """One reading of a device and the copies of it the device sent (paho's handles)."""

    topic: str
    raw: bytes
    copies: list[mqtt.MQTTMessageInfo]
    last: float  # when the last copy was sent (time.monotonic)

    def acknowledged(self) -> bool:
        return any(_acknowledged(info) for info in self.copies)


def _acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    """Whether the broker acknowledged a copy. Read from paho's flag, not is_published(),
    which raises for a copy published while disconnected even after paho sent it on the next
    connection and the broker acknowledged it; a copy paho refused (its rc) is never set."""
    with info._condition:
        return bool(info._published)
