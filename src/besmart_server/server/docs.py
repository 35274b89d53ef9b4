"""/docs with the Swagger UI files served by the app itself: the page loads nothing from a CDN,
so it works offline and behind a strict Content-Security-Policy. ReDoc is not offered."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

# Vendored by scripts/vendor-swagger-ui; VERSION, SHA256SUMS and LICENSE lie beside the files.
SWAGGER_UI_DIR = Path(__file__).parent / "static" / "swagger-ui"
DOCS_URL = "/docs"
ASSETS_URL = "/docs/static"


def add_docs(app: FastAPI) -> None:
    """Serve the Swagger UI page at /docs and its assets under /docs/static."""
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
            # The default validator badge would call validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    app.add_api_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.mount(ASSETS_URL, StaticFiles(directory=SWAGGER_UI_DIR), name="swagger-ui")
