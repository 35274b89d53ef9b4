"""Structure every page needs for keyboard and screen-reader use: a language, a skip link to
<main>, one <h1>, a label for every form control, a name for every chart."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from besmart_server.server.db import Database
from tests.api.signal_helpers import moid, put
from tests.factories import make_tenant
from tests.web.test_pages import grid_of, web_login


class _Audit(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.h1 = 0
        self.lang = False
        self.skip = False
        self.main = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = bool(a.get("lang"))
        if tag == "a" and a.get("href") == "#main":
            self.skip = True
        if tag == "main" and a.get("id") == "main":
            self.main = True
        if tag == "h1":
            self.h1 += 1
        control = tag in ("input", "select", "textarea") and a.get("type") not in (
            "hidden",
            "submit",
        )
        if control and "label" not in self.open and not a.get("aria-label"):
            self.problems.append(f"<{tag} name={a.get('name')}> has no label")
        if a.get("role") == "img" and not a.get("aria-label"):
            self.problems.append(f"<{tag} role=img> has no aria-label")
        if tag not in ("input", "meta", "link", "br", "img", "hr"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open:
            while self.open and self.open.pop() != tag:
                pass


@pytest.fixture
def pages(client: TestClient, db: Database) -> list[str]:
    cid, actor = make_tenant(db)
    g = grid_of(client, actor, cid)
    station, meter = g["station"]["sensor_mid"], g["meter"]["sensor_mid"]
    for mid in (station, meter):
        put(
            client, actor.headers, cid, mid, moid("P+"), {"time": [1_767_225_600_000], "value": [1]}
        )
    web_login(client, actor)
    return [
        "/grid",
        f"/sensors/{cid}.{meter}?weather=temperature",
        f"/sensors/{cid}.{meter}/quality",
        f"/sensors/{cid}.{station}/balance",
        "/graphs",
        "/graphs/balance",
        f"/admin/{cid}",
    ]


def test_every_page_is_labelled_and_navigable(client: TestClient, pages: list[str]) -> None:
    for path in pages:
        res = client.get(path)
        assert res.status_code == 200, path
        audit = _Audit()
        audit.feed(res.text)
        assert audit.lang, path
        assert audit.skip, path
        assert audit.main, path
        assert audit.h1 == 1, path
        assert audit.problems == [], path
    client.cookies.clear()
    audit = _Audit()
    audit.feed(client.get("/login").text)
    assert audit.problems == []
    assert audit.h1 == 1
