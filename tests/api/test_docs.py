"""/docs works offline: the Swagger UI page references no other host and its assets are the
package's own vendored files (scripts/vendor-swagger-ui), served by the app."""

from __future__ import annotations

import hashlib
import re

from fastapi.testclient import TestClient

from besmart_server.server.docs import SWAGGER_UI_DIR


def test_docs_page_loads_nothing_from_another_host(client: TestClient) -> None:
    res = client.get("/docs")
    assert res.status_code == 200
    html = res.text
    assert "SwaggerUIBundle" in html
    # Every URL the page names is same-origin (a path), not http(s)://host or //host.
    urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html)
    assert urls, html
    assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert not re.search(r"https?://|//cdn|jsdelivr|unpkg", html), html
    assert "validatorUrl" in html  # the badge that would call validator.swagger.io is off
    # The browser is told the same: nothing but this origin.
    csp = res.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "http" not in csp


def test_assets_are_the_vendored_files(client: TestClient) -> None:
    sums = dict(
        reversed(line.split()) for line in (SWAGGER_UI_DIR / "SHA256SUMS").read_text().splitlines()
    )
    assert set(sums) == {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}
    html = client.get("/docs").text
    for name, digest in sums.items():
        assert f"/docs/static/{name}" in html
        res = client.get(f"/docs/static/{name}")
        assert res.status_code == 200, name
        assert hashlib.sha256(res.content).hexdigest() == digest, name
    assert (
        client.get("/docs/static/swagger-ui-bundle.js")
        .headers["content-type"]
        .startswith(("text/javascript", "application/javascript"))
    )
    assert "Apache License" in (SWAGGER_UI_DIR / "LICENSE").read_text()
    assert (SWAGGER_UI_DIR / "VERSION").read_text().startswith("swagger-ui-dist ")


def test_redoc_is_not_offered_and_openapi_stays(client: TestClient) -> None:
    assert client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").json()["info"]["title"] == "besmart REST API"
