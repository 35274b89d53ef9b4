"""Sensor states (meter installation periods) and signal states: plain functions."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from besmart_server.schemas import ID_MAX
from besmart_server.schemas.sensors import SensorStateResponse, SignalStateDto
from besmart_server.schemas.users import Role
from besmart_server.server.access import (
    Principal,
    readable_filter,
    require_readable_client,
    sensor_for,
)
from besmart_server.server.db import now_ms
from besmart_server.server.errors import Conflict, Forbidden, Invalid, NotFound
from besmart_server.server.fields import (
    check_custom_fields,
    check_text,
    dump_json,
    load_json,
    parse_json,
)
from besmart_server.server.meters.tables import meter_types
from besmart_server.server.sensors.tables import sensor_types, sensors
from besmart_server.server.signals.catalog import signal_type_by_moid
from besmart_server.server.states.rules import Period, first_overlap, is_ordered
from besmart_server.server.states.tables import sensor_states, signal_states
from besmart_server.wire import VALUE_MAX

# Latest instant a state may name: 9999-12-31T23:59:59.999Z (keeps ms convertible to dates).
MAX_MS = 253_402_300_799_999


# --- reading -------------------------------------------------------------------------------


def _readable(principal: Principal) -> ColumnElement[bool] | None:
    """A filter on sensors.client_cid for what the caller can read (None: nothing)."""
    return readable_filter(principal, sensors.c.client_cid)


def _states(
    conn: Connection, where: list[ColumnElement[bool]], *, signal_type_moid: int | None = None
) -> list[SensorStateResponse]:
    """States matching `where` (on sensors/sensor_states), each with its signal states."""
    joined = sensor_states.join(sensors, sensors.c.mid == sensor_states.c.sensor_mid)
    rows = conn.execute(
        select(
            sensor_states,
            sensors.c.client_cid,
            meter_types.c.meter_type_name,
            meter_types.c.is_ami,
            meter_types.c.is_dcu,
        )
        .select_from(
            joined.outerjoin(meter_types, meter_types.c.id == sensor_states.c.meter_type_id)
        )
        .where(*where)
        .order_by(sensors.c.client_cid, sensor_states.c.sensor_mid, sensor_states.c.since)
    ).all()
    if not rows:
        return []
    signal_query = (
        select(signal_states)
        .select_from(
            signal_states.join(
                sensor_states, sensor_states.c.id == signal_states.c.sensor_state_id
            ).join(sensors, sensors.c.mid == sensor_states.c.sensor_mid)
        )
        .where(*where)
        .order_by(signal_states.c.signal_type_moid, signal_states.c.id)
    )
    if signal_type_moid is not None:
        signal_query = signal_query.where(signal_states.c.signal_type_moid == signal_type_moid)
    by_state: dict[int, list[SignalStateDto]] = defaultdict(list)
    for s in conn.execute(signal_query):
        by_state[s.sensor_state_id].append(_signal_dto(s))
    return [_state_response(r, by_state.get(r.id, [])) for r in rows]


def _state_response(row: Row[Any], signals: list[SignalStateDto]) -> SensorStateResponse:
    has_type = row.meter_type_id is not None
    return SensorStateResponse(
        sensor_state_id=row.id,
        client_cid=row.client_cid,
        sensor_mid=row.sensor_mid,
        since=row.since,
        till=row.till,
        meter_eid=row.meter_eid,
        info=load_json(row.info),
        meter_type_id=row.meter_type_id,
        meter_type_name=row.meter_type_name,
        meter_type_is_ami=bool(row.is_ami) if has_type else None,
        meter_type_is_dcu=bool(row.is_dcu) if has_type else None,
        signal_states=signals,
    )


def _signal_dto(row: Row[Any]) -> SignalStateDto:
    return SignalStateDto(
        signal_state_id=row.id,
        sensor_state_id=row.sensor_state_id,
        signal_type_moid=row.signal_type_moid,
        value_for_since=row.value_for_since,
        value_for_till=row.value_for_till,
        info=load_json(row.info),
    )


def _check_signal_type(conn: Connection, moid: int) -> None:
    if signal_type_by_moid(moid) is None:
        raise Invalid(f"Signal type {moid} not found", loc=("query", "signal_type_moid"))


def list_states(
    conn: Connection,
    principal: Principal,
    *,
    client_cid: int | None = None,
    sensor_mid: int | None = None,
    signal_type_moid: int | None = None,
) -> list[SensorStateResponse]:
    """States of the sensors the caller can read, narrowed by client and/or sensor, by
    (client, sensor, since); with `signal_type_moid` each carries only that signal's state.

    A client or sensor the caller cannot read is 404, exactly like a missing one."""
    readable = _readable(principal)
    if client_cid is not None and sensor_mid is not None:
        sensor_for(conn, principal, client_cid, sensor_mid, Role.read)
    elif client_cid is not None:
        require_readable_client(conn, principal, client_cid)
    elif sensor_mid is not None:
        owner = conn.scalar(select(sensors.c.client_cid).where(sensors.c.mid == sensor_mid))
        if owner is None or not principal.can(owner, Role.read):
            raise NotFound(f"Sensor {sensor_mid} not found")
    if signal_type_moid is not None:
        _check_signal_type(conn, signal_type_moid)
    if readable is None:
        return []
    where = [readable]
    if client_cid is not None:
        where.append(sensors.c.client_cid == client_cid)
    if sensor_mid is not None:
        where.append(sensor_states.c.sensor_mid == sensor_mid)
    return _states(conn, where, signal_type_moid=signal_type_moid)


def _one_state(conn: Connection, state_id: int) -> SensorStateResponse:
    return _states(conn, [sensor_states.c.id == state_id])[0]


def find_for_meter(
    conn: Connection,
    principal: Principal,
    *,
    meter_dev: str,
    meter_type_name: str | None = None,
    at: int | None = None,
) -> SensorStateResponse:
    """The state in force now whose meter_eid is `meter_dev`, among readable clients.

    Several candidates (one serial in two tenants): those whose meter type name matches
    `meter_type_name` (case-insensitive) win, then the latest `since`."""
    check_text(meter_dev, "meter_dev")
    check_text(meter_type_name, "meter_type_name")
    readable = _readable(principal)
    missing = NotFound(f"Sensor state for meter {meter_dev} not found")
    if readable is None:
        raise missing
    at = now_ms() if at is None else at
    where = [
        readable,
        sensor_states.c.meter_eid == meter_dev,
        sensor_states.c.since <= at,
        (sensor_states.c.till.is_(None)) | (sensor_states.c.till > at),
    ]
    found = _states(conn, where)
    if not found:
        raise missing
    wanted = (meter_type_name or "").casefold()

    def rank(s: SensorStateResponse) -> tuple[bool, int, int]:
        matches = bool(wanted) and (s.meter_type_name or "").casefold() == wanted
        return (matches, s.since, s.sensor_state_id)

    return max(found, key=rank)


# --- writing states ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateFields:
    """State fields as the query gives them; None means 'not given' (left unchanged).

    `meter_eid=""` clears the serial; `meter_type_id` may come as text (the spec types it
    as a string on PUT), where "" or "null" clears it; `info` is JSON text."""

    since: int | None = None
    till: int | None = None
    meter_eid: str | None = None
    meter_type_id: int | str | None = None
    info: str | None = None

    def __post_init__(self) -> None:
        check_text(self.meter_eid, "meter_eid")


@dataclass(frozen=True, slots=True)
class _StateOwner:
    state_id: int
    client_cid: int
    sensor_mid: int
    state_schema: str | None
    sensor_type_id: int | None


def _state_owner(conn: Connection, principal: Principal, state_id: int, role: Role) -> _StateOwner:
    """The state's sensor if the caller holds `role` on its client (404 / 403)."""
    row = conn.execute(
        select(
            sensors.c.client_cid,
            sensors.c.mid,
            sensors.c.sensor_type_id,
            sensor_types.c.sensor_state_custom_fields,
        )
        .select_from(
            sensor_states.join(sensors, sensors.c.mid == sensor_states.c.sensor_mid).outerjoin(
                sensor_types, sensor_types.c.id == sensors.c.sensor_type_id
            )
        )
        .where(sensor_states.c.id == state_id)
    ).first()
    if row is None or not principal.can(row.client_cid, Role.read):
        raise NotFound(f"Sensor state {state_id} not found")
    if not principal.can(row.client_cid, role):
        raise Forbidden(f"{role.value} role on client {row.client_cid} required")
    return _StateOwner(
        state_id, row.client_cid, row.mid, row.sensor_state_custom_fields, row.sensor_type_id
    )


def _state_schema(conn: Connection, sensor_type_id: int | None) -> str | None:
    if sensor_type_id is None:
        return None
    value = conn.scalar(
        select(sensor_types.c.sensor_state_custom_fields).where(sensor_types.c.id == sensor_type_id)
    )
    return None if value is None else str(value)


def _meter_type(conn: Connection, raw: int | str, client_cid: int) -> int | None:
    """A meter type id visible to the client (system or the client's own), or None to clear."""
    loc = ("query", "meter_type_id")
    if isinstance(raw, str):
        text = raw.strip()
        if text in ("", "null"):
            return None
        try:
            value = int(text)
        except ValueError as exc:
            raise Invalid("meter_type_id must be an integer", loc=loc, type_="int_parsing") from exc
    else:
        value = raw
    found = None
    if 0 <= value <= ID_MAX:
        # FOR SHARE: a concurrent DELETE of this type waits for us, then sees it in use (409).
        found = conn.scalar(
            select(meter_types.c.id)
            .where(
                meter_types.c.id == value,
                meter_types.c.client_cid.is_(None) | (meter_types.c.client_cid == client_cid),
            )
            .with_for_update(read=True)
        )
    if found is None:
        raise Invalid(f"Meter type {value} not found", loc=loc)
    return value


def _lock_sensor(conn: Connection, sensor_mid: int) -> None:
    """Serialize state writes of one sensor, so two overlapping periods cannot both pass."""
    conn.execute(select(sensors.c.mid).where(sensors.c.mid == sensor_mid).with_for_update())


def _check_period(
    conn: Connection, client_cid: int, sensor_mid: int, period: Period, own_id: int | None
) -> None:
    if not is_ordered(period.since, period.till):
        raise Invalid(
            f"since ({period.since}) must be earlier than till ({period.till})",
            loc=("query", "till"),
        )
    query = select(sensor_states.c.id, sensor_states.c.since, sensor_states.c.till).where(
        sensor_states.c.sensor_mid == sensor_mid
    )
    if own_id is not None:
        query = query.where(sensor_states.c.id != own_id)
    others = [Period(r.since, r.till, r.id) for r in conn.execute(query)]
    clash = first_overlap(period, others)
    if clash is not None:
        till = "open" if clash.till is None else clash.till
        raise Conflict(
            f"Sensor {client_cid}.{sensor_mid} already has state {clash.id} "
            f"from {clash.since} till {till} in that period"
        )


def create_state(
    conn: Connection,
    principal: Principal,
    *,
    client_cid: int,
    sensor_mid: int,
    fields: StateFields,
) -> SensorStateResponse:
    """A new installation period on a sensor (write role); `since` defaults to now."""
    ref = sensor_for(conn, principal, client_cid, sensor_mid, Role.write)
    _lock_sensor(conn, sensor_mid)
    since = now_ms() if fields.since is None else fields.since
    period = Period(since, fields.till)
    meter_type_id = (
        None
        if fields.meter_type_id is None
        else _meter_type(conn, fields.meter_type_id, client_cid)
    )
    info = None if fields.info is None else parse_json(fields.info, "info")
    check_custom_fields(
        info,
        _state_schema(conn, ref.sensor_type_id),
        field="info",
        what=f"states of sensor type {ref.sensor_type_id}",
    )
    _check_period(conn, client_cid, sensor_mid, period, None)
    state_id = conn.execute(
        insert(sensor_states)
        .values(
            sensor_mid=sensor_mid,
            since=since,
            till=fields.till,
            meter_eid=fields.meter_eid or None,
            meter_type_id=meter_type_id,
            info=dump_json(info),
        )
        .returning(sensor_states.c.id)
    ).scalar_one()
    return _one_state(conn, int(state_id))


def update_state(
    conn: Connection, principal: Principal, state_id: int, fields: StateFields
) -> SensorStateResponse:
    """Change only the given fields of a state (write role); 409 if it would overlap."""
    owner = _state_owner(conn, principal, state_id, Role.write)
    _lock_sensor(conn, owner.sensor_mid)
    current = conn.execute(select(sensor_states).where(sensor_states.c.id == state_id)).one()
    values: dict[str, Any] = {}
    if fields.since is not None:
        values["since"] = fields.since
    if fields.till is not None:
        values["till"] = fields.till
    if fields.meter_eid is not None:
        values["meter_eid"] = fields.meter_eid or None
    if fields.meter_type_id is not None:
        values["meter_type_id"] = _meter_type(conn, fields.meter_type_id, owner.client_cid)
    if fields.info is not None:
        info = parse_json(fields.info, "info")
        check_custom_fields(
            info,
            owner.state_schema,
            field="info",
            what=f"states of sensor type {owner.sensor_type_id}",
        )
        values["info"] = dump_json(info)
    if "since" in values or "till" in values:
        period = Period(values.get("since", current.since), values.get("till", current.till))
        _check_period(conn, owner.client_cid, owner.sensor_mid, period, state_id)
    if values:
        conn.execute(update(sensor_states).where(sensor_states.c.id == state_id).values(**values))
    return _one_state(conn, state_id)


def delete_state(conn: Connection, principal: Principal, state_id: int) -> None:
    """Remove a state and its signal states (write role)."""
    _state_owner(conn, principal, state_id, Role.write)
    conn.execute(delete(signal_states).where(signal_states.c.sensor_state_id == state_id))
    conn.execute(delete(sensor_states).where(sensor_states.c.id == state_id))


# --- signal states -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignalStateFields:
    """Counter readings as the query gives them; None means 'not given'.

    Readings may be numbers or numeric text ("1.235e+04"); the text "" or "null" clears."""

    value_for_since: float | str | None = None
    value_for_till: float | str | None = None
    info: str | None = None


def parse_reading(raw: float | str, field: str) -> float | None:
    """A finite number from a number or numeric text; None for "" / "null" (clear)."""
    loc = ("query", field)
    if isinstance(raw, str):
        text = raw.strip()
        if text.lower() in ("", "null"):
            return None
        try:
            value = float(text)
        except ValueError as exc:
            raise Invalid(f"{field} must be a number", loc=loc, type_="float_parsing") from exc
    else:
        value = float(raw)
    if not math.isfinite(value):
        raise Invalid(f"{field} must be a finite number", loc=loc, type_="finite_number")
    if abs(value) > VALUE_MAX:
        # The bound of every stored value: a reading beyond it would overflow the stitched
        # register it offsets.
        raise Invalid(
            f"{field} is beyond ±{VALUE_MAX:g}, the largest magnitude stored",
            loc=loc,
            type_="value_range",
        )
    return value


def _signal_owner(conn: Connection, principal: Principal, signal_state_id: int, role: Role) -> int:
    """The signal state's client if the caller holds `role` on it (404 / 403)."""
    cid = conn.scalar(
        select(sensors.c.client_cid)
        .select_from(
            signal_states.join(
                sensor_states, sensor_states.c.id == signal_states.c.sensor_state_id
            ).join(sensors, sensors.c.mid == sensor_states.c.sensor_mid)
        )
        .where(signal_states.c.id == signal_state_id)
    )
    if cid is None or not principal.can(cid, Role.read):
        raise NotFound(f"Signal state {signal_state_id} not found")
    if not principal.can(cid, role):
        raise Forbidden(f"{role.value} role on client {cid} required")
    return int(cid)


def _one_signal(conn: Connection, signal_state_id: int) -> SignalStateDto:
    row = conn.execute(select(signal_states).where(signal_states.c.id == signal_state_id)).one()
    return _signal_dto(row)


def create_signal_state(
    conn: Connection,
    principal: Principal,
    state_id: int,
    *,
    signal_type_moid: int,
    fields: SignalStateFields,
) -> SignalStateDto:
    """Readings of one signal for a state (write role); one per (state, signal type)."""
    _state_owner(conn, principal, state_id, Role.write)
    _check_signal_type(conn, signal_type_moid)
    since = None
    if fields.value_for_since is not None:
        since = parse_reading(fields.value_for_since, "value_for_since")
    till = None
    if fields.value_for_till is not None:
        till = parse_reading(fields.value_for_till, "value_for_till")
    info = None if fields.info is None else parse_json(fields.info, "info")
    clash = conn.scalar(
        select(signal_states.c.id).where(
            signal_states.c.sensor_state_id == state_id,
            signal_states.c.signal_type_moid == signal_type_moid,
        )
    )
    conflict = Conflict(
        f"Sensor state {state_id} already has a signal state for signal type "
        f"{signal_type_moid}" + (f": {clash}" if clash is not None else "")
    )
    if clash is not None:
        raise conflict
    try:
        new_id = conn.execute(
            insert(signal_states)
            .values(
                sensor_state_id=state_id,
                signal_type_moid=signal_type_moid,
                value_for_since=since,
                value_for_till=till,
                info=dump_json(info),
            )
            .returning(signal_states.c.id)
        ).scalar_one()
    except IntegrityError as exc:  # a concurrent insert of the same pair
        raise conflict from exc
    return _one_signal(conn, int(new_id))


def update_signal_state(
    conn: Connection, principal: Principal, signal_state_id: int, fields: SignalStateFields
) -> SignalStateDto:
    """Change only the given readings / info of a signal state (write role)."""
    _signal_owner(conn, principal, signal_state_id, Role.write)
    values: dict[str, Any] = {}
    if fields.value_for_since is not None:
        values["value_for_since"] = parse_reading(fields.value_for_since, "value_for_since")
    if fields.value_for_till is not None:
        values["value_for_till"] = parse_reading(fields.value_for_till, "value_for_till")
    if fields.info is not None:
        values["info"] = dump_json(parse_json(fields.info, "info"))
    if values:
        conn.execute(
            update(signal_states).where(signal_states.c.id == signal_state_id).values(**values)
        )
    return _one_signal(conn, signal_state_id)


def delete_signal_state(conn: Connection, principal: Principal, signal_state_id: int) -> None:
    """Remove a signal state (write role)."""
    _signal_owner(conn, principal, signal_state_id, Role.write)
    conn.execute(delete(signal_states).where(signal_states.c.id == signal_state_id))
