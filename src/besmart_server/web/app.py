"""Mount the web application on the API's app: pages at `/`, files under `/static`."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from besmart_server.web.admin import router as admin_router
from besmart_server.web.devices import router as devices_router
from besmart_server.web.graphs import router as graphs_router
from besmart_server.web.router import HERE, LoginRequired, login_required_response, router


def mount(app: FastAPI) -> None:
    """Add the pages (after the API's routes, so /api, /docs and /openapi.json stay theirs)."""

    async def _login(request: Request, _exc: Exception) -> Response:
        return login_required_response(request)

    app.add_exception_handler(LoginRequired, _login)
    app.include_router(router)
    app.include_router(graphs_router)
    app.include_router(admin_router)
    app.include_router(devices_router)
    app.mount(
        "/static", StaticFiles(directory=HERE / "static", follow_symlink=False), name="static"
    )
