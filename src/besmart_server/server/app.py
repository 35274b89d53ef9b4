"""create_app(settings): the FastAPI app, its lifespan, routers and error handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException as StarletteHTTPException

from besmart_server import API_VERSION, __version__
from besmart_server.server.charts.router import router as chart_router
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.docs import add_docs
from besmart_server.server.errors import AppError, Invalid, Throttled, Unauthorized
from besmart_server.server.graphs.router import router as graphs_router
from besmart_server.server.meters.router import router as meters_router
from besmart_server.server.middleware import LimitsAndHeaders
from besmart_server.server.mqtt.router import router as mqtt_router
from besmart_server.server.sensors.router import router as sensors_router
from besmart_server.server.signals.router import router as signals_router
from besmart_server.server.signals.store import SeriesStore
from besmart_server.server.states.router import router as states_router
from besmart_server.server.users.router import router as users_router
from besmart_server.server.vee import worker as vee_worker
from besmart_server.server.vee.router import router as vee_router
from besmart_server.server.weather.router import router as weather_router
from besmart_server.web.app import mount as mount_web

if TYPE_CHECKING:
    from besmart_server.server.mqtt.bridge import Bridge

log = logging.getLogger("besmart")

DESCRIPTION = (
    "Energy-data platform implementing the besmart REST API "
    f"v{API_VERSION}: sensors, meter installation periods, versioned time series, "
    "weather and estimation graphs."
)


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def render_error(exc: AppError) -> Response:
    """The error bodies of docs/domain.md: strings for 404/409/403, detail objects otherwise."""
    if isinstance(exc, Invalid):
        return _json(exc.status, exc.body())
    if isinstance(exc, Unauthorized):
        return _json(401, {"detail": exc.detail}, {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, Throttled):
        return _json(429, {"detail": exc.detail}, {"Retry-After": str(exc.retry_after)})
    if exc.status in (403, 404, 409):
        return _json(exc.status, exc.detail)
    return _json(exc.status, {"detail": exc.detail})


def _routers() -> list[APIRouter]:
    """Every router of the API. Fixed paths (/api/sensors/states, /api/sensors/signals/,
    /api/sensors/meters...) come before the sensor router, whose
    /api/sensors/{client_cid}.{sensor_mid} is a pattern."""
    return [
        users_router,
        states_router,
        signals_router,
        chart_router,
        vee_router,
        weather_router,
        graphs_router,
        mqtt_router,
        meters_router,
        sensors_router,
    ]


def _start_bridge(settings: Settings, state: Any) -> Bridge:
    """The MQTT bridge on a thread of the server (run one server process with it)."""
    from besmart_server.server.mqtt.bridge import Bridge, broker_address, start_thread

    address = broker_address(settings.mqtt_broker_url, settings.mqtt_config_dir)
    bridge = Bridge(state.db, address, settings=settings, dedupe_days=settings.mqtt_dedupe_days)
    start_thread(bridge)
    return bridge


def create_app(settings: Settings) -> FastAPI:
    """Build the app for these settings; the database opens in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = Database(
            settings.database_url,
            sqlite_synchronous=settings.sqlite_synchronous,
            sqlite_checkpoint_seconds=settings.sqlite_checkpoint_seconds,
            pg_vacuum_seconds=settings.pg_vacuum_seconds,
        )
        app.state.store = SeriesStore(app.state.db.dialect)
        app.state.write_observers = [vee_worker.Observer(app.state)]
        bridge = _start_bridge(settings, app.state) if settings.mqtt_bridge else None
        app.state.mqtt_bridge = bridge
        try:
            yield
        finally:
            if bridge is not None:
                bridge.stop()
            executor = getattr(app.state, "graph_executor", None)  # made on first async run
            if executor is not None:
                executor.shutdown()
            app.state.db.dispose()

    app = FastAPI(
        title="besmart REST API",
        version=API_VERSION,
        summary=f"besmart-server {__version__}",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # add_docs: Swagger UI from the package's own files, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings

    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> Response:
        return render_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # An unknown path (e.g. a malformed `5.` sensor key) answers like every other 404:
        # a JSON string, never the framework's default body.
        if exc.status_code == 404:
            return _json(404, f"Path {request.url.path} not found")
        return _json(exc.status_code, {"detail": exc.detail}, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Only errors outside LimitsAndHeaders (which answers and logs the rest) reach here.
        # Logged without the request's headers or body: they may carry secrets.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _json(500, {"detail": "Internal server error"})

    for router in _routers():
        app.include_router(router)
    add_docs(app)
    mount_web(app)  # the pages, after every API route and /docs

    app.add_middleware(LimitsAndHeaders, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "X-Auth", "Content-Type"],
        )
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings from the environment."""
    return create_app(Settings())
