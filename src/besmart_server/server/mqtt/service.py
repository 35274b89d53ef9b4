"""Devices, dead letters, and `ingest`: one batch of MQTT messages into the series store.

Functions take a connection first and never commit: the bridge acknowledges a batch to the
broker only after the transaction `ingest` ran in has committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Final, NamedTuple

from sqlalchemy import Connection, insert, select, update

from besmart_server.schemas.devices import Device, DeviceCreated, RejectedMessage
from besmart_server.schemas.users import Role
from besmart_server.server.access import Principal
from besmart_server.server.config import Settings
from besmart_server.server.db import dbapi_connection, now_ms
from besmart_server.server.errors import AppError, Conflict, Invalid, NotFound
from besmart_server.server.mqtt import passwords, topics
from besmart_server.server.mqtt.tables import device_sensors, devices, mqtt_rejected, mqtt_seen
from besmart_server.server.mqtt.topics import Reading, Refused, Topic
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.signals import catalog, columns
from besmart_server.server.signals import service as signals
from besmart_server.server.signals.store import SeriesStore
from besmart_server.server.users.service import client_exists
from besmart_server.server.vee import worker as vee

BRIDGE_USER: Final = "besmart-bridge"
PAYLOAD_CHARS: Final = 4096
_CHUNK: Final = 400

# --- devices --------------------------------------------------------------------------------


def add_device(
    conn: Connection, *, name: str, client_cid: int, sensor_mids: Sequence[int] | None
) -> DeviceCreated:
    """A new device of a client with a fresh secret (shown once); 409 when the name is taken,
    422 when a named sensor is not the client's."""
    if not topics.DEVICE_NAME.match(name) or name == BRIDGE_USER:
        raise Invalid(
            f"{name!r} is not a device name (letters, digits, '_', '.', '-'; up to 64)",
            loc=("body", "name"),
        )
    if not client_exists(conn, client_cid):
        raise NotFound(f"Client {client_cid} not found")
    if conn.scalar(select(devices.c.id).where(devices.c.name == name)) is not None:
        raise Conflict(f"Device {name} already exists")
    mids = sorted(set(sensor_mids)) if sensor_mids else None
    if mids is not None:
        own = set(
            conn.scalars(
                select(sensors.c.mid).where(
                    sensors.c.client_cid == client_cid, sensors.c.mid.in_(mids)
                )
            )
        )
        for i, mid in enumerate(sensor_mids or ()):
            if mid not in own:
                raise Invalid(
                    f"sensors[{i}]: {mid} is not a sensor of client {client_cid}",
                    loc=("body", "sensors", i),
                )
    secret = passwords.new_secret()
    created = now_ms()
    device_id = conn.execute(
        insert(devices)
        .values(
            name=name,
            client_cid=client_cid,
            secret_hash=passwords.mosquitto_hash(secret),
            created_at=created,
        )
        .returning(devices.c.id)
    ).scalar_one()
    if mids:
        conn.execute(
            insert(device_sensors), [{"device_id": device_id, "sensor_mid": m} for m in mids]
        )
    return DeviceCreated(
        name=name,
        client_cid=client_cid,
        sensors=mids,
        created_at=created,
        revoked_at=None,
        username=name,
        secret=secret,
        topic_prefix=f"{topics.PREFIX}{name}/",
    )


def list_devices(conn: Connection, client_cids: Iterable[int] | None) -> list[Device]:
    """Devices of these clients (every client's when None), by name."""
    q = select(devices).order_by(devices.c.name)
    if client_cids is not None:
        q = q.where(devices.c.client_cid.in_(sorted(set(client_cids))))
    rows = conn.execute(q).all()
    given: dict[int, list[int]] = {}
    ids = [r.id for r in rows]
    for i in range(0, len(ids), _CHUNK):
        for did, mid in conn.execute(
            select(device_sensors.c.device_id, device_sensors.c.sensor_mid)
            .where(device_sensors.c.device_id.in_(ids[i : i + _CHUNK]))
            .order_by(device_sensors.c.sensor_mid)
        ):
            given.setdefault(int(did), []).append(int(mid))
    return [
        Device(
            name=r.name,
            client_cid=r.client_cid,
            sensors=given.get(int(r.id)),
            created_at=r.created_at,
            revoked_at=r.revoked_at,
        )
        for r in rows
    ]


def device_client(conn: Connection, name: str) -> int:
    """The client of a device (404 when there is no such device)."""
    cid = conn.scalar(select(devices.c.client_cid).where(devices.c.name == name))
    if cid is None:
        raise NotFound(f"Device {name} not found")
    return int(cid)


def revoke_device(conn: Connection, name: str) -> bool:
    """Revoke a device for good (its name stays taken); False when it was revoked already."""
    device_client(conn, name)
    done = conn.execute(
        update(devices)
        .where(devices.c.name == name, devices.c.revoked_at.is_(None))
        .values(revoked_at=now_ms())
    )
    return bool(done.rowcount)


def broker_accounts(conn: Connection) -> list[tuple[str, str]]:
    """(username, $7$ hash) of every device that may publish, for the password file."""
    rows = conn.execute(
        select(devices.c.name, devices.c.secret_hash)
        .where(devices.c.revoked_at.is_(None))
        .order_by(devices.c.name)
    )
    return [(str(n), str(h)) for n, h in rows]


def list_rejected(
    conn: Connection, client_cids: Iterable[int] | None, *, limit: int = 100
) -> list[RejectedMessage]:
    """The newest dead letters of these clients (every one when None), newest first."""
    q = select(mqtt_rejected).order_by(mqtt_rejected.c.id.desc()).limit(limit)
    if client_cids is not None:
        q = q.where(mqtt_rejected.c.client_cid.in_(sorted(set(client_cids))))
    return [
        RejectedMessage(
            id=r.id,
            received_at=r.received_at,
            client_cid=r.client_cid,
            device=r.device,
            topic=r.topic,
            payload=r.payload,
            reason=r.reason,
        )
        for r in conn.execute(q)
    ]


def owned_clients(principal: Principal, client_cid: int | None) -> list[int] | None:
    """The clients whose devices the caller administers (None: all, for admins); with a
    client_cid, that one (404 unless visible, 403 unless owner)."""
    if client_cid is not None:
        principal.require(client_cid, Role.owner, what=f"Client {client_cid}")
        return [client_cid]
    if principal.is_admin:
        return None
    return [cid for cid in principal.roles if principal.can(cid, Role.owner)]


def purge_seen(conn: Connection, *, older_than_ms: int) -> int:
    """Forget settled message keys older than this: redeliveries come within the broker's
    session expiry, republishing devices within their own window (see the README)."""
    done = conn.execute(mqtt_seen.delete().where(mqtt_seen.c.seen_at < older_than_ms))
    return int(done.rowcount or 0)


# --- ingestion ------------------------------------------------------------------------------


class Message(NamedTuple):
    """One MQTT message as the broker delivered it (a named tuple: the bridge makes one per
    message, at a third of a frozen dataclass's cost)."""

    topic: str
    payload: bytes
    arrival_ms: int


@dataclass(slots=True)
class IngestResult:
    """What became of a batch's messages; each is in exactly one count."""

    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    points: int = 0  # written (to the write-ahead table: signals.write(defer=True))
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Dev:
    id: int
    client_cid: int
    sensors: frozenset[int] | None


@dataclass(slots=True)
class _Entry:
    """One message on its way: refused (`reason`) or to be written (`topic`, `reading`)."""

    index: int
    device: str | None
    dev: _Dev | None
    key: str | None  # what a redelivery of it will share, when it has a device
    topic: Topic | None = None
    reading: Reading | None = None
    reason: str | None = None


def ingest(
    conn: Connection, store: SeriesStore, messages: Sequence[Message], *, settings: Settings
) -> IngestResult:
    """Store a batch: each valid message once (a redelivery is counted as a duplicate), each
    invalid or unauthorized one kept as a dead letter with its reason. Points go through the
    REST writes' own validation, unit conversion and store (`signals.service.write`), and
    the windows they touched are queued for validation in the same transaction, as the REST
    writes' are (`vee.worker.enqueue_write`: never failing the batch)."""
    now = now_ms()
    heads: list[Topic | str] = []
    for msg in messages:
        try:
            heads.append(topics.parse_topic(msg.topic))
        except Refused as exc:
            heads.append(exc.reason)
    # Only names a device can have are looked up (a topic's level may hold any text, U+0000
    # too, which a PostgreSQL query parameter cannot carry).
    names = {
        n
        for n in map(topics.device_of, (m.topic for m in messages))
        if n and topics.DEVICE_NAME.match(n)
    }
    devs = _devices(conn, names)
    owner = _sensor_clients(conn, {h.sensor_mid for h in heads if isinstance(h, Topic)})
    entries: list[_Entry] = []
    for i, (msg, head) in enumerate(zip(messages, heads, strict=True)):
        name = topics.device_of(msg.topic)
        dev = devs.get(name) if name else None
        try:
            if isinstance(head, str):
                raise Refused(head)
            if dev is None:
                raise Refused(f"device {head.device} is unknown or revoked")
            mid = head.sensor_mid
            if owner.get(mid) != dev.client_cid:
                raise Refused(f"sensor {mid} is not a sensor of client {dev.client_cid}")
            if dev.sensors is not None and mid not in dev.sensors:
                raise Refused(f"device {head.device} was not given sensor {mid}")
            if catalog.signal_type_by_moid(head.signal_type_moid) is None:
                raise Refused(f"signal type {head.signal_type_moid} not found")
            reading = topics.parse_payload(msg.payload, msg.arrival_ms)
            key = topics.message_key(msg.topic, reading)
            entries.append(_Entry(i, name, dev, key, head, reading))
        except Refused as exc:
            key = topics.refused_key(msg.topic, msg.payload) if dev else None
            entries.append(_Entry(i, name, dev, key, reason=exc.reason))
    result = IngestResult()
    fresh = _drop_seen(conn, entries, result)
    _write(conn, store, settings, [e for e in fresh if e.reason is None], result)
    seen: list[tuple[int, str, int]] = []
    letters = []
    for e in fresh:
        if e.dev is not None and e.key is not None:
            seen.append((e.dev.id, e.key, now))
        if e.reason is not None:
            result.rejected += 1
            result.reasons.append(e.reason)
            letters.append(_letter(messages[e.index], e))
    if seen:
        _insert_seen(conn, seen)
    if letters:
        conn.execute(insert(mqtt_rejected), letters)
    return result


def _insert_seen(conn: Connection, rows: list[tuple[int, str, int]]) -> None:
    """Settled keys by the engine's fastest bulk path (COPY: executemany on PostgreSQL costs
    a round of the pipeline per row, 0.1 s for a batch of 2,000)."""
    cur = dbapi_connection(conn).cursor()
    if conn.dialect.name == "postgresql":
        with cur.copy("COPY mqtt_seen (device_id, msg_key, seen_at) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        cur.executemany(
            "INSERT INTO mqtt_seen (device_id, msg_key, seen_at) VALUES (?, ?, ?)", rows
        )


def _text(s: str) -> str:
    """Text a dead letter can hold on both engines: PostgreSQL refuses U+0000 in text, and a
    letter that failed its insert would fail its whole batch, redelivered for ever."""
    return s.replace("\x00", "\ufffd")


def _letter(msg: Message, e: _Entry) -> dict[str, Any]:
    text = msg.payload[: PAYLOAD_CHARS * 4].decode("utf-8", "replace")[:PAYLOAD_CHARS]
    return {
        "received_at": msg.arrival_ms,
        "client_cid": e.dev.client_cid if e.dev else None,
        "device": _text((e.device or "")[:200]),
        "topic": _text(msg.topic),
        "payload": _text(text),
        "reason": _text(e.reason or ""),
    }


def _devices(conn: Connection, names: set[str]) -> dict[str, _Dev]:
    """The devices that may publish, of these names, with the sensors each was given."""
    out: dict[str, _Dev] = {}
    ordered = sorted(names)
    for i in range(0, len(ordered), _CHUNK):
        rows = conn.execute(
            select(devices.c.id, devices.c.name, devices.c.client_cid).where(
                devices.c.name.in_(ordered[i : i + _CHUNK]), devices.c.revoked_at.is_(None)
            )
        ).all()
        given: dict[int, set[int]] = {}
        for did, mid in conn.execute(
            select(device_sensors.c.device_id, device_sensors.c.sensor_mid).where(
                device_sensors.c.device_id.in_([r.id for r in rows])
            )
        ):
            given.setdefault(int(did), set()).add(int(mid))
        for r in rows:
            mids = given.get(int(r.id))
            out[str(r.name)] = _Dev(
                int(r.id), int(r.client_cid), frozenset(mids) if mids is not None else None
            )
    return out


def _sensor_clients(conn: Connection, mids: set[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    ordered = sorted(mids)
    for i in range(0, len(ordered), _CHUNK):
        for mid, cid in conn.execute(
            select(sensors.c.mid, sensors.c.client_cid).where(
                sensors.c.mid.in_(ordered[i : i + _CHUNK])
            )
        ):
            out[int(mid)] = int(cid)
    return out


def _drop_seen(conn: Connection, entries: list[_Entry], result: IngestResult) -> list[_Entry]:
    """The messages not settled before (in an earlier batch or earlier in this one)."""
    pairs = sorted({(e.dev.id, e.key) for e in entries if e.dev is not None and e.key})
    seen: set[tuple[int, str]] = set()
    cur = dbapi_connection(conn).cursor()
    if conn.dialect.name == "postgresql":
        # The whole batch as two arrays: a short query psycopg parses once (with thousands of
        # placeholders, parsing it cost more than the lookup), never prepared (a generic plan
        # of the earlier IN-list form scanned the device's every key: 55 ms against 3 ms).
        cur.execute(
            "SELECT s.device_id, s.msg_key FROM unnest(%s::int[], %s::text[]) AS k (d, m) "
            "JOIN mqtt_seen AS s ON s.device_id = k.d AND s.msg_key = k.m",
            ([d for d, _ in pairs], [k for _, k in pairs]),
            prepare=False,
        )
        seen.update((int(d), str(k)) for d, k in cur.fetchall())
    else:
        for i in range(0, len(pairs), _CHUNK):
            # A join, not `(device_id, msg_key) IN (VALUES ...)`: SQLite scans the table then.
            chunk = pairs[i : i + _CHUNK]
            values = ", ".join(["(?, ?)"] * len(chunk))
            cur.execute(
                f"WITH k (d, m) AS (VALUES {values}) SELECT s.device_id, s.msg_key "
                "FROM k JOIN mqtt_seen AS s ON s.device_id = k.d AND s.msg_key = k.m",
                [v for pair in chunk for v in pair],
            )
            seen.update((int(d), str(k)) for d, k in cur.fetchall())
    fresh = []
    for e in entries:
        if e.dev is not None and e.key is not None:
            pair = (e.dev.id, e.key)
            if pair in seen:
                result.duplicates += 1
                continue
            seen.add(pair)
        fresh.append(e)
    return fresh


_Group = tuple[int, int, int, str | None, bool]  # client, sensor, type, unit, has acq_time


def _write(
    conn: Connection,
    store: SeriesStore,
    settings: Settings,
    fresh: list[_Entry],
    result: IngestResult,
) -> None:
    """Decode each series' messages together, then write them all in one `signals.write`; a
    group that fails is retried alone, and a group that fails alone is refused. What was
    written is queued for validation."""
    groups: dict[_Group, list[_Entry]] = {}
    for e in fresh:
        t, r, d = e.topic, e.reading, e.dev
        assert t is not None
        assert r is not None
        assert d is not None
        key = (d.client_cid, t.sensor_mid, t.signal_type_moid, r.unit, "acq_time" in r.body)
        groups.setdefault(key, []).append(e)
    items: list[tuple[signals.WriteItem, list[_Entry]]] = []
    for (cid, mid, moid, unit, _), members in groups.items():
        cols, ok = _decode(members)
        if ok:
            loc = ("mqtt", len(items), "data")
            items.append((signals.WriteItem(cid, mid, moid, unit, cols, loc), ok))
    if not items:
        return
    principal = Principal(
        user_id=None, login=BRIDGE_USER, roles={it.client_cid: Role.write for it, _ in items}
    )
    try:
        with conn.begin_nested():
            result.points += signals.write(
                conn, store, principal, [it for it, _ in items], defer=True
            )
        result.stored += sum(len(ok) for _, ok in items)
        vee.enqueue_write(conn, settings, store, principal, [it for it, _ in items])
        return
    except AppError:
        pass  # some group is wrong as a whole (its unit, say): find which, alone
    written = []
    for item, ok in items:
        try:
            with conn.begin_nested():
                result.points += signals.write(conn, store, principal, [item], defer=True)
            result.stored += len(ok)
            written.append(item)
        except AppError as exc:
            for e in ok:
                e.reason = exc.detail
    vee.enqueue_write(conn, settings, store, principal, written)


def _decode(members: list[_Entry]) -> tuple[columns.Columns, list[_Entry]]:
    """One series' messages as one validated column set; a message with a bad value is
    refused with decode's own words about it, the others kept."""
    try:
        return columns.decode(_concat(members)), members
    except Invalid:
        pass
    ok = []
    for e in members:
        assert e.reading is not None
        try:
            columns.decode(e.reading.body)
            ok.append(e)
        except Invalid as exc:
            e.reason = exc.detail
    return columns.decode(_concat(ok) if ok else {"time": []}), ok


def _concat(members: list[_Entry]) -> dict[str, Any]:
    """The members' columns end to end; a column some lack gets its default for their points."""
    bodies = [e.reading.body for e in members if e.reading is not None]
    if len(bodies) == 1:
        return bodies[0]
    out: dict[str, Any] = {
        "time": list(chain.from_iterable(b["time"] for b in bodies)),
        "value": list(
            chain.from_iterable(b.get("value") or [None] * len(b["time"]) for b in bodies)
        ),
    }
    for name, default in (("origin", 1), ("type", "DBL")):
        if any(name in b for b in bodies):
            out[name] = list(
                chain.from_iterable(b.get(name) or [default] * len(b["time"]) for b in bodies)
            )
    if bodies and "acq_time" in bodies[0]:  # the group key keeps bodies with and without apart
        out["acq_time"] = list(chain.from_iterable(b["acq_time"] for b in bodies))
    return out
