"""Validation, estimation and editing (VEE) on the wire: quality events, completeness, the
client summary, estimate runs and the audit of edits."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from besmart_server.schemas import ID_MAX

EventState = Literal["open", "accepted", "estimated", "corrected"]


class QualityEvent(BaseModel):
    """What a rule found in [since, till) of a series (UTC ms)."""

    id: int
    since: int
    till: int
    rule: str = Field(
        description="gap, negative, register_decrease, spike, flatline, "
        "zero_run, high, future, sum_check or rewrite"
    )
    severity: Literal["warning", "error"]
    detail: dict[str, Any]
    found_at: int
    state: EventState
    accepted_by: str | None = None
    accepted_at: int | None = None
    note: str | None = None


class DayCompleteness(BaseModel):
    """One UTC day: measured points present and expected at the reading interval."""

    day: int
    expected: int
    present: int


class Completeness(BaseModel):
    """Measured points of the window against what the reading interval expects."""

    step_ms: int | None
    expected: int | None
    present: int
    by_day: list[DayCompleteness]


class QualityResponse(BaseModel):
    """The quality events of a window and its completeness."""

    events: list[QualityEvent]
    completeness: Completeness


class EventsResponse(BaseModel):
    """The events a validation run left in the window."""

    events: list[QualityEvent]


class SensorQuality(BaseModel):
    """One series' open events in the window."""

    sensor_mid: int
    signal_type_moid: int
    errors: int
    warnings: int
    open: int


class QualitySummary(BaseModel):
    """A client's series with open events, worst first (errors, then events)."""

    client_cid: int
    since: int
    till: int
    sensors: list[SensorQuality]


class AcceptRequest(BaseModel):
    """Why the data stands as it is."""

    note: str = Field(min_length=1, max_length=2000)


class ThresholdsRequest(BaseModel):
    """A client's threshold overrides for one sensor type (0: every type); {} removes them."""

    sensor_type_id: int = Field(default=0, ge=0, le=ID_MAX)
    thresholds: dict[str, float | int | None]


class ThresholdsResponse(BaseModel):
    """The defaults and a client's overrides by sensor type id ("0": every type)."""

    defaults: dict[str, Any]
    overrides: dict[str, dict[str, Any]]


class AuditEntry(BaseModel):
    """One estimated (4) or corrected (5) write of a window."""

    id: int
    since: int
    till: int
    origin: int
    points: int
    acq_time: int
    who: str
    method: str | None
    reason: str | None


class AuditResponse(BaseModel):
    """The audit entries touching the window, oldest first."""

    entries: list[AuditEntry]


class EstimateResponse(BaseModel):
    """Substitutes written as origin 4, by method."""

    written: int
    methods: dict[str, int]
    acq_time: int | None
