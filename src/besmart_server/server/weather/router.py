"""HTTP route of the weather module (thin: parse, authenticate, call the service)."""

from __future__ import annotations

import math
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from besmart_server.schemas.signals import DELTA_T_DOC, TZ_DOC, SignalResponse
from besmart_server.server.deps import BudgetDep, ConnDep, SettingsDep, StoreDep, UserOrApiKey
from besmart_server.server.errors import R401, R404, R413, Invalid
from besmart_server.server.signals import columns
from besmart_server.server.signals.router import split_delta_t
from besmart_server.server.weather import service

router = APIRouter(tags=["Weather"])

_R422: dict[int | str, dict[str, Any]] = {422: {"description": "Validation Error"}}


def _ms(value: float, name: str) -> int:
    # The spec types since/till as numbers: float milliseconds are floored to whole ms.
    if not math.isfinite(value):
        raise Invalid(f"{name} must be a finite number", loc=("query", name))
    return math.floor(value)


@router.get(
    "/api/weather/{lat}/{lon}/{signal_type_moid}/data",
    response_model=SignalResponse,
    summary="Get weather data by geoposition",
    responses={
        200: {"description": "Successfully read weather data"},
        **R401,
        **R404,
        **R413,
        **_R422,
    },
)
def get_weather_data(
    conn: ConnDep,
    _caller: UserOrApiKey,
    store: StoreDep,
    settings: SettingsDep,
    budget: BudgetDep,
    lat: Annotated[float, Path(description="Latitude")],
    lon: Annotated[float, Path(description="Longitude")],
    signal_type_moid: Annotated[int, Path(description="Signal type MOID")],
    since: Annotated[float, Query(description="Start date (UTC unix timestamp)")],
    till: Annotated[float, Query(description="End date (UTC unix timestamp)")],
    delta_t: Annotated[str | None, Query(description=DELTA_T_DOC)] = None,
    raw: Annotated[bool, Query(description="Fetch raw signal")] = False,
    output_unit_id: Annotated[int | None, Query(description="Output unit id")] = None,
    signal_origin_id: Annotated[int | None, Query(description="Signal origin id")] = None,
    is_chart: Annotated[bool, Query(description="Use expected chart output unit")] = False,
    get_last: Annotated[
        bool, Query(description="Get only records with newest acq time for the same cap times")
    ] = False,
    tz: Annotated[str | None, Query(description=TZ_DOC)] = None,
) -> Response:
    """Get weather data by geoposition (interpolated from the nearest grid points)."""
    started = time.perf_counter()
    minutes, period = split_delta_t(delta_t)
    q = service.WeatherQuery(
        lat=lat,
        lon=lon,
        signal_type_moid=signal_type_moid,
        since=_ms(since, "since"),
        till=_ms(till, "till"),
        delta_t=minutes,
        raw=raw,
        output_unit_id=output_unit_id,
        signal_origin_id=signal_origin_id,
        is_chart=is_chart,
        get_last=get_last,
        tz=tz,
        calendar=period,
    )
    body = service.read_weather(
        conn,
        store,
        q,
        radius_km=settings.weather_radius_km,
        neighbours=settings.weather_neighbours,
        budget=budget,
        started=started,
    )
    return Response(columns.dumps(body), media_type="application/json")
