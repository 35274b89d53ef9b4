"""Signal types, units and signal data on the wire (field names exactly as in the spec).

Data bodies are never parsed by these models on the server (columns are decoded with orjson and
numpy); the models document them in OpenAPI and type them in clients.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import PydanticCustomError

from besmart_server.schemas import ID_MAX


def _floor_ms(v: Any) -> Any:
    """Accept float milliseconds (clients compute them as time() * 1000) as whole ms."""
    if isinstance(v, float) and math.isfinite(v):
        return math.floor(v)
    return v


Millis = Annotated[int, BeforeValidator(_floor_ms)]
Id = Annotated[int, Field(ge=0, le=ID_MAX)]

AS_OF_DOC = (
    "Time travel: only versions acquired before this time (UTC ms) count, so the read answers "
    "what it would have answered then (later writes and RMs unseen); default every version"
)
DELTA_T_DOC = (
    "Aggregate time: minutes (buckets aligned to the UTC epoch, or with `tz` to local "
    "midnight: whole days start at local midnight, 10080 is a week from Monday 00:00, a size "
    "dividing 1440 starts on local multiples of it), or `month`, `quarter`, `year` (calendar "
    "periods in `tz`, UTC without). Instantaneous: mean of the bucket's points; interval: sum; "
    "cumulative: the counter interpolated at each bucket start. `time` is the bucket's start "
    "in UTC ms"
)
TZ_DOC = (
    "IANA time zone (e.g. Europe/Warsaw) the delta_t buckets are counted in: local days, "
    "weeks, months across DST changes (a day of 23 or 25 hours); unknown names are 422. "
    "Without it buckets are UTC and epoch-aligned, as always"
)


class SignalTypeResponse(BaseModel):
    """A signal type of the catalog; `time_series_type` 0 instantaneous, 1 cumulative,
    2 interval."""

    signal_type_moid: int
    symbol: str | None = None
    description: str | None = None
    is_measurement: bool
    time_series_type: int | None = None
    apply_multiplier: bool | None = None
    apply_current_ratio: bool | None = None
    apply_voltage_ratio: bool | None = None
    obis_mapping: str | None = None
    chart_expected_unit: str | None = None
    keep_prefix: bool | None = None
    draw_chart: bool | None = None
    unit_id: int | None = None
    unit_symbol: str | None = None
    group_id: int | None = None
    group: str | None = None
    data_model_type: Any = None
    chart_expected_summary: list[Any] = Field(default_factory=list)
    columns: dict[str, Any] = Field(default_factory=dict)
    payload_mapping: dict[str, Any] = Field(default_factory=dict)


class UnitResponse(BaseModel):
    """A unit: a value in it is `value * factor + offset` in its dimension's base unit."""

    unit_id: int
    symbol: str
    dimension: str
    factor: float
    offset: float
    aliases: list[str] = Field(default_factory=list, description="other accepted symbols")


class SignalData(BaseModel):
    """Columnar points: equal-length columns; `type` defaults to DBL, `origin` to 1."""

    time: list[int] = Field(description="capture times, UTC unix ms")
    value: list[float | int | str | None] = Field(
        default_factory=list, description="numbers; text for STR; null for RM"
    )
    type: list[Literal["DBL", "INT", "STR", "RM"]] | None = None
    origin: list[int] | None = Field(
        None,
        description="1 measured, 2 predicted, 3 calculated, 4 estimated, 5 corrected",
    )
    acq_time: list[int] | None = Field(
        None, description="acquisition time per point, ms (imports of history; in responses)"
    )


class PutMultipleSignalsRequest(BaseModel):
    """One series of a multi-series PUT."""

    data: SignalData
    client_cid: Id
    sensor_mid: Id
    signal_type_moid: Id
    unit: str | None = None


class GetSignalRequest(BaseModel):
    """One series of a multi-series read (aliases as older clients send them)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    client_cid: Id
    sensor_mid: Id
    signal_type_moid: Id
    signal_origin_id: int | None = Field(
        None, validation_alias=AliasChoices("signal_origin_id", "origin_id")
    )
    since: Millis
    till: Millis
    apply_multiplier: bool = False
    last_acq: bool = Field(False, validation_alias=AliasChoices("last_acq", "get_last"))
    delta_t: int | Literal["month", "quarter", "year"] | None = Field(None, description=DELTA_T_DOC)
    tz: str | None = Field(None, description=TZ_DOC)
    output_unit_id: Id | None = None
    raw: bool = False
    is_chart: bool = False
    as_of: Millis | None = Field(None, description=AS_OF_DOC)
    filters: Any = Field(None, description="accepted for older clients; not applied")

    @field_validator("delta_t", mode="wrap")
    @classmethod
    def _one_delta_t_error(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """One error naming `delta_t`, not one per member of its union (`delta_t.int`...);
        JSON `true` is no number of minutes (lax int would read it as 1)."""
        try:
            if isinstance(v, bool):
                raise ValidationError.from_exception_data("delta_t", [])
            return handler(v)
        except ValidationError:
            raise PydanticCustomError(
                "delta_t", "delta_t must be whole minutes or one of month, quarter, year"
            ) from None


class SignalError(BaseModel):
    """Why one item of a multi-series read has no data."""

    status: int
    detail: str


class SignalResponse(BaseModel):
    """A signal's points; `time_tstorage` and `time_other` are seconds spent in the storage
    and in the rest of the request."""

    client_cid: int | None = None
    sensor_mid: int | None = None
    signal_type_moid: int | None = None
    unit: str | None = None
    data: SignalData | None = None
    time_tstorage: float | None = None
    time_other: float | None = None
    error: SignalError | None = None
    tz: str | None = Field(
        None, description="the IANA zone the buckets were counted in; only when `tz` was given"
    )
    warnings: list[str] | None = Field(
        None,
        description="what the server had to assume to answer, e.g. the counter reading at a "
        "meter swap that lacks value_for_till; only present when there is something to say",
    )


class CapResponse(BaseModel):
    """The newest stored capture time of a signal (ms), or null."""

    cap_max: int | None
