"""Weather as ordinary signals: grid points are sensors of the system weather client.

Imports write each provider series through the signal store; reads run each neighbouring grid
point's series through the signal read pipeline and combine them by inverse distance.
Functions take the connection first, raise AppErrors and never commit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson
from sqlalchemy import Connection, and_, select, text

from besmart_server.schemas.users import Role
from besmart_server.server.access import Principal
from besmart_server.server.db import now_ms
from besmart_server.server.errors import Invalid, NotFound
from besmart_server.server.sensors import service as sensors
from besmart_server.server.sensors.catalog import SENSOR_TYPE_IDS
from besmart_server.server.sensors.tables import sensors as sensors_table
from besmart_server.server.signals import catalog
from besmart_server.server.signals import service as signals
from besmart_server.server.signals.calendar import Period
from besmart_server.server.signals.columns import empty_data, encode_data
from besmart_server.server.signals.pipeline import Frame, aggregate, round_significant
from besmart_server.server.signals.store import SeriesStore
from besmart_server.server.users import service as users
from besmart_server.server.users.tables import clients
from besmart_server.server.weather import clearsky
from besmart_server.server.weather.grid import (
    EARTH_RADIUS_KM,
    EXACT_KM,
    GridPoint,
    Neighbour,
    idw_frames,
    nearest,
    valid_position,
)
from besmart_server.server.weather.providers import ProviderResult
from besmart_server.wire import TYPE_DBL

WEATHER_CLIENT_NAME: Final = "Weather (system)"
WEATHER_POINT_TYPE: Final = SENSOR_TYPE_IDS["weather point"]
WEATHER_GROUP: Final = "weather"
GHI_CS: Final = "GHI_CS"
_KM_PER_DEGREE: Final = math.pi * EARTH_RADIUS_KM / 180
_INSERT_CHUNK: Final = 10_000  # points per store insert (and per progress tick)
# Grid points are sensors of a client no caller holds a role on; weather is shared data, so
# reads and imports act as this service principal once the caller is authenticated.
_SERVICE_LOGIN: Final = "weather-service"


def _service_principal(weather_cid: int, role: Role) -> Principal:
    return Principal(user_id=None, login=_SERVICE_LOGIN, roles={weather_cid: role})


# --- grid points ----------------------------------------------------------------------------


_WEATHER_LOCK_KEY = 0x6265_5758  # "beWX": the advisory lock of weather grid creation


def weather_client(conn: Connection, *, create: bool) -> int | None:
    """The system weather client's cid (created when asked and missing)."""
    if create and conn.dialect.name == "postgresql":
        # Concurrent first imports would each create a weather client (and the same grid
        # point); one lock per transaction serializes the check-then-create. SQLite writers
        # are serialized already by BEGIN IMMEDIATE.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WEATHER_LOCK_KEY})
    cid = conn.scalar(
        select(clients.c.cid)
        .where(clients.c.is_system.is_(True), clients.c.name == WEATHER_CLIENT_NAME)
        .order_by(clients.c.cid)
        .limit(1)
    )
    if cid is None and create:
        return users.create_client(conn, name=WEATHER_CLIENT_NAME, is_system=True)
    return None if cid is None else int(cid)


def grid_point_eid(lat: float, lon: float) -> str:
    """The external id of the grid point at a position (4 decimals: about 11 m)."""
    return f"wx:{lat:.4f},{lon:.4f}"


def grid_point(
    conn: Connection,
    lat: float,
    lon: float,
    *,
    source: str = "",
    elevation_m: float | None = None,
) -> int:
    """The sensor_mid of the grid point at (lat, lon), created on first use."""
    if not valid_position(lat, lon):
        raise Invalid(f"Not a position: lat {lat}, lon {lon}", loc=("query", "lat"))
    cid = weather_client(conn, create=True)
    assert cid is not None
    eid = grid_point_eid(lat, lon)
    mid = conn.scalar(
        select(sensors_table.c.mid).where(
            sensors_table.c.client_cid == cid, sensors_table.c.sensor_eid == eid
        )
    )
    if mid is not None:
        return int(mid)
    info: dict[str, Any] = {"provider": source}
    if elevation_m is not None and math.isfinite(elevation_m):
        info["elevation_m"] = elevation_m
    created = sensors.create_sensor(
        conn,
        _service_principal(cid, Role.owner),
        client_cid=cid,
        fields=sensors.SensorFields(
            name=f"Weather {lat:.4f}, {lon:.4f}",
            sensor_type_id=WEATHER_POINT_TYPE,
            sensor_eid=eid,
            lat=round(lat, 4),
            lon=round(lon, 4),
            info=orjson.dumps(info).decode(),
        ),
    )
    return created.sensor_mid


def grid_points_near(conn: Connection, lat: float, radius_km: float) -> list[tuple[int, GridPoint]]:
    """(client_cid, point) of the weather points in the latitude band a radius can reach."""
    # Only latitude is narrowed in SQL: a longitude band breaks at the date line and the poles,
    # and the haversine filter that follows is exact anyway. One query, joined to the client,
    # because this runs on every weather read.
    reach = radius_km / _KM_PER_DEGREE + 1e-6
    rows = conn.execute(
        select(
            sensors_table.c.client_cid,
            sensors_table.c.mid,
            sensors_table.c.lat,
            sensors_table.c.lon,
        )
        .select_from(sensors_table.join(clients, clients.c.cid == sensors_table.c.client_cid))
        .where(
            and_(
                clients.c.is_system.is_(True),
                clients.c.name == WEATHER_CLIENT_NAME,
                sensors_table.c.sensor_type_id == WEATHER_POINT_TYPE,
                sensors_table.c.lat.is_not(None),
                sensors_table.c.lon.is_not(None),
                sensors_table.c.lat >= lat - reach,
                sensors_table.c.lat <= lat + reach,
            )
        )
    )
    return [(int(r.client_cid), GridPoint(int(r.mid), float(r.lat), float(r.lon))) for r in rows]


# --- imports --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What one import stored."""

    sensor_mid: int
    lat: float
    lon: float
    points: dict[str, int]  # by signal symbol

    @property
    def total(self) -> int:
        """Points over all series."""
        return sum(self.points.values())


def import_weather(
    conn: Connection,
    result: ProviderResult,
    lat: float | None = None,
    lon: float | None = None,
    *,
    store: SeriesStore | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Store a provider run at a grid point (the result's own position unless given).

    Each series is written with the run's `acq_time` as its version (stored as an import, so
    re-importing the same run replaces it and a new run adds a new version beside it).
    `progress` is called with the number of points after each chunk written.
    """
    lat = result.lat if lat is None else lat
    lon = result.lon if lon is None else lon
    store = store or SeriesStore(conn.dialect.name)
    mid = grid_point(conn, lat, lon, source=result.source, elevation_m=result.elevation_m)
    wanted = []
    for symbol in result:
        t = catalog.signal_type_by_symbol(symbol)
        if t is None or t.group != WEATHER_GROUP or symbol == GHI_CS:
            raise Invalid(f"{symbol} is not a stored weather signal", loc=("body", symbol))
        wanted.append((symbol, t.moid))
    ids = store.series_ids(conn, [(mid, m) for _, m in wanted if len(result[_])], create=True)
    counts: dict[str, int] = {}
    for symbol, moid in wanted:
        s = result[symbol]
        n = int(s.time.shape[0])
        counts[symbol] = n
        if not n:
            continue
        frame = Frame(
            s.time.astype(np.int64),
            np.full(n, s.origin, dtype=np.int64),
            np.full(n, s.acq_time * 1000, dtype=np.int64),  # an import's acq: ms x 1000
            np.full(n, TYPE_DBL, dtype=np.int8),
            s.value.astype(np.float64),
        )
        for lo in range(0, n, _INSERT_CHUNK):
            part = frame.take(np.arange(lo, min(lo + _INSERT_CHUNK, n)))
            store.insert(conn, np.full(len(part), ids[(mid, moid)], dtype=np.int64), part)
            if progress is not None:
                progress(len(part))
    return ImportSummary(mid, lat, lon, counts)


# --- reads ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WeatherQuery:
    """A weather read: position, signal type and the signal read's parameters."""

    lat: float
    lon: float
    signal_type_moid: int
    since: int
    till: int
    delta_t: int | None = None
    raw: bool = False
    output_unit_id: int | None = None
    signal_origin_id: int | None = None
    is_chart: bool = False
    get_last: bool = False
    tz: str | None = None  # calendar buckets (signals.ReadQuery.tz)
    calendar: Period | None = None

    def signal_query(self, cid: int, mid: int, *, newest_only: bool) -> signals.ReadQuery:
        """The same read of one grid point's series."""
        return signals.ReadQuery(
            client_cid=cid,
            sensor_mid=mid,
            signal_type_moid=self.signal_type_moid,
            since=self.since,
            till=self.till,
            get_last=self.get_last or newest_only,
            signal_origin_id=self.signal_origin_id,
            delta_t=self.delta_t,
            raw=self.raw,
            output_unit_id=self.output_unit_id,
            is_chart=self.is_chart,
            tz=self.tz,
            calendar=self.calendar,
        )


def check_weather_query(q: WeatherQuery) -> catalog.SignalType:
    """422 for a bad position or window, 404 for a signal type that is not weather."""
    if not (math.isfinite(q.lat) and -90 <= q.lat <= 90):
        raise Invalid("lat must be a number in [-90, 90]", loc=("path", "lat"))
    if not (math.isfinite(q.lon) and -180 <= q.lon <= 180):
        raise Invalid("lon must be a number in [-180, 180]", loc=("path", "lon"))
    signals.check_query(q.signal_query(0, 0, newest_only=False), ("query",))
    t = catalog.signal_type_by_moid(q.signal_type_moid)
    if t is None or t.group != WEATHER_GROUP:
        raise NotFound(f"Signal type {q.signal_type_moid} is not a weather signal")
    return t


def _clear_sky(q: WeatherQuery, t: catalog.SignalType, budget_limit: int) -> signals.FrameRead:
    """GHI_CS for the query: computed, origin 3, through the same aggregation and units."""
    as_signal = q.signal_query(0, 0, newest_only=False)
    out_unit = signals.output_unit(as_signal, t, ("query",))
    if q.signal_origin_id not in (None, clearsky.CLEAR_SKY_ORIGIN):
        return signals.FrameRead(Frame.empty(), out_unit, 0.0)
    # Sample finely enough that each delta_t bucket averages whole, equal steps.
    step = clearsky.DEFAULT_STEP_MINUTES
    if q.delta_t:
        step = max(d for d in range(1, min(q.delta_t, step) + 1) if q.delta_t % d == 0)
    since, till = clearsky.computable(q.since, q.till)
    if (till - since) // (step * 60_000) > budget_limit:
        signals.ReadBudget(budget_limit).take(budget_limit + 1)  # 413, as any too-large read
    f = clearsky.clear_sky_frame(
        q.lat, q.lon, q.since, q.till, step_minutes=step, acq=now_ms() * 1000
    )
    buckets = signals.buckets_of(as_signal, ("query",))
    if buckets is not None:
        f = aggregate(f, kind=t.time_series_type, since=q.since, till=q.till, buckets=buckets)
    value = f.value
    if out_unit.unit_id != t.unit.unit_id:
        value = catalog.convert(value, t.unit, out_unit)
    # Computed, averaged, converted: 15 significant digits, as every computed value.
    f = Frame(f.time, f.origin, f.acq, f.type, round_significant(value))
    return signals.FrameRead(f, out_unit, 0.0)


def neighbours_of(
    conn: Connection, lat: float, lon: float, *, radius_km: float, k: int
) -> tuple[int, list[Neighbour]]:
    """The weather client and the grid points that answer for (lat, lon); 404 if none."""
    near = grid_points_near(conn, lat, radius_km)
    found = nearest([p for _, p in near], lat, lon, radius_km=radius_km, k=k)
    if not found:
        raise NotFound(f"No weather grid point within {radius_km:g} km of ({lat:g}, {lon:g})")
    return near[0][0], found


def read_weather_frame(
    conn: Connection,
    store: SeriesStore,
    q: WeatherQuery,
    *,
    radius_km: float,
    neighbours: int,
    budget: signals.ReadBudget,
) -> signals.FrameRead:
    """A weather series at any position, as a Frame in its output unit.

    An exact grid point answers with its own series, every version as the signal read gives
    it. Elsewhere each neighbour's series goes through the signal read (newest versions, origin,
    delta_t aggregation, unit) and the results are combined per (time, origin) by inverse
    distance, each time using the neighbours that have a value there. GHI_CS is computed.
    """
    t = check_weather_query(q)
    budget.check_window(q.since, q.till, q.signal_query(0, 0, newest_only=False).window_delta_t())
    if t.symbol == GHI_CS:
        return _clear_sky(q, t, budget.left)
    s0 = time.perf_counter()
    cid, found = neighbours_of(conn, q.lat, q.lon, radius_km=radius_km, k=neighbours)
    storage = time.perf_counter() - s0
    reader = _service_principal(cid, Role.read)
    if len(found) == 1 and found[0].distance_km < EXACT_KM:
        q_own = q.signal_query(cid, found[0].point.key, newest_only=False)
        own = signals.read_frame(conn, store, reader, q_own, budget=budget)
        return signals.FrameRead(own.frame, own.unit, own.storage_s + storage)
    parts = [
        signals.read_frame(
            conn, store, reader, q.signal_query(cid, n.point.key, newest_only=True), budget=budget
        )
        for n in found
    ]
    f = idw_frames([p.frame for p in parts], [n.weight for n in found])
    return signals.FrameRead(f, parts[-1].unit, storage + sum(p.storage_s for p in parts))


def read_weather(
    conn: Connection,
    store: SeriesStore,
    q: WeatherQuery,
    *,
    radius_km: float,
    neighbours: int,
    budget: signals.ReadBudget,
    started: float | None = None,
) -> dict[str, Any]:
    """read_weather_frame as a SignalResponse (client_cid/sensor_mid null)."""
    t0 = time.perf_counter() if started is None else started
    got = read_weather_frame(
        conn, store, q, radius_km=radius_km, neighbours=neighbours, budget=budget
    )
    f = got.frame
    return {
        "client_cid": None,
        "sensor_mid": None,
        "signal_type_moid": q.signal_type_moid,
        "unit": got.unit.symbol,
        "data": encode_data(f) if len(f) else empty_data(),
        "time_tstorage": got.storage_s,
        "time_other": max(time.perf_counter() - t0 - got.storage_s, 0.0),
        **({"tz": q.tz} if q.tz is not None else {}),
    }
