"""The bridge's receiving process: the MQTT session, and nothing else.

The bridge is two processes so that it uses two cores: this one holds the persistent MQTT
session (paho-mqtt, `manual_ack`) and forwards each message raw — packet id, QoS, topic
bytes, payload bytes — to the storing process (`bridge.Bridge`) over a socket pair; the
storing process parses, validates and commits them, then sends back the packet ids it
committed, and only then does this process send their PUBACKs. It parses no payload and
touches no database, so receiving never waits on a commit and a commit never waits on
paho's Python.

Its life is tied to the storing process: it ignores SIGINT and SIGTERM (a Ctrl-C reaches the
whole process group; the storing process finishes its batch and then says stop) and exits at
once when its socket pair closes, i.e. when the storing process is gone, even by SIGKILL.
Nothing is lost that way: what was never acknowledged the broker sends again.

Run by the bridge as `python -m besmart_server.server.mqtt.receiver FD`; the first frame on
the socket is the broker's address and the bridge's account.
"""

from __future__ import annotations

import marshal
import os
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MessageType, MQTTErrorCode

from besmart_server.server.mqtt import topics

# (packet id, qos, topic bytes, payload bytes): a message as this process forwards it
Raw = tuple[int, int, bytes, bytes]

_PUBACK: Final = struct.Struct("!BBH")  # MQTT 3.1.1 PUBACK: type 4, remaining length 2, packet id
_PUBLISH: Final = 0x30
_QOS2: Final = 2


class Channel:
    """Length-prefixed `marshal` frames over a stream socket, between the bridge's two
    processes (never across hosts: both ends are this package). A frame is sent whole under
    a lock, so two threads of one side may send."""

    _HEAD: Final = struct.Struct("!I")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()
        self._send_lock = threading.Lock()

    def send(self, obj: Any) -> None:
        data = marshal.dumps(obj)
        with self._send_lock:
            self.sock.sendall(self._HEAD.pack(len(data)) + data)

    def recv(self) -> Any:
        """The next frame; EOFError when the other side closed."""
        (n,) = self._HEAD.unpack(self._exact(self._HEAD.size))
        return marshal.loads(self._exact(n))

    def _exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(max(n - len(self._buf), 262_144))
            if not chunk:
                raise EOFError("the other process closed the bridge's socket pair")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def close(self) -> None:
        self.sock.close()


class BufferedClient(mqtt.Client):
    """paho-mqtt's client, reading the socket 64 KiB at a time, with a fast path for
    PUBLISH packets.

    paho reads a packet in three or more `recv` calls (type, length, body) and one packet per
    pass of its network loop, each pass a `select`: at thousands of small PUBLISH packets a
    second that is most of a subscriber's time. Here one `recv` fills a buffer that paho's
    reads are served from, and a read pass goes on while the buffer holds bytes.

    With a `sink` (a list), every complete MQTT 3.1.1 PUBLISH of QoS 0 or 1 at the front of
    the buffer is cut out here and appended to it as `Raw`, instead of going through paho's
    per-packet path (a message object, topic decoding, two log calls, callback matching and
    locks: ~15 µs a message, most of a receiving process's time). Every other packet — and a
    PUBLISH that the buffer holds only part of — is paho's, whose `on_message` then appends
    the same `Raw` to the sink. Relies on paho 2.x's `_sock_recv`, `_sock_close`,
    `_in_packet` and `_packet_queue` (tests/mqtt exercise both paths on every run).
    """

    _BUFFER = 65_536

    def __init__(self, *args: Any, sink: list[Raw] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._sink = sink
        if sink is not None:
            self.on_message = self._paho_message

    def _paho_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        assert self._sink is not None
        self._sink.append((msg.mid, msg.qos, msg._topic, bytes(msg.payload)))

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
        fast = self._sink is not None and self._protocol == mqtt.MQTTv311
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._rpos < len(self._rbuf):
            if fast and self._in_packet["command"] == 0:
                self._rpos = self._cut_publishes(self._rbuf, self._rpos)
                if self._rpos >= len(self._rbuf):
                    break
            rc = super().loop_read(max_packets)
        return rc

    def _cut_publishes(self, buf: bytes, pos: int) -> int:
        """Append the complete QoS 0/1 PUBLISH packets from `pos` on to the sink; where the
        first other (or incomplete, or malformed) packet starts, for paho to read."""
        sink = self._sink
        assert sink is not None
        end = len(buf)
        while pos < end:
            head = buf[pos]
            qos = (head >> 1) & 3
            if head & 0xF0 != _PUBLISH or qos == _QOS2:
                break
            length, mult, i = 0, 1, pos + 1
            while i < end and i - pos <= 4:
                byte = buf[i]
                length += (byte & 127) * mult
                mult <<= 7
                i += 1
                if byte < 128:
                    break
            else:
                break  # the length is incomplete (or too long: paho says it is malformed)
            stop = i + length
            if stop > end:
                break
            topic_end = i + 2 + ((buf[i] << 8) | buf[i + 1]) if length >= 2 else stop + 1
            body = topic_end + (2 if qos else 0)
            if topic_end == i + 2 or body > stop:
                break  # an empty topic or one longer than the packet: paho's error handling
            mid = (buf[topic_end] << 8) | buf[topic_end + 1] if qos else 0
            sink.append((mid, qos, buf[i + 2 : topic_end], buf[body:stop]))
            pos = stop
        return pos

    def ack_many(self, mids: list[int]) -> None:
        """PUBACKs of QoS 1 messages, in this order, written as one send: `ack` queues and
        sends each 4-byte packet on its own (a wake-up and a syscall per message)."""
        if mids:
            blob = b"".join([_PUBACK.pack(0x40, 2, mid) for mid in mids])
            self._packet_queue(MessageType.PUBACK, blob, 0, 0)


class Receiver:
    """The MQTT session of the bridge: paho's network thread forwards what each read pass
    brought; the main thread sends the PUBACKs the storing process asks for."""

    def __init__(self, chan: Channel, config: dict[str, Any]) -> None:
        self._chan = chan
        self._lock = threading.Lock()
        self._generation = 0  # one per connection: packet ids name other messages after one
        self._sink: list[Raw] = []
        client = _ForwardingClient(
            self,
            CallbackAPIVersion.VERSION2,
            client_id=config["client_id"],
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
            sink=self._sink,
        )
        if config["username"] is not None:
            client.username_pw_set(config["username"], config["password"])
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        self._client = client
        self._host, self._port = str(config["host"]), int(config["port"])
        self._keepalive = int(config["keepalive"])

    # --- paho's network thread ------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            self._send(("refused", str(reason)))
            return
        with self._lock:
            self._generation += 1
        self._sink.clear()  # the broker sends these again, under this connection
        client.subscribe(topics.SUBSCRIPTION, qos=1)
        self._send(("connected", f"{self._host}:{self._port}"))

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        if any(c.is_failure for c in codes):
            self._send(("refused", f"subscription: {codes}"))
            return
        self._send(("subscribed", topics.SUBSCRIPTION))

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        with self._lock:
            self._generation += 1  # no PUBACK of the lost connection's messages from now on
        self._sink.clear()
        self._send(("disconnected", str(reason)))

    def forward(self) -> None:
        """What the read pass brought, as one frame (arrival: now, to the millisecond)."""
        if self._sink:
            batch = self._sink[:]
            self._sink.clear()
            self._send(("batch", self._generation, time.time_ns() // 1_000_000, batch))

    def _send(self, frame: Any) -> None:
        try:
            self._chan.send(frame)
        except OSError:
            os._exit(0)  # the storing process is gone (see main)

    # --- the main thread ------------------------------------------------------------------

    def run(self) -> None:
        """Connect (paho retries until the broker answers) and serve acks until told to stop."""
        self._client.connect_async(self._host, self._port, keepalive=self._keepalive)
        self._client.loop_start()
        try:
            while True:
                frame = self._chan.recv()
                if frame[0] == "ack":
                    with self._lock:  # no reconnect between the generation check and the acks
                        if frame[1] == self._generation:
                            self._client.ack_many(frame[2])
                elif frame[0] == "stop":
                    break
        finally:
            self._client.disconnect()  # after the PUBACKs queued before it
            self._client.loop_stop()


class _ForwardingClient(BufferedClient):
    """Forwards each read pass's messages as one frame, from paho's network thread."""

    def __init__(self, receiver: Receiver, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._receiver = receiver

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        self._receiver.forward()
        return rc


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    chan = Channel(socket.socket(fileno=int(argv[0])))
    try:
        receiver = Receiver(chan, chan.recv())
        receiver.run()
    except (EOFError, OSError):
        # The storing process is gone: nothing more may be acknowledged, and paho's thread
        # must not outlive it.
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
