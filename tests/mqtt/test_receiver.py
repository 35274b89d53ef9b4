"""The receiver's fast path cuts PUBLISH packets out of a socket buffer exactly as paho-mqtt's
own decoder reads them, and leaves every packet it does not take whole to paho."""

from __future__ import annotations

import random
import socket
import struct
import threading

from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from besmart_server.server.mqtt.receiver import BufferedClient, Channel, Raw


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (128 if n else 0))
        if not n:
            return bytes(out)


def _body(topic: bytes, payload: bytes, qos: int, mid: int) -> bytes:
    head = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"")
    return head + payload


def publish(topic: bytes, payload: bytes, *, qos: int, mid: int = 0, dup: bool = False) -> bytes:
    body = _body(topic, payload, qos, mid)
    return bytes([0x30 | (qos << 1) | (8 if dup else 0)]) + _length(len(body)) + body


def cut(buf: bytes) -> tuple[int, list[Raw]]:
    sink: list[Raw] = []
    client = BufferedClient(CallbackAPIVersion.VERSION2, manual_ack=True, sink=sink)
    return client._cut_publishes(buf, 0), sink


def test_publishes_are_cut_as_paho_decodes_them() -> None:
    rng = random.Random(19)
    packets, expected = [], []
    for i in range(300):
        # payloads across the 1-, 2- and 3-byte remaining lengths
        size = rng.choice([0, 1, 60, 126, 127, 128, 300, 16_383, 16_384, 70_000])
        payload = rng.randbytes(size)
        topic = f"besmart/v1/dev-{i % 7}/{i}/32".encode()
        qos = rng.choice([0, 1])
        mid = rng.randrange(1, 65_536) if qos else 0
        packet = publish(topic, payload, qos=qos, mid=mid, dup=rng.random() < 0.2)
        # paho's own decoder reads the same packet the same way
        decoded = _packet.decode_publish(
            packet[0], _body(topic, payload, qos, mid), MQTTProtocolVersion.MQTTv311
        )
        assert (decoded.topic, decoded.payload, decoded.mid, decoded.qos) == (
            topic,
            payload,
            mid,
            qos,
        )
        packets.append(packet)
        expected.append((mid, qos, topic, payload))
    buf = b"".join(packets)
    assert cut(buf) == (len(buf), expected)


def test_an_incomplete_packet_is_left_whole_to_paho() -> None:
    first = publish(b"besmart/v1/d/1/32", b'{"time": 1, "value": 2}', qos=1, mid=7)
    second = publish(b"besmart/v1/d/1/32", b"x" * 300, qos=1, mid=8)  # 2-byte length
    for split in range(1, len(second)):
        pos, sink = cut(first + second[:split])
        assert pos == len(first)
        assert sink == [(7, 1, b"besmart/v1/d/1/32", b'{"time": 1, "value": 2}')]


def test_other_packets_qos2_and_malformed_publishes_stop_the_cut() -> None:
    ok = publish(b"t/a", b"1", qos=1, mid=1)
    suback = b"\x90\x03\x00\x01\x01"
    qos2 = publish(b"t/a", b"1", qos=2, mid=2)
    empty_topic = publish(b"", b"1", qos=1, mid=3)
    too_long_topic = b"\x32\x04\x00\x09ab"  # says 9 topic bytes, the packet holds 2
    for stopper in (suback, qos2, empty_topic, too_long_topic, b"\x32\xff\xff\xff\xff\x01"):
        pos, sink = cut(ok + stopper + ok)
        assert pos == len(ok)
        assert [m[0] for m in sink] == [1]


def test_frames_cross_the_socket_pair_whole() -> None:
    a, b = socket.socketpair()
    left, right = Channel(a), Channel(b)
    big = ("batch", 3, 1_767_225_600_000, [(i, 1, b"t", bytes(1000)) for i in range(500)])
    # larger than the socket's buffer: the reader gets it whole while it is being sent
    sender = threading.Thread(target=lambda: (left.send(big), left.send(("ack", 3, [1, 2, 3]))))
    sender.start()
    assert right.recv() == big
    assert right.recv() == ("ack", 3, [1, 2, 3])
    sender.join()
    left.close()
    try:
        right.recv()
    except EOFError:
        pass
    else:
        raise AssertionError("a closed socket pair must read as EOF")
    right.close()
