"""`Client`: every route of the besmart REST API over httpx, typed with the shared schemas."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar
from urllib.parse import quote

import httpx
import orjson
import pandas as pd
from pydantic import BaseModel, TypeAdapter

from besmart_server import __version__
from besmart_server.client.errors import AuthError, ConnectionFailed, error_for
from besmart_server.client.series import (
    TimeLike,
    columns_from_frame,
    frame_from_data,
    plan_requests,
    to_ms,
)
from besmart_server.schemas.devices import Device, DeviceCreate, DeviceCreated, RejectedMessage
from besmart_server.schemas.graphs import (
    GraphDefinition,
    GraphInfo,
    RunAccepted,
    RunRecord,
    RunState,
    RunStatus,
)
from besmart_server.schemas.sensors import (
    MeterTypeResponse,
    SensorResponse,
    SensorStateResponse,
    SensorTypeResponse,
    SignalStateDto,
)
from besmart_server.schemas.signals import (
    CapResponse,
    GetSignalRequest,
    PutMultipleSignalsRequest,
    SignalData,
    SignalResponse,
    SignalTypeResponse,
    UnitResponse,
)
from besmart_server.schemas.users import ClientRole, TokenResponse

M = TypeVar("M", bound=BaseModel)

#: A token is renewed this many seconds before its `expiration` (as public clients do).
REFRESH_MARGIN_S: Final = 30.0
#: Failures that mean the request never reached the server or its answer was cut off.
RETRYABLE: Final = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.PoolTimeout,
)
_IDEMPOTENT: Final = frozenset({"GET", "PUT", "DELETE"})
_PUT_V2: Final = "/api/sensors/{}.{}/signals/{}/data/v2"
_LEGACY_PUT: Final = "/api/sensors/{}.{}/signals/{}/data"  # answers 204

JsonText = Mapping[str, Any] | list[Any] | str
Progress = Callable[[int, int], None]


def _json_text(value: JsonText | None) -> str | None:
    """JSON query parameters (`info`, `annotations`): objects are dumped, text passes."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _ms_or_none(value: TimeLike | None) -> int | None:
    return None if value is None else to_ms(value)


@dataclass(frozen=True)
class SeriesWrite:
    """One series for `Client.write_many`: a frame (see `Client.write`) and its target."""

    frame: pd.DataFrame | pd.Series
    client_cid: int
    sensor_mid: int
    signal_type_moid: int
    unit: str | None = None
    origin: int | None = None


class Client:
    """A synchronous client of a besmart server.

    Authenticate with `login` and `password` (the client logs in on first use and renews
    the token 30 s before it expires, or logs in again), with a bearer `token` (used as
    given), and/or with an `api_key` (sent as `X-Auth`; the weather route accepts it).
    GET, PUT and DELETE requests are retried on connection errors, `retries` times with
    exponential backoff starting at `backoff` seconds. Error answers raise the typed
    errors of `besmart_server.client.errors`. Use it as a context manager to close the
    connections::

        with Client("http://127.0.0.1:8000", login="demo", password="...") as bs:
            df = bs.read(1, 2, 32, since="2026-01-01", till="2026-01-02")

    `transport` (an httpx transport) and `clock` (unix seconds) are for tests and proxies.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        login: str | None = None,
        password: str | None = None,
        token: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        clock: Callable[[], float] = time.time,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if (login is None) != (password is None):
            raise ValueError("give both login and password, or neither")
        self._login = login
        self._password = password
        self._token = token
        self._expiration: float | None = None
        self._api_key = api_key
        self._retries = max(0, retries)
        self._backoff = backoff
        self._clock = clock
        self._lock = threading.RLock()
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={
                "Accept": "application/json",
                "User-Agent": f"besmart-client/{__version__}",
                **(headers or {}),
            },
        )

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        who = self._login or ("token" if self._token else "api key" if self._api_key else "anon")
        return f"Client({str(self._http.base_url)!r}, {who})"

    @property
    def token(self) -> str | None:
        """The bearer token in use (None before the first login)."""
        return self._token

    @property
    def expiration(self) -> float | None:
        """When the token expires (unix seconds), when known."""
        return self._expiration

    # --- transport ------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        auth: bool = True,
        retry: bool | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request: credentials, retries on connection errors, typed errors.
        A 401 on a token this client obtained by logging in triggers one fresh login."""
        retry = method in _IDEMPOTENT if retry is None else retry
        query = {k: v for k, v in (params or {}).items() if v is not None}
        content = None if body is None else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        relogged = False
        attempt = 0
        while True:
            sent = dict(headers or {})
            if content is not None:
                sent["Content-Type"] = "application/json"
            if auth:
                sent.update(self._auth_headers())
            try:
                res = self._http.request(method, path, params=query, content=content, headers=sent)
            except RETRYABLE as exc:
                if retry and attempt < self._retries:
                    time.sleep(self._backoff * 2**attempt)
                    attempt += 1
                    continue
                raise ConnectionFailed(
                    f"{method} {path}: {type(exc).__name__}: {exc}"
                    + (f" (after {attempt + 1} attempts)" if retry else "")
                ) from exc
            except httpx.TimeoutException as exc:
                raise ConnectionFailed(f"{method} {path}: timed out ({exc})") from exc
            if res.status_code == 401 and auth and self._can_login() and not relogged:
                relogged = True
                self.login()
                continue
            if res.status_code >= 400:
                raise error_for(res.status_code, _body(res), res.headers.get("Retry-After"))
            return res

    def _can_login(self) -> bool:
        return self._login is not None and self._password is not None

    def _auth_headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        token = self._current_token()
        if token:
            out["Authorization"] = f"Bearer {token}"
        if self._api_key:
            out["X-Auth"] = self._api_key
        return out

    def _current_token(self) -> str | None:
        """The token to send: logs in first, renews within REFRESH_MARGIN_S of expiry."""
        with self._lock:
            if self._token is None:
                if self._can_login():
                    self.login()
                return self._token
            if self._expiration is None or self._clock() < self._expiration - REFRESH_MARGIN_S:
                return self._token
            if self._clock() < self._expiration:
                try:
                    self.refresh_token()
                    return self._token
                except AuthError:
                    if not self._can_login():
                        raise
            if self._can_login():
                self.login()
            return self._token

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return _body(self._request(method, path, **kw))

    def _model(self, model: type[M], method: str, path: str, **kw: Any) -> M:
        return model.model_validate_json(self._request(method, path, **kw).content)

    def _window_json(
        self,
        method: str,
        series: tuple[int, int, int],
        path: str,
        since: TimeLike,
        till: TimeLike,
        **params: Any,
    ) -> Any:
        """A windowed route of one series: `path` with the series' (cid, mid, moid) filled in,
        queried with since, till and `params` (None values are left out)."""
        query = {"since": to_ms(since), "till": to_ms(till), **params}
        return self._json(method, path.format(*series), params=query)

    def _models(self, model: type[M], method: str, path: str, **kw: Any) -> list[M]:
        return TypeAdapter(list[model]).validate_json(  # type: ignore[valid-type]
            self._request(method, path, **kw).content
        )

    # --- users and tokens -----------------------------------------------------------------

    def login(self) -> TokenResponse:
        """Log in with the client's login and password (POST /api/users/token)."""
        if not self._can_login():
            raise AuthError("no login and password to log in with", status=401)
        with self._lock:
            res = self._model(
                TokenResponse,
                "POST",
                "/api/users/token",
                body={"login": self._login, "password": self._password},
                auth=False,
                retry=True,
            )
            self._token, self._expiration = res.token, res.expiration
            return res

    def refresh_token(self) -> TokenResponse:
        """Exchange the current token for a fresh one (GET /api/users/token)."""
        with self._lock:
            if self._token is None:
                raise AuthError("no token to refresh", status=401)
            res = self._model(
                TokenResponse,
                "GET",
                "/api/users/token",
                auth=False,
                headers={"Authorization": f"Bearer {self._token}"},
            )
            self._token, self._expiration = res.token, res.expiration
            return res

    def logout(self) -> None:
        """Revoke the current token (DELETE /api/users/token) and forget it."""
        with self._lock:
            if self._token is None:
                return
            self._request(
                "DELETE",
                "/api/users/token",
                auth=False,
                headers={"Authorization": f"Bearer {self._token}"},
            )
            self._token, self._expiration = None, None

    def clients(self) -> list[ClientRole]:
        """The clients (tenants) the caller can see, with the caller's role (GET /api/clients)."""
        return self._models(ClientRole, "GET", "/api/clients")

    def set_client_timezone(self, client_cid: int, timezone: str) -> ClientRole:
        """Set a client's IANA time zone, the CLI's default for calendar buckets (owners;
        PATCH /api/clients/{cid})."""
        return self._model(
            ClientRole, "PATCH", f"/api/clients/{client_cid}", body={"timezone": timezone}
        )

    # --- sensors ----------------------------------------------------------------------------

    def sensor_types(self) -> list[SensorTypeResponse]:
        """The sensor type catalog (GET /api/sensors/types)."""
        return self._models(SensorTypeResponse, "GET", "/api/sensors/types")

    def create_sensor(
        self,
        client_cid: int,
        name: str,
        *,
        sensor_type_id: int | None = None,
        sensor_eid: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
        info: JsonText | None = None,
        comments: str | None = None,
        uncertain: bool | None = None,
        negligible: bool | None = None,
        balance_calculation: bool | None = None,
        node_id: int | None = None,
        annotations: JsonText | None = None,
    ) -> SensorResponse:
        """Create a sensor of `client_cid` (POST /api/sensors); `info` and `annotations`
        may be objects or JSON text."""
        params = {
            "client_cid": client_cid,
            "name": name,
            "sensor_type_id": sensor_type_id,
            "sensor_eid": sensor_eid,
            "lat": lat,
            "lon": lon,
            "info": _json_text(info),
            "comments": comments,
            "uncertain": uncertain,
            "negligible": negligible,
            "balance_calculation": balance_calculation,
            "node_id": node_id,
            "annotations": _json_text(annotations),
        }
        return self._model(SensorResponse, "POST", "/api/sensors", params=params)

    def get_sensor(self, client_cid: int, sensor_mid: int) -> SensorResponse:
        """One sensor (GET /api/sensors/{client_cid}.{sensor_mid})."""
        return self._model(SensorResponse, "GET", f"/api/sensors/{client_cid}.{sensor_mid}")

    def update_sensor(
        self,
        client_cid: int,
        sensor_mid: int,
        *,
        name: str | None = None,
        sensor_type_id: int | None = None,
        sensor_eid: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
        info: JsonText | None = None,
        comments: str | None = None,
        uncertain: bool | None = None,
        negligible: bool | None = None,
        balance_calculation: bool | None = None,
        node_id: int | None = None,
        annotations: JsonText | None = None,
    ) -> SensorResponse:
        """Change the given fields of a sensor (PUT /api/sensors/{cid}.{mid});
        `sensor_eid=""` clears the external id, `node_id=0` detaches it, `info="null"`
        clears `info`."""
        params = {
            "name": name,
            "sensor_type_id": sensor_type_id,
            "sensor_eid": sensor_eid,
            "lat": lat,
            "lon": lon,
            "info": _json_text(info),
            "comments": comments,
            "uncertain": uncertain,
            "negligible": negligible,
            "balance_calculation": balance_calculation,
            "node_id": node_id,
            "annotations": _json_text(annotations),
        }
        return self._model(
            SensorResponse, "PUT", f"/api/sensors/{client_cid}.{sensor_mid}", params=params
        )

    def delete_sensor(self, client_cid: int, sensor_mid: int) -> None:
        """Remove a sensor with its states and data (DELETE /api/sensors/{cid}.{mid})."""
        self._request("DELETE", f"/api/sensors/{client_cid}.{sensor_mid}")

    def find_sensors(
        self,
        *,
        client_cid: int | None = None,
        sensor_type_id: int | None = None,
        name: str | None = None,
        sensor_eid: str | None = None,
        meter_eid: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[SensorResponse]:
        """Sensors the caller can read, filtered and paginated in `sensor_mid` order
        (GET /api/sensors/find; `name` matches a substring, case-insensitive)."""
        params = {
            "client_cid": client_cid,
            "sensor_type_id": sensor_type_id,
            "name": name,
            "sensor_eid": sensor_eid,
            "meter_eid": meter_eid,
            "limit": limit,
            "offset": offset,
        }
        return self._models(SensorResponse, "GET", "/api/sensors/find", params=params)

    # --- meter types ------------------------------------------------------------------------

    def meter_types(self, client_cid: int | None = None) -> list[MeterTypeResponse]:
        """Meter types a state may name: system ones and clients' own (GET /api/sensors/meters)."""
        params = {"client_cid": client_cid}
        return self._models(MeterTypeResponse, "GET", "/api/sensors/meters", params=params)

    def create_meter_type(
        self,
        client_cid: int,
        meter_type_name: str,
        *,
        description: str | None = None,
        number_of_phases: int | None = None,
        is_ami: bool | None = None,
        is_dcu: bool | None = None,
        is_balance: bool | None = None,
    ) -> MeterTypeResponse:
        """Add a meter type of `client_cid` (POST /api/sensors/meters; owner role)."""
        params = {
            "client_cid": client_cid,
            "meter_type_name": meter_type_name,
            "description": description,
            "number_of_phases": number_of_phases,
            "is_ami": is_ami,
            "is_dcu": is_dcu,
            "is_balance": is_balance,
        }
        return self._model(MeterTypeResponse, "POST", "/api/sensors/meters", params=params)

    def update_meter_type(
        self,
        meter_type_id: int,
        *,
        meter_type_name: str | None = None,
        description: str | None = None,
        number_of_phases: int | None = None,
        is_ami: bool | None = None,
        is_dcu: bool | None = None,
        is_balance: bool | None = None,
    ) -> MeterTypeResponse:
        """Change a client's meter type (PUT /api/sensors/meters/{id})."""
        params = {
            "meter_type_name": meter_type_name,
            "description": description,
            "number_of_phases": number_of_phases,
            "is_ami": is_ami,
            "is_dcu": is_dcu,
            "is_balance": is_balance,
        }
        return self._model(
            MeterTypeResponse, "PUT", f"/api/sensors/meters/{meter_type_id}", params=params
        )

    def delete_meter_type(self, meter_type_id: int) -> None:
        """Remove a client's meter type (DELETE /api/sensors/meters/{id}; 409 while in use)."""
        self._request("DELETE", f"/api/sensors/meters/{meter_type_id}")

    # --- sensor states and signal states ------------------------------------------------------

    def sensor_states(
        self, *, client_cid: int | None = None, sensor_mid: int | None = None
    ) -> list[SensorStateResponse]:
        """Meter installation periods with their signal states (GET /api/sensors/states)."""
        params = {"client_cid": client_cid, "sensor_mid": sensor_mid}
        return self._models(SensorStateResponse, "GET", "/api/sensors/states", params=params)

    def create_sensor_state(
        self,
        client_cid: int,
        sensor_mid: int,
        *,
        since: TimeLike | None = None,
        till: TimeLike | None = None,
        info: JsonText | None = None,
        meter_eid: str | None = None,
        meter_type_id: int | None = None,
    ) -> SensorStateResponse:
        """Add a meter installation period [since, till) (POST /api/sensors/states)."""
        params = {
            "client_cid": client_cid,
            "sensor_mid": sensor_mid,
            "since": _ms_or_none(since),
            "till": _ms_or_none(till),
            "info": _json_text(info),
            "meter_eid": meter_eid,
            "meter_type_id": meter_type_id,
        }
        return self._model(SensorStateResponse, "POST", "/api/sensors/states", params=params)

    def update_sensor_state(
        self,
        sensor_state_id: int,
        *,
        since: TimeLike | None = None,
        till: TimeLike | None = None,
        info: JsonText | None = None,
        meter_eid: str | None = None,
        meter_type_id: int | str | None = None,
    ) -> SensorStateResponse:
        """Change a sensor state (PUT /api/sensors/states/{id}); `meter_eid=""` and
        `meter_type_id=""` clear them."""
        params = {
            "since": _ms_or_none(since),
            "till": _ms_or_none(till),
            "info": _json_text(info),
            "meter_eid": meter_eid,
            "meter_type_id": meter_type_id,
        }
        return self._model(
            SensorStateResponse, "PUT", f"/api/sensors/states/{sensor_state_id}", params=params
        )

    def delete_sensor_state(self, sensor_state_id: int) -> None:
        """Remove a sensor state with its signal states (DELETE /api/sensors/states/{id})."""
        self._request("DELETE", f"/api/sensors/states/{sensor_state_id}")

    def find_sensor_state(
        self, meter_dev: str, *, meter_type_name: str | None = None
    ) -> SensorStateResponse:
        """The state in force now for a meter serial, as field devices ask it
        (GET /api/sensors/states/find)."""
        params = {"meter_dev": meter_dev, "meter_type_name": meter_type_name}
        return self._model(SensorStateResponse, "GET", "/api/sensors/states/find", params=params)

    def signal_states(
        self,
        *,
        client_cid: int | None = None,
        sensor_mid: int | None = None,
        signal_type_moid: int | None = None,
    ) -> list[SensorStateResponse]:
        """Sensor states, each with its signal states of one signal type
        (GET /api/sensors/states/signals)."""
        params = {
            "client_cid": client_cid,
            "sensor_mid": sensor_mid,
            "signal_type_moid": signal_type_moid,
        }
        return self._models(
            SensorStateResponse, "GET", "/api/sensors/states/signals", params=params
        )

    def create_signal_state(
        self,
        sensor_state_id: int,
        signal_type_moid: int,
        *,
        value_for_since: float | None = None,
        value_for_till: float | None = None,
        info: JsonText | None = None,
    ) -> SignalStateDto:
        """Counter readings of a signal at a meter's installation and removal
        (POST /api/sensors/states/{id}/signals)."""
        params = {
            "signal_type_moid": signal_type_moid,
            "value_for_since": value_for_since,
            "value_for_till": value_for_till,
            "info": _json_text(info),
        }
        return self._model(
            SignalStateDto, "POST", f"/api/sensors/states/{sensor_state_id}/signals", params=params
        )

    def update_signal_state(
        self,
        signal_state_id: int,
        *,
        value_for_since: float | str | None = None,
        value_for_till: float | str | None = None,
        info: JsonText | None = None,
    ) -> SignalStateDto:
        """Change a signal state (PUT /api/sensors/states/signals/{id}); `""` clears a reading."""
        params = {
            "value_for_since": value_for_since,
            "value_for_till": value_for_till,
            "info": _json_text(info),
        }
        return self._model(
            SignalStateDto, "PUT", f"/api/sensors/states/signals/{signal_state_id}", params=params
        )

    def delete_signal_state(self, signal_state_id: int) -> None:
        """Remove a signal state (DELETE /api/sensors/states/signals/{id})."""
        self._request("DELETE", f"/api/sensors/states/signals/{signal_state_id}")

    # --- catalogs and device routes -----------------------------------------------------------

    def signal_types(self) -> list[SignalTypeResponse]:
        """The signal type catalog (GET /api/sensors/signals/types)."""
        return self._models(SignalTypeResponse, "GET", "/api/sensors/signals/types")

    def units(self) -> list[UnitResponse]:
        """The unit catalog, with the ids `output_unit_id` takes (GET /api/units)."""
        return self._models(UnitResponse, "GET", "/api/units")

    def server_time(self, unit: Literal["s", "ms"] = "s") -> float:
        """The server's clock in unix seconds or milliseconds (GET /api/time)."""
        value = self._json("GET", "/api/time", params={"unit": unit})
        return int(value) if unit == "ms" else float(value)

    def cap(
        self,
        client_cid: int,
        sensor_mid: int,
        *,
        signal_type_moid: int | None = None,
        signal_origin_id: int | None = None,
    ) -> CapResponse:
        """The newest stored capture time of a sensor's signals (GET .../signals/cap)."""
        params = {"signal_type_moid": signal_type_moid, "signal_origin_id": signal_origin_id}
        return self._model(
            CapResponse, "GET", f"/api/sensors/{client_cid}.{sensor_mid}/signals/cap", params=params
        )

    # --- signal data ----------------------------------------------------------------------------

    def get_signal(
        self,
        client_cid: int,
        sensor_mid: int,
        signal_type_moid: int,
        since: TimeLike,
        till: TimeLike,
        *,
        get_last: bool | None = None,
        delta_t: int | str | None = None,
        raw: bool | None = None,
        apply_multiplier: bool | None = None,
        output_unit_id: int | None = None,
        signal_origin_id: int | None = None,
        is_chart: bool | None = None,
        tz: str | None = None,
    ) -> SignalResponse:
        """A signal's points in [since, till) (GET /api/sensors/{cid}.{mid}/signals/{moid}/data);
        the read options as in the API (versions, origin, multiplier, stitching, buckets, unit)."""
        params = {
            "since": to_ms(since),
            "till": to_ms(till),
            "get_last": get_last,
            "delta_t": delta_t,
            "raw": raw,
            "apply_multiplier": apply_multiplier,
            "output_unit_id": output_unit_id,
            "signal_origin_id": signal_origin_id,
            "is_chart": is_chart,
            "tz": tz,
        }
        return self._model(
            SignalResponse,
            "GET",
            f"/api/sensors/{client_cid}.{sensor_mid}/signals/{signal_type_moid}/data",
            params=params,
        )

    def get_signals(
        self, items: Sequence[GetSignalRequest | Mapping[str, Any]], *, legacy: bool = False
    ) -> list[SignalResponse]:
        """Several signals in one request (POST /api/sensors/signals/data/v2, or the legacy
        /api/sensors/signals/data); answers in request order, an unreadable item with `error`."""
        body = [
            i.model_dump(exclude_none=True) if isinstance(i, BaseModel) else dict(i) for i in items
        ]
        path = "/api/sensors/signals/data" if legacy else "/api/sensors/signals/data/v2"
        return self._models(SignalResponse, "POST", path, body=body, retry=True)

    def put_signal(
        self,
        client_cid: int,
        sensor_mid: int,
        signal_type_moid: int,
        data: SignalData | Mapping[str, Any],
        *,
        unit: str | None = None,
        legacy: bool = False,
    ) -> None:
        """Store points of one signal (PUT .../signals/{moid}/data/v2, or the legacy path that
        answers 204); `data` is columnar, `unit` the unit its values arrive in."""
        body = data.model_dump(exclude_none=True) if isinstance(data, BaseModel) else dict(data)
        ids = (client_cid, sensor_mid, signal_type_moid)
        path = _LEGACY_PUT.format(*ids) if legacy else _PUT_V2.format(*ids)
        self._request("PUT", path, params={"unit": unit}, body=body)

    def put_signals(
        self,
        items: Sequence[PutMultipleSignalsRequest | Mapping[str, Any]],
        *,
        legacy: bool = False,
    ) -> None:
        """Store points of several signals atomically (PUT /api/sensors/signals/data/v2, or the
        legacy /api/sensors/signals/data): one bad item is a ValidationError, nothing stored."""
        body = [
            i.model_dump(exclude_none=True) if isinstance(i, BaseModel) else dict(i) for i in items
        ]
        path = "/api/sensors/signals/data" if legacy else "/api/sensors/signals/data/v2"
        self._request("PUT", path, body=body)

    # --- series as pandas frames --------------------------------------------------------------

    def read(
        self,
        client_cid: int,
        sensor_mid: int,
        signal_type_moid: int,
        since: TimeLike,
        till: TimeLike,
        **options: Any,
    ) -> pd.DataFrame:
        """A signal in [since, till) as a DataFrame indexed by UTC capture time with the
        columns `value`, `origin`, `type` and `acq_time`; `options` are `get_signal`'s read
        options (get_last, delta_t, raw, apply_multiplier, output_unit_id, signal_origin_id,
        is_chart, tz). `frame.attrs` holds the series ids and `unit`."""
        params = {"since": to_ms(since), "till": to_ms(till), **options}
        path = f"/api/sensors/{client_cid}.{sensor_mid}/signals/{signal_type_moid}/data"
        body = self._json("GET", path, params=params)
        frame = frame_from_data(body.get("data"))
        frame.attrs.update(
            client_cid=client_cid,
            sensor_mid=sensor_mid,
            signal_type_moid=signal_type_moid,
            unit=body.get("unit"),
        )
        return frame

    def write(
        self,
        frame: pd.DataFrame | pd.Series,
        client_cid: int,
        sensor_mid: int,
        signal_type_moid: int,
        *,
        unit: str | None = None,
        origin: int | None = None,
        progress: Progress | None = None,
        chunk_points: int = 10_000,
    ) -> int:
        """Store a frame as points of one signal; answers the number of points written.

        The frame is indexed by capture time (a DatetimeIndex, naive meaning UTC, or ms) or
        has a `time` column, and has a `value` column (a Series is taken as the values);
        optional columns `type` (DBL, INT, STR, RM), `origin` (replaced by `origin` when
        given) and `acq_time` (keeps imported history's versions). It is validated before
        anything is sent, then sent through the multi-series PUT in requests of about
        `chunk_points` points; `progress(done, total)` is called after each request.
        Requests are atomic one by one, not as a whole."""
        return self.write_many(
            [SeriesWrite(frame, client_cid, sensor_mid, signal_type_moid, unit, origin)],
            progress=progress,
            chunk_points=chunk_points,
        )

    def write_many(
        self,
        series: Iterable[SeriesWrite],
        *,
        progress: Progress | None = None,
        chunk_points: int = 10_000,
        request_points: int = 100_000,
    ) -> int:
        """Store several series (see `write`): each request carries up to `chunk_points`
        points of each series and `request_points` in all; answers the points written."""
        targets = list(series)
        cols = [columns_from_frame(s.frame, s.origin) for s in targets]
        total = sum(len(c) for c in cols)
        done = 0
        for request in plan_requests(
            [len(c) for c in cols], chunk_points=chunk_points, request_points=request_points
        ):
            body = []
            for chunk in request:
                s = targets[chunk.series]
                item: dict[str, Any] = {
                    "client_cid": s.client_cid,
                    "sensor_mid": s.sensor_mid,
                    "signal_type_moid": s.signal_type_moid,
                    "data": cols[chunk.series].body(chunk.start, chunk.stop),
                }
                if s.unit is not None:
                    item["unit"] = s.unit
                body.append(item)
            self._request("PUT", "/api/sensors/signals/data/v2", body=body)
            done += sum(len(c) for c in request)
            if progress is not None:
                progress(done, total)
        return done

    # --- weather --------------------------------------------------------------------------------

    def weather(
        self,
        lat: float,
        lon: float,
        signal_type_moid: int,
        since: TimeLike,
        till: TimeLike,
        *,
        delta_t: int | None = None,
        raw: bool | None = None,
        output_unit_id: int | None = None,
        signal_origin_id: int | None = None,
        is_chart: bool | None = None,
        get_last: bool | None = None,
    ) -> SignalResponse:
        """Weather at any place, interpolated from the nearest grid points
        (GET /api/weather/{lat}/{lon}/{moid}/data; an API key or a token)."""
        params = {
            "since": to_ms(since),
            "till": to_ms(till),
            "delta_t": delta_t,
            "raw": raw,
            "output_unit_id": output_unit_id,
            "signal_origin_id": signal_origin_id,
            "is_chart": is_chart,
            "get_last": get_last,
        }
        return self._model(
            SignalResponse,
            "GET",
            f"/api/weather/{lat}/{lon}/{signal_type_moid}/data",
            params=params,
        )

    def read_weather(
        self,
        lat: float,
        lon: float,
        signal_type_moid: int,
        since: TimeLike,
        till: TimeLike,
        **options: Any,
    ) -> pd.DataFrame:
        """`weather` as a DataFrame shaped like `read`'s."""
        res = self.weather(lat, lon, signal_type_moid, since, till, **options)
        frame = frame_from_data(res.data.model_dump() if res.data else None)
        frame.attrs.update(lat=lat, lon=lon, signal_type_moid=signal_type_moid, unit=res.unit)
        return frame

    def chart(
        self,
        client_cid: int,
        sensor_mid: int,
        signal_type_moid: int,
        since: TimeLike,
        till: TimeLike,
        *,
        max_points: int | None = None,
        as_of: TimeLike | None = None,
        register: bool | None = None,
        apply_multiplier: bool | None = None,
    ) -> dict[str, Any]:
        """A signal's window reduced for drawing: per origin at most `max_points` points (the
        min and max of each bucket), counters as energy per bucket unless `register`, with
        the window's summary (GET .../signals/{moid}/chart)."""
        result: dict[str, Any] = self._window_json(
            "GET",
            (client_cid, sensor_mid, signal_type_moid),
            "/api/sensors/{}.{}/signals/{}/chart",
            since,
            till,
            max_points=max_points,
            as_of=_ms_or_none(as_of),
            register=register,
            apply_multiplier=apply_multiplier,
        )
        return result

    def completeness(
        self,
        client_cid: int,
        sensor_mid: int,
        signal_type_moid: int,
        since: TimeLike,
        till: TimeLike,
        *,
        signal_origin_id: int | None = None,
        as_of: TimeLike | None = None,
    ) -> dict[str, Any]:
        """Points found and expected per UTC day at the signal's reading interval, and its
        gaps, longest first (GET .../signals/{moid}/completeness)."""
        result: dict[str, Any] = self._window_json(
            "GET",
            (client_cid, sensor_mid, signal_type_moid),
            "/api/sensors/{}.{}/signals/{}/completeness",
            since,
            till,
            signal_origin_id=signal_origin_id,
            as_of=_ms_or_none(as_of),
        )
        return result

    # --- validation, estimation and audit (VEE) --------------------------------------------

    def quality(
        self,
        client_cid: int,
        sensor_mid: int,
        signal_type_moid: int,
        since: TimeLike,
        till: TimeLike,
    ) -> dict[str, Any]:
        """The quality events touching the window and the completeness of the measured points
        (GET .../signals/{moid}/quality)."""
        series = (client_cid, sensor_mid, signal_type_moid)
        result: dict[str, Any] = self._window_json(
            "GET", series, "/api/sensors/{}.{}/signals/{}/quality", since, till
        )
        return result

    def validate(
        self,
        client_cid: int,
        sensor_mid: int,
        signal_type_moid: int,
        since: TimeLike,
        till: TimeLike,
    ) -> list[dict[str, Any]]:
        """Run every validation rule over the window now; the events found
        (POST .../signals/{moid}/quality/run, write role)."""
        series = (client_cid, sensor_mid, signal_type_moid)
        found = self._window_json(
            "POST", series, "/api/sensors/{}.{}/signals/{}/quality/run", since, till
        )
        events: list[dict[str, Any]] = found["events"]
        return events

    def accept_event(
        self, client_cid: int, sensor_mid: int, signal_type_moid: int, event_id: int, note: str
    ) -> dict[str, Any]:
        """Accept a quality event: the data stands, with who accepted it and why
        (POST .../signals/{moid}/quality/events/{event_id}/accept, write role)."""
        cid, mid, moid = client_cid, sensor_mid, signal_type_moid
        path = f"/api/sensors/{cid}.{mid}/signals/{moid}/quality/events/{event_id}/accept"
        result: dict[str, Any] = self._json("POST", path, body={"note": note})
        return result

    def estimate(
        self,
        client_cid: int,
        sensor_mid: int,
        signal_type_moid: int,
        since: TimeLike,
        till: TimeLike,
        *,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Write substitutes (origin 4) for the measured series' missing intervals of the
        window (POST .../signals/{moid}/quality/estimate, write role)."""
        series = (client_cid, sensor_mid, signal_type_moid)
        result: dict[str, Any] = self._window_json(
            "POST",
            series,
            "/api/sensors/{}.{}/signals/{}/quality/estimate",
            since,
            till,
            reason=reason,
        )
        return result

    def audit(
        self,
        client_cid: int,
        sensor_mid: int,
        signal_type_moid: int,
        since: TimeLike,
        till: TimeLike,
    ) -> list[dict[str, Any]]:
        """Every estimated or corrected write touching the window: who, when, method, reason
        (GET .../signals/{moid}/audit)."""
        series = (client_cid, sensor_mid, signal_type_moid)
        found = self._window_json("GET", series, "/api/sensors/{}.{}/signals/{}/audit", since, till)
        entries: list[dict[str, Any]] = found["entries"]
        return entries

    def client_quality(self, client_cid: int, since: TimeLike, till: TimeLike) -> dict[str, Any]:
        """The client's signals with open quality events, worst first
        (GET /api/clients/{client_cid}/quality)."""
        params = {"since": to_ms(since), "till": to_ms(till)}
        result: dict[str, Any] = self._json(
            "GET", f"/api/clients/{client_cid}/quality", params=params
        )
        return result

    def quality_thresholds(self, client_cid: int) -> dict[str, Any]:
        """The validation rules' defaults and the client's overrides per sensor type
        (GET /api/clients/{client_cid}/quality/thresholds)."""
        result: dict[str, Any] = self._json("GET", f"/api/clients/{client_cid}/quality/thresholds")
        return result

    def set_quality_thresholds(
        self, client_cid: int, thresholds: dict[str, float | int | None], *, sensor_type_id: int = 0
    ) -> dict[str, Any]:
        """Replace the client's threshold overrides for one sensor type, 0 for all; {} removes
        them (PUT /api/clients/{client_cid}/quality/thresholds, owner role)."""
        body = {"sensor_type_id": sensor_type_id, "thresholds": thresholds}
        result: dict[str, Any] = self._json(
            "PUT", f"/api/clients/{client_cid}/quality/thresholds", body=body
        )
        return result

    # --- MQTT devices ---------------------------------------------------------------------------

    def add_device(
        self, name: str, client_cid: int, *, sensors: Sequence[int] | None = None
    ) -> DeviceCreated:
        """A device that may publish readings of the client's sensors over MQTT (all of them
        when `sensors` is None); its secret is in this answer only (POST /api/devices)."""
        body = DeviceCreate(
            name=name, client_cid=client_cid, sensors=None if sensors is None else list(sensors)
        )
        return self._model(DeviceCreated, "POST", "/api/devices", body=body.model_dump(mode="json"))

    def devices(self, *, client_cid: int | None = None) -> list[Device]:
        """The devices of the clients the caller owns (GET /api/devices)."""
        return self._models(Device, "GET", "/api/devices", params={"client_cid": client_cid})

    def revoke_device(self, name: str) -> None:
        """Revoke a device: its MQTT login is refused from now on (DELETE /api/devices/{name})."""
        self._request("DELETE", f"/api/devices/{quote(name, safe='')}")

    def rejected_messages(
        self, *, client_cid: int | None = None, limit: int | None = None
    ) -> list[RejectedMessage]:
        """Messages the MQTT bridge acknowledged without storing them, with the reason
        (GET /api/devices/rejected)."""
        params = {"client_cid": client_cid, "limit": limit}
        return self._models(RejectedMessage, "GET", "/api/devices/rejected", params=params)

    # --- estimation graphs ----------------------------------------------------------------------

    def run_graph(
        self,
        graph_name: str,
        body: Any = None,
        *,
        since: TimeLike | None = None,
        till: TimeLike | None = None,
        task_async: bool | None = None,
    ) -> RunRecord | RunAccepted:
        """Run a named graph over [since, till) (POST /api/tasks/graphs/run/name); `body` fills
        its template parameters (an object, or a list to run once per item). Answers the run
        record, or with `task_async` the queued run to poll with `graph_run`."""
        params = {
            "graph_name": graph_name,
            "since": _ms_or_none(since),
            "till": _ms_or_none(till),
            "task_async": task_async,
        }
        res = self._request("POST", "/api/tasks/graphs/run/name", params=params, body=body)
        if res.status_code == 202:
            return RunAccepted.model_validate_json(res.content)
        return RunRecord.model_validate_json(res.content)

    def graph_run(self, run_id: int) -> RunStatus:
        """The state of a graph run, with its record once done (GET /api/tasks/runs/{id})."""
        return self._model(RunStatus, "GET", f"/api/tasks/runs/{run_id}")

    def graph_runs(
        self,
        *,
        graph_name: str | None = None,
        state: RunState | None = None,
        client_cid: int | None = None,
        limit: int | None = None,
    ) -> list[RunStatus]:
        """The caller's runs and those writing to clients it reads, newest first
        (GET /api/tasks/runs)."""
        params = {
            "graph_name": graph_name,
            "state": state,
            "client_cid": client_cid,
            "limit": limit,
        }
        return self._models(RunStatus, "GET", "/api/tasks/runs", params=params)

    def graphs(self) -> list[GraphInfo]:
        """Shipped graphs and the stored ones the caller can see (GET /api/tasks/graphs)."""
        return self._models(GraphInfo, "GET", "/api/tasks/graphs")

    def get_graph(self, name: str) -> GraphInfo:
        """One graph's definition (GET /api/tasks/graphs/{name})."""
        return self._model(GraphInfo, "GET", f"/api/tasks/graphs/{quote(name, safe='')}")

    def put_graph(
        self,
        name: str,
        definition: GraphDefinition | Mapping[str, Any],
        *,
        client_cid: int | None = None,
    ) -> GraphInfo:
        """Create or replace a graph by name (PUT /api/tasks/graphs/{name}); `client_cid`
        owns a new one."""
        body = (
            definition.model_dump(by_alias=True)
            if isinstance(definition, BaseModel)
            else dict(definition)
        )
        return self._model(
            GraphInfo,
            "PUT",
            f"/api/tasks/graphs/{quote(name, safe='')}",
            params={"client_cid": client_cid},
            body=body,
        )

    def delete_graph(self, name: str) -> None:
        """Remove a stored graph (DELETE /api/tasks/graphs/{name}); shipped graphs stay."""
        self._request("DELETE", f"/api/tasks/graphs/{quote(name, safe='')}")


def _body(res: httpx.Response) -> Any:
    """The JSON of an answer (None for an empty one, the text when it is not JSON)."""
    if not res.content:
        return None
    try:
        return orjson.loads(res.content)
    except orjson.JSONDecodeError:
        return res.text
