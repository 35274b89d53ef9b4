"""HTTP routes of VEE (thin: parse, authorize through the service, answer)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from besmart_server.schemas import ID_MAX
from besmart_server.schemas.vee import (
    AcceptRequest,
    AuditResponse,
    EstimateResponse,
    EventsResponse,
    QualityEvent,
    QualityResponse,
    QualitySummary,
    ThresholdsRequest,
    ThresholdsResponse,
)
from besmart_server.server.deps import ConnDep, CurrentUser, SettingsDep, StoreDep
from besmart_server.server.errors import R401, R403, R404, R413
from besmart_server.server.signals import service as signals
from besmart_server.server.signals.router import ClientCid, SensorMid, SignalTypeMoid
from besmart_server.server.vee import audit, estimate, service
from besmart_server.server.vee.service import Window

router = APIRouter(tags=["Quality (VEE)"])

_SERIES = "/api/sensors/{client_cid}.{sensor_mid}/signals/{signal_type_moid}"
_R422: dict[int | str, dict[str, Any]] = {422: {"description": "Validation Error"}}
Since = Annotated[int, Query(description="Start (UTC unix ms, inclusive)")]
Till = Annotated[int, Query(description="End (UTC unix ms, exclusive)")]
Cid = Annotated[int, Path(description="Client CID", ge=0, le=ID_MAX)]


def _budget(settings: Any) -> signals.ReadBudget:
    return signals.ReadBudget(
        settings.max_points_per_read, max_window_days=settings.max_window_days
    )


@router.get(
    f"{_SERIES}/quality",
    response_model=QualityResponse,
    summary="Get the quality events and completeness of a signal",
    responses={**R401, **R404, **R413, **_R422},
)
def get_quality(
    conn: ConnDep,
    user: CurrentUser,
    store: StoreDep,
    settings: SettingsDep,
    client_cid: ClientCid,
    sensor_mid: SensorMid,
    signal_type_moid: SignalTypeMoid,
    since: Since,
    till: Till,
) -> dict[str, Any]:
    """The quality events touching [since, till) and the completeness of the measured points
    (per UTC day, at the series' reading interval)."""
    w = Window(client_cid, sensor_mid, signal_type_moid, since, till)
    return service.quality(conn, store, user, w, budget=_budget(settings))


@router.post(
    f"{_SERIES}/quality/run",
    response_model=EventsResponse,
    summary="Validate a window of a signal now",
    responses={**R401, **R403, **R404, **R413, **_R422},
)
def post_quality_run(
    conn: ConnDep,
    user: CurrentUser,
    store: StoreDep,
    settings: SettingsDep,
    client_cid: ClientCid,
    sensor_mid: SensorMid,
    signal_type_moid: SignalTypeMoid,
    since: Since,
    till: Till,
) -> dict[str, Any]:
    """Run every rule over [since, till) (write role): open events there are replaced by what
    is found; accepted, estimated and corrected ones stay."""
    w = Window(client_cid, sensor_mid, signal_type_moid, since, till)
    service.check_window(since, till)
    service.require_write(conn, user, w)
    return {"events": service.run(conn, store, user, w, budget=_budget(settings))}


@router.post(
    f"{_SERIES}/quality/events/{{event_id}}/accept",
    response_model=QualityEvent,
    summary="Accept a quality event",
    responses={**R401, **R403, **R404, **_R422},
)
def post_accept(
    conn: ConnDep,
    user: CurrentUser,
    store: StoreDep,
    client_cid: ClientCid,
    sensor_mid: SensorMid,
    signal_type_moid: SignalTypeMoid,
    event_id: Annotated[int, Path(ge=0, le=ID_MAX)],
    body: AcceptRequest,
) -> dict[str, Any]:
    """The data stands as it is (write role): the event records who accepted it and why."""
    w = Window(client_cid, sensor_mid, signal_type_moid, 0, 1)
    return service.accept(conn, store, user, w, event_id, body.note)


@router.post(
    f"{_SERIES}/quality/estimate",
    response_model=EstimateResponse,
    summary="Estimate the missing intervals of a window",
    responses={**R401, **R403, **R404, **R413, **_R422},
)
def post_estimate(
    conn: ConnDep,
    user: CurrentUser,
    store: StoreDep,
    settings: SettingsDep,
    client_cid: ClientCid,
    sensor_mid: SensorMid,
    signal_type_moid: SignalTypeMoid,
    since: Since,
    till: Till,
    reason: Annotated[str | None, Query(max_length=2000, description="Why")] = None,
) -> dict[str, Any]:
    """Substitutes for the measured series' missing intervals in [since, till), written as
    origin 4 (never over a measured value) with their method in the audit (write role):
    linear up to 2 h, like-day beyond, the standard profile without history, scaled to the
    register advance when registers bracket a gap."""
    w = Window(client_cid, sensor_mid, signal_type_moid, since, till)
    return estimate.run(conn, store, user, w, budget=_budget(settings), reason=reason)


@router.get(
    f"{_SERIES}/audit",
    response_model=AuditResponse,
    summary="Get the audit of estimated and corrected writes",
    responses={**R401, **R404, **_R422},
)
def get_audit(
    conn: ConnDep,
    user: CurrentUser,
    store: StoreDep,
    client_cid: ClientCid,
    sensor_mid: SensorMid,
    signal_type_moid: SignalTypeMoid,
    since: Since,
    till: Till,
) -> dict[str, Any]:
    """Every write of origin 4 or 5 touching [since, till): who, when (acq_time), the method
    and the reason, oldest first."""
    w = Window(client_cid, sensor_mid, signal_type_moid, since, till)
    return {"entries": audit.entries(conn, store, user, w)}


@router.get(
    "/api/clients/{client_cid}/quality",
    response_model=QualitySummary,
    summary="Get a client's signals with open quality events, worst first",
    responses={**R401, **R404, **_R422},
)
def get_client_quality(
    conn: ConnDep, user: CurrentUser, client_cid: Cid, since: Since, till: Till
) -> dict[str, Any]:
    """Per signal of the client, its open events touching [since, till) by severity."""
    return service.summary(conn, user, client_cid, since, till)


@router.get(
    "/api/clients/{client_cid}/quality/thresholds",
    response_model=ThresholdsResponse,
    summary="Get the validation thresholds of a client",
    responses={**R401, **R404},
)
def get_thresholds(conn: ConnDep, user: CurrentUser, client_cid: Cid) -> dict[str, Any]:
    """The rules' defaults and the client's overrides per sensor type."""
    return service.get_thresholds(conn, user, client_cid)


@router.put(
    "/api/clients/{client_cid}/quality/thresholds",
    response_model=ThresholdsResponse,
    summary="Set the validation thresholds of a client for a sensor type",
    responses={**R401, **R403, **R404, **_R422},
)
def put_thresholds(
    conn: ConnDep, user: CurrentUser, client_cid: Cid, body: ThresholdsRequest
) -> dict[str, Any]:
    """Replace the client's overrides for one sensor type, 0 for all (owner role)."""
    return service.set_thresholds(conn, user, client_cid, body.sensor_type_id, body.thresholds)
