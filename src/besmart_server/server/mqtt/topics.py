"""Topics and payloads of MQTT readings, checked for shape (pure: no database, no broker).

Topic `besmart/v1/{device}/{sensor_mid}/{signal_type_moid}`. Payload: one reading
`{"time": ms, "value": x}` (optional origin, type, unit, id), the columnar body of the v2 PUT
(`{"time": [...], "value": [...], ...}`, optional id and unit), or a bare number (time =
arrival). Here only the shape is checked; the values go through `signals.columns.decode`, the
REST writes' own validation.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import orjson

from besmart_server.schemas import ID_MAX
from besmart_server.server.fields import nul_in_json
from besmart_server.server.signals.columns import COLUMNS

PREFIX: Final = "besmart/v1/"
# Every topic under the prefix, so a device publishing to a malformed one gets a dead letter.
SUBSCRIPTION: Final = "besmart/v1/#"
# A device name is an MQTT username and one topic level: no wildcards, separators or %.
DEVICE_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SINGLE_KEYS: Final = frozenset({"time", "value", "origin", "type", "unit", "id"})
_COLUMNAR_KEYS: Final = frozenset({*COLUMNS, "unit", "id"})
MAX_ID_CHARS: Final = 200
_JSON_NUL: Final = b"\\u0000"


class Refused(Exception):
    """A message that cannot be stored; `reason` goes to the dead-letter table."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Topic:
    """Where a message's points go, as its topic says."""

    device: str
    sensor_mid: int
    signal_type_moid: int


class Reading(NamedTuple):
    """A message's points as a columnar body whose columns are lists of one length (a named
    tuple: made once per message, it costs a third of a frozen dataclass)."""

    body: dict[str, list[Any]]
    n: int
    unit: str | None
    msg_id: str | None
    bare: bool  # a bare number, timed on arrival: it has no identity to de-duplicate by


@functools.lru_cache(maxsize=65_536)  # a device publishes to the same few topics again and again
def parse_topic(topic: str) -> Topic:
    """The device, sensor and signal type a topic names."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}/" != PREFIX:
        raise Refused(f"topic {topic!r} is not besmart/v1/{{device}}/{{sensor_mid}}/{{moid}}")
    device, mid, moid = parts[2:]
    if not DEVICE_NAME.match(device):
        raise Refused(f"topic {topic!r}: {device!r} is not a device name")
    return Topic(device, _topic_id(mid, "sensor_mid", topic), _topic_id(moid, "moid", topic))


@functools.lru_cache(maxsize=65_536)
def device_of(topic: str) -> str | None:
    """The device level of a topic under the prefix, when there is one."""
    parts = topic.split("/")
    return parts[2] if len(parts) > 2 and f"{parts[0]}/{parts[1]}/" == PREFIX else None


def _topic_id(text: str, what: str, topic: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > ID_MAX:
        raise Refused(f"topic {topic!r}: {what} {text!r} is not an id")
    return int(text)


def parse_payload(payload: bytes, arrival_ms: int) -> Reading:
    """The message's points, checked for shape; the values are checked by decode later."""
    if not payload:
        raise Refused("empty payload")
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Refused(f"payload is not JSON: {exc}") from exc
    # Raw control characters are not JSON at all: a NUL can only come as the escape. Refused
    # as the REST writes refuse it (it would fail the batch's PostgreSQL text, e.g. an id).
    if _JSON_NUL in payload:
        where = nul_in_json(body, [])
        if where is not None:
            at = "".join(f"[{k!r}]" for k in where) or "the payload"
            raise Refused(f"the NUL character (U+0000) is not allowed in text: {at}")
    if type(body) in (int, float):
        if not math.isfinite(body):
            raise Refused("a bare number must be finite")
        return Reading({"time": [arrival_ms], "value": [body]}, 1, None, None, bare=True)
    if not isinstance(body, dict):
        raise Refused("payload must be a JSON object or a number")
    unit = body.get("unit")
    if unit is not None and not isinstance(unit, str):
        raise Refused("unit must be a string")
    msg_id = _msg_id(body.get("id"))
    if isinstance(body.get("time"), list):
        return _columnar(body, unit, msg_id)
    return _single(body, unit, msg_id)


def _msg_id(raw: Any) -> str | None:
    if raw is None:
        return None
    if type(raw) is int:
        return str(raw)
    if isinstance(raw, str) and 0 < len(raw) <= MAX_ID_CHARS:
        return raw
    raise Refused(f"id must be a string of 1 to {MAX_ID_CHARS} characters or an integer")


def _single(body: dict[str, Any], unit: str | None, msg_id: str | None) -> Reading:
    if not body.keys() <= _SINGLE_KEYS:
        extra = sorted(set(body) - _SINGLE_KEYS)
        raise Refused(f"unknown field(s) {', '.join(extra)} in a single reading")
    if "time" not in body:
        raise Refused("field required: time")
    if "value" not in body and body.get("type") != "RM":
        raise Refused("field required: value")
    cols: dict[str, list[Any]] = {"time": [body["time"]], "value": [body.get("value")]}
    for name in ("origin", "type"):
        if name in body:
            cols[name] = [body[name]]
    return Reading(cols, 1, unit, msg_id, bare=False)


def _columnar(body: dict[str, Any], unit: str | None, msg_id: str | None) -> Reading:
    if not body.keys() <= _COLUMNAR_KEYS:
        extra = sorted(set(body) - _COLUMNAR_KEYS)
        raise Refused(f"unknown field(s) {', '.join(extra)} in a columnar body")
    n = len(body["time"])
    cols: dict[str, list[Any]] = {}
    for name in COLUMNS:
        col = body.get(name)
        if col is None:
            continue
        if not isinstance(col, list):
            raise Refused(f"column {name!r} must be a list")
        if len(col) != n:
            raise Refused(f"column {name!r} has {len(col)} items but 'time' has {n}")
        cols[name] = col
    return Reading(cols, n, unit, msg_id, bare=False)


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p)
        h.update(b"\0")
    return h.hexdigest()


def message_key(topic: str, reading: Reading) -> str | None:
    """The identity a redelivery shares: the device's `id` when given, else the series with
    the points (time, value, origin, type, unit); None for a bare number, timed on arrival."""
    if reading.msg_id is not None:
        return "i" + reading.msg_id  # as sent (at most MAX_ID_CHARS): hashing cost 10 µs
    if reading.bare:
        return None
    canonical = orjson.dumps([reading.body, reading.unit], option=orjson.OPT_SORT_KEYS)
    return "p" + _digest(topic.encode(), canonical)


def refused_key(topic: str, payload: bytes) -> str:
    """The identity of a refused message (its id may be unreadable): topic and bytes."""
    return "r" + _digest(topic.encode(), payload)
