"""HTTP routes of the signals module (thin: parse, authorize, call the service).

The data routes decode bodies with orjson and numpy (never pydantic), run the storage work in
the thread pool inside one transaction of their own, and answer orjson bytes; the pydantic
schemas only document them in OpenAPI.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from besmart_server.schemas import ID_MAX
from besmart_server.schemas.signals import (
    AS_OF_DOC,
    DELTA_T_DOC,
    TZ_DOC,
    CapResponse,
    GetSignalRequest,
    PutMultipleSignalsRequest,
    SignalData,
    SignalResponse,
    SignalTypeResponse,
    UnitResponse,
)
from besmart_server.server.access import Principal
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.deps import (
    BearerToken,
    BudgetDep,
    ConnDep,
    CurrentUser,
    DatabaseDep,
    ReadingDep,
    StoreDep,
    UserOwnTransactions,
    read_budget,
    token_user,
)
from besmart_server.server.errors import R401, R403, R404, R413, AppError, Invalid, TooLarge
from besmart_server.server.signals import calendar, columns, service
from besmart_server.server.signals.calendar import Period
from besmart_server.server.signals.observers import WriteObserver
from besmart_server.server.signals.store import SeriesStore

router = APIRouter(tags=["Signals"])

_JSON = "application/json"
_R422: dict[int | str, dict[str, Any]] = {422: {"description": "Validation Error"}}
_ITEMS = TypeAdapter(list[GetSignalRequest])


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)  # SignalData is a component already (through SignalResponse)
    return schema


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {_JSON: {"schema": schema}}}}


_PUT_ONE_BODY = _body(_schema(SignalData))
_PUT_MANY_BODY = _body({"type": "array", "items": _schema(PutMultipleSignalsRequest)})
_POST_MANY_BODY = _body({"type": "array", "items": _schema(GetSignalRequest)})


Caller = UserOwnTransactions
ClientCid = Annotated[int, Path(description="Client CID", ge=0, le=ID_MAX)]
SensorMid = Annotated[int, Path(description="Sensor MID", ge=0, le=ID_MAX)]
SignalTypeMoid = Annotated[int, Path(description="Signal type MOID", ge=0, le=ID_MAX)]
# A read's window, shared by every route that reads one series (data, chart, quality).
Since = Annotated[int, Query(description="Start (UTC unix ms, inclusive)")]
Till = Annotated[int, Query(description="End (UTC unix ms, exclusive)")]
AsOf = Annotated[int | None, Query(description=AS_OF_DOC)]
Tz = Annotated[str | None, Query(description=TZ_DOC)]


def split_delta_t(raw: str | None) -> tuple[int | None, Period | None]:
    """`delta_t` of a query string: whole minutes, or a calendar period; 422 otherwise."""
    try:
        value = calendar.parse_delta_t(raw)
    except calendar.CalendarError as exc:
        raise Invalid(str(exc), loc=("query", exc.field), type_="int_parsing") from exc
    return (None, value) if isinstance(value, str) else (value, None)


def _json(body: Any, status: int = 200) -> Response:
    return Response(columns.dumps(body), status_code=status, media_type=_JSON)


# --- catalog and clock ----------------------------------------------------------------------


@router.get(
    "/api/sensors/signals/types",
    response_model=list[SignalTypeResponse],
    summary="Get signals types",
    responses={200: {"description": "Successfully read signals types"}, **R401},
)
def get_signal_types(_user: CurrentUser) -> list[SignalTypeResponse]:
    """Get signals types."""
    return service.list_signal_types()


@router.get(
    "/api/units",
    response_model=list[UnitResponse],
    summary="Get units",
    responses={200: {"description": "Successfully read units"}, **R401},
)
def get_units(_user: CurrentUser) -> list[UnitResponse]:
    """Get units (the ids that output_unit_id takes)."""
    return service.list_units()


@router.get(
    "/api/time",
    summary="Get server time",
    response_model=float,
    responses={200: {"description": "The server's clock as a bare number"}, **R401},
)
def get_time(
    _user: CurrentUser,
    unit: Annotated[Literal["s", "ms"], Query(description="s (float) or ms (integer)")] = "s",
) -> Response:
    """Get server time (UTC unix seconds or milliseconds)."""
    now_ns = time.time_ns()
    value: float | int = now_ns // 1_000_000 if unit == "ms" else round(now_ns / 1e9, 3)
    return _json(value)


# --- reads ----------------------------------------------------------------------------------


@router.get(
    "/api/sensors/{client_cid}.{sensor_mid}/signals/cap",
    response_model=CapResponse,
    summary="Get newest capture time",
    responses={200: {"description": "Newest stored capture time"}, **R401, **R404},
)
def get_cap(
    conn: ConnDep,
    user: CurrentUser,
    store: StoreDep,
    client_cid: ClientCid,
    sensor_mid: SensorMid,
    signal_type_moid: Annotated[int | None, Query(ge=0, le=ID_MAX)] = None,
    signal_origin_id: Annotated[int | None, Query(ge=0, le=ID_MAX)] = None,
) -> Response:
    """Get the newest capture time stored for a signal (ms, or null)."""
    cap = service.cap_max(
        conn,
        store,
        user,
        client_cid,
        sensor_mid,
        signal_type_moid=signal_type_moid,
        signal_origin_id=signal_origin_id,
    )
    return _json({"cap_max": cap})


@router.get(
    "/api/sensors/{client_cid}.{sensor_mid}/signals/{signal_type_moid}/data",
    response_model=SignalResponse,
    summary="Get signal data",
    description="Using this endpoint client can get signal data. `as_of` reads the data as it "
    "stood at a past time (only versions acquired before it); a stitched counter read answers "
    "`warnings` when a meter swap lacks a reading and the server had to assume one.",
    responses={200: {"description": "Successfully read signal data"}, **R401, **R404, **R413},
)
async def get_signal_data(
    reading: ReadingDep,
    store: StoreDep,
    budget: BudgetDep,
    client_cid: ClientCid,
    sensor_mid: SensorMid,
    signal_type_moid: SignalTypeMoid,
    since: Since,
    till: Till,
    get_last: Annotated[
        bool, Query(description="Get only records with newest acq time for the same cap times")
    ] = False,
    delta_t: Annotated[str | None, Query(description=DELTA_T_DOC)] = None,
    raw: Annotated[bool, Query(description="Fetch raw signal")] = False,
    apply_multiplier: Annotated[bool, Query(description="Apply multiplier")] = False,
    output_unit_id: Annotated[int | None, Query(description="Output unit id")] = None,
    signal_origin_id: Annotated[int | None, Query(description="Signal origin id")] = None,
    is_chart: Annotated[bool, Query(description="Convert to the chart unit")] = False,
    as_of: AsOf = None,
    tz: Tz = None,
) -> Response:
    """Get signal data."""
    started = time.perf_counter()
    minutes, period = split_delta_t(delta_t)
    q = service.ReadQuery(
        client_cid=client_cid,
        sensor_mid=sensor_mid,
        signal_type_moid=signal_type_moid,
        since=since,
        till=till,
        get_last=get_last,
        signal_origin_id=signal_origin_id,
        delta_t=minutes,
        raw=raw,
        apply_multiplier=apply_multiplier,
        output_unit_id=output_unit_id,
        is_chart=is_chart,
        as_of=as_of,
        tz=tz,
        calendar=period,
    )

    def work(conn: Connection, user: Principal) -> bytes:
        return columns.dumps(service.read(conn, store, user, q, budget=budget, started=started))

    return Response(await run_in_threadpool(reading.run, work), media_type=_JSON)


def _parse_read_items(raw: bytes, settings: Settings) -> list[service.ReadQuery]:
    body = columns.loads(raw)
    if not isinstance(body, list):
        raise Invalid("Expected a list of signal requests", loc=("body",), type_="list_type")
    if len(body) > settings.max_items_per_request:
        raise TooLarge(
            f"{len(body)} items in one request; at most {settings.max_items_per_request} "
            "(max_items_per_request)"
        )
    try:
        items = _ITEMS.validate_python(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Invalid(first["msg"], loc=("body", *first["loc"]), type_=str(first["type"])) from exc
    return [
        service.ReadQuery(
            client_cid=r.client_cid,
            sensor_mid=r.sensor_mid,
            signal_type_moid=r.signal_type_moid,
            since=r.since,
            till=r.till,
            get_last=r.last_acq,
            signal_origin_id=r.signal_origin_id,
            delta_t=None if isinstance(r.delta_t, str) else r.delta_t,
            raw=r.raw,
            apply_multiplier=r.apply_multiplier,
            output_unit_id=r.output_unit_id,
            is_chart=r.is_chart,
            as_of=r.as_of,
            tz=r.tz,
            calendar=r.delta_t if isinstance(r.delta_t, str) else None,
        )
        for r in items
    ]


def _read_many(
    db: Database,
    store: SeriesStore,
    user: Principal,
    qs: list[service.ReadQuery],
    budget: service.ReadBudget,
) -> bytes:
    with db.reads() as conn:
        out = service.read_many(conn, store, user, qs, budget=budget)
    return columns.dumps(out)


_POST_DOC: dict[str, Any] = {
    "response_model": list[SignalResponse],
    "summary": "Get multiple signals data",
    "responses": {
        200: {"description": "Successfully read signal data"},
        **R401,
        **R413,
        **_R422,
    },
    "openapi_extra": _POST_MANY_BODY,
}


async def _post_many(
    request: Request, db: Database, store: SeriesStore, user: Principal
) -> Response:
    settings: Settings = request.app.state.settings
    qs = _parse_read_items(await request.body(), settings)
    body = await run_in_threadpool(_read_many, db, store, user, qs, read_budget(settings))
    return Response(body, media_type=_JSON)


@router.post("/api/sensors/signals/data/v2", **_POST_DOC)
async def post_signals_data_v2(
    request: Request, db: DatabaseDep, store: StoreDep, user: Caller
) -> Response:
    """Get multiple signals data."""
    return await _post_many(request, db, store, user)


@router.post(
    "/api/sensors/signals/data", **_POST_DOC | {"summary": "Get multiple signals data (legacy)"}
)
async def post_signals_data(
    request: Request, db: DatabaseDep, store: StoreDep, user: Caller
) -> Response:
    """Get multiple signals data (legacy path; items may say get_last and origin_id)."""
    return await _post_many(request, db, store, user)


# --- writes ---------------------------------------------------------------------------------


def _write(
    request: Request,
    db: Database,
    store: SeriesStore,
    user: Principal,
    items: list[service.WriteItem],
    reason: str | None,
) -> int:
    with db.transaction(write=True, settle=False) as conn:
        return _store_items(conn, request, store, user, items, reason)


def _store_items(
    conn: Connection,
    request: Request,
    store: SeriesStore,
    user: Principal,
    items: list[service.WriteItem],
    reason: str | None,
) -> int:
    # The points go to the write-ahead table (store.py), merged into their blocks by the next
    # transaction that reads, or the validation worker's: this one reads none of them (an
    # observer that does merges them first). The observers (validation: its audit of
    # corrections and the windows to validate) write in the same transaction, so nothing is
    # lost.
    n = service.write(conn, store, user, items, defer=True)
    observers: list[WriteObserver] = request.app.state.write_observers
    for observer in observers:
        observer.written(conn, store, user, items, reason=reason)
    return n


def _write_many(request: Request, token: str, raw: bytes, reason: str | None) -> None:
    """The multi-series PUT in one trip to the thread pool: the body parsed, then the caller
    checked in the write's own transaction (on PostgreSQL a transaction of its own for the
    check was a pool checkout with its ping, a BEGIN and a COMMIT more: four round trips of a
    request's 17), then the write. A body that does not parse is answered after the check on
    a read-only connection, so a bad token is a 401 whatever the body, as before."""
    state = request.app.state
    settings: Settings = state.settings
    db: Database = state.db
    try:
        items = _parse_many(raw, settings)
    except AppError:
        with db.reads() as conn:
            token_user(conn, settings, token)
        raise
    with db.transaction(write=True, settle=False) as conn:
        user = token_user(conn, settings, token)
        _store_items(conn, request, state.store, user, items, reason)


def _too_many_points(n: int, settings: Settings) -> TooLarge:
    return TooLarge(
        f"{n} points in one request; at most {settings.max_points_per_request} "
        "(max_points_per_request): split the request"
    )


def _parse_one(raw: bytes, settings: Settings) -> columns.Columns:
    data = columns.unwrap(columns.loads(raw))
    n = columns.count_points(data)
    if n > settings.max_points_per_request:
        raise _too_many_points(n, settings)
    return columns.decode(data)


def _int_field(item: dict[str, Any], key: str, loc: columns.Loc) -> int:
    v = item.get(key)
    if v is None:
        raise Invalid("Field required", loc=(*loc, key), type_="missing")
    if type(v) is not int:
        raise Invalid("Input should be a valid integer", loc=(*loc, key), type_="int_type")
    if not 0 <= v <= ID_MAX:
        raise Invalid(f"Input should be between 0 and {ID_MAX}", loc=(*loc, key), type_="range")
    return v


def _item_head(item: dict[str, Any], loc: columns.Loc) -> tuple[int, int, int, str | None]:
    unit = item.get("unit")
    if unit is not None and not isinstance(unit, str):
        raise Invalid("Input should be a valid string", loc=(*loc, "unit"), type_="string_type")
    return (
        _int_field(item, "client_cid", loc),
        _int_field(item, "sensor_mid", loc),
        _int_field(item, "signal_type_moid", loc),
        unit,
    )


def _parse_many(raw: bytes, settings: Settings) -> list[service.WriteItem]:
    body = columns.loads(raw)
    if not isinstance(body, list):
        raise Invalid("Expected a list of PutMultipleSignalsRequest", type_="list_type")
    if len(body) > settings.max_items_per_request:
        raise TooLarge(
            f"{len(body)} items in one request; at most {settings.max_items_per_request} "
            "(max_items_per_request)"
        )
    total = 0
    for i, item in enumerate(body):
        if not isinstance(item, dict) or not isinstance(item.get("data"), dict):
            raise Invalid("Expected an object with a 'data' object", loc=("body", i))
        total += columns.count_points(item["data"])
    if total > settings.max_points_per_request:
        raise _too_many_points(total, settings)
    locs = [("body", i, "data") for i in range(len(body))]
    heads: list[tuple[int, int, int, str | None]] = []
    for i, item in enumerate(body):
        try:
            heads.append(_item_head(item, ("body", i)))
        except Invalid:
            for j in range(i):  # an earlier item's bad column is the first error, as it was
                columns.decode(columns.unwrap(body[j]["data"], locs[j]), locs[j])
            raise
    datas = [columns.unwrap(item["data"], loc) for item, loc in zip(body, locs, strict=True)]
    return [
        service.WriteItem(cid, mid, moid, unit, cols, loc)
        for (cid, mid, moid, unit), cols, loc in zip(
            heads, columns.decode_many(datas, locs, raw), locs, strict=True
        )
    ]


async def _put_one(
    request: Request,
    db: Database,
    store: SeriesStore,
    user: Principal,
    ids: tuple[int, int, int],
    unit: str | None,
    reason: str | None,
) -> None:
    settings: Settings = request.app.state.settings
    cols = _parse_one(await request.body(), settings)
    item = service.WriteItem(ids[0], ids[1], ids[2], unit, cols, ("body",))
    await run_in_threadpool(_write, request, db, store, user, [item], reason)


_PUT_ONE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **R401,
    **R403,
    **R404,
    **R413,
    **_R422,
}
UnitQuery = Annotated[str | None, Query(description="Signal unit")]
ReasonQuery = Annotated[
    str | None,
    Query(
        max_length=2000,
        description="Why the points are written (a correction's reason, origin 5): kept in "
        "the audit (GET .../audit) with who wrote them and when",
    ),
]


@router.put(
    "/api/sensors/{client_cid}.{sensor_mid}/signals/{signal_type_moid}/data/v2",
    summary="Put signal data",
    response_model=None,
    responses={200: {"description": "Successfully updated signal data"}, **_PUT_ONE_RESPONSES},
    openapi_extra=_PUT_ONE_BODY,
)
async def put_signal_data_v2(
    request: Request,
    db: DatabaseDep,
    store: StoreDep,
    user: Caller,
    client_cid: ClientCid,
    sensor_mid: SensorMid,
    signal_type_moid: SignalTypeMoid,
    unit: UnitQuery = None,
    reason: ReasonQuery = None,
) -> Response:
    """Put signal data."""
    ids = (client_cid, sensor_mid, signal_type_moid)
    await _put_one(request, db, store, user, ids, unit, reason)
    return _json(None)


@router.put(
    "/api/sensors/{client_cid}.{sensor_mid}/signals/{signal_type_moid}/data",
    summary="Put signal data (legacy)",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "Successfully updated signal data"}, **_PUT_ONE_RESPONSES},
    openapi_extra=_PUT_ONE_BODY,
)
async def put_signal_data(
    request: Request,
    db: DatabaseDep,
    store: StoreDep,
    user: Caller,
    client_cid: ClientCid,
    sensor_mid: SensorMid,
    signal_type_moid: SignalTypeMoid,
    unit: UnitQuery = None,
    reason: ReasonQuery = None,
) -> Response:
    """Put signal data (legacy path, answers 204 as older clients expect)."""
    ids = (client_cid, sensor_mid, signal_type_moid)
    await _put_one(request, db, store, user, ids, unit, reason)
    return Response(status_code=204)


_PUT_MANY_DOC: dict[str, Any] = {
    "summary": "Put multiple signals data",
    "response_model": None,
    "responses": {200: {"description": "Successfully updated signals data"}, **_PUT_ONE_RESPONSES},
    "openapi_extra": _PUT_MANY_BODY,
}


@router.put("/api/sensors/signals/data/v2", **_PUT_MANY_DOC)
async def put_signals_data_v2(
    request: Request, token: BearerToken, reason: ReasonQuery = None
) -> Response:
    """Put multiple signals data."""
    await run_in_threadpool(_write_many, request, token, await request.body(), reason)
    return _json(None)


@router.put(
    "/api/sensors/signals/data", **_PUT_MANY_DOC | {"summary": "Put multiple signals data (legacy)"}
)
async def put_signals_data(
    request: Request, token: BearerToken, reason: ReasonQuery = None
) -> Response:
    """Put multiple signals data (legacy path)."""
    await run_in_threadpool(_write_many, request, token, await request.body(), reason)
    return _json(None)
