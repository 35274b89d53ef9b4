"""The web pages: login/logout, the grid tree (with its htmx partials) and the sensor page.

Thin like the API's routers: read the session, call the services, render a template. The
session cookie holds a token of the tokens table (HttpOnly, SameSite=Strict, Secure over
https); every state-changing form carries the session's CSRF token.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection

from besmart_server import __version__
from besmart_server.schemas import ID_MAX
from besmart_server.server.access import Principal
from besmart_server.server.deps import ConnDep, DatabaseDep, SettingsDep
from besmart_server.server.errors import NotFound, Throttled, Unauthorized
from besmart_server.server.sensors import service as sensors
from besmart_server.server.signals import service as signals_service
from besmart_server.server.states import service as states
from besmart_server.server.users import security
from besmart_server.server.users import service as users
from besmart_server.web import service, timectl
from besmart_server.wire import ORIGIN_NAMES

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)
# Ids are 32-bit in the database: a larger one in a URL is a 422, not a driver overflow.
CidPath = Annotated[int, PathParam(ge=0, le=ID_MAX)]
MidPath = Annotated[int, PathParam(ge=0, le=ID_MAX)]

LOGIN_CSRF_COOKIE = "besmart_login_csrf"  # double-submit token of the login form (no session yet)


def _utc(ms: int | None) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _age(ms: int | None, now: int) -> tuple[str, str]:
    """A freshness badge: (css class, text) from the age of the newest measured point."""
    if ms is None:
        return "none", "no data"
    age_s = max(now - ms, 0) / 1000
    css = "fresh" if age_s < 3600 else "late" if age_s < 86_400 else "stale"
    if age_s < 3600:
        return css, f"{int(age_s // 60)} min"
    if age_s < 86_400 * 2:
        return css, f"{int(age_s // 3600)} h"
    return css, f"{int(age_s // 86_400)} d"


def _local(ms: int | None, tz: str) -> str:
    if ms is None:
        return "—"
    return timectl.wall(ms, tz).strftime("%Y-%m-%d %H:%M ") + ("UTC" if tz == "UTC" else tz)


def _minute(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M")


templates.env.filters["minute"] = _minute
templates.env.filters["utc"] = _utc
templates.env.filters["local"] = _local
templates.env.globals["version"] = __version__


class Session:
    """The signed-in user of a page request: token (never rendered), principal, CSRF token."""

    def __init__(self, token: str, principal: Principal, csrf: str) -> None:
        self.token = token
        self.principal = principal
        self.csrf = csrf


class LoginRequired(Exception):
    """Raised by the session dependency; answered with a redirect to the login page."""


def session(request: Request, conn: ConnDep, settings: SettingsDep) -> Session:
    """The page's session, from the cookie (login page when absent, expired or revoked)."""
    token = request.cookies.get(security.SESSION_COOKIE)
    if not token:
        raise LoginRequired
    pepper = settings.secret_pepper.get_secret_value()
    try:
        principal = users.authenticate_token(conn, token, pepper=pepper)
    except Unauthorized:
        raise LoginRequired from None
    return Session(token, principal, security.csrf_for(token, pepper))


SessionDep = Annotated[Session, Depends(session)]


def session_own_transactions(request: Request, db: DatabaseDep, settings: SettingsDep) -> Session:
    """The session, checked in a short read transaction of its own: for routes that open
    their own write transactions (graph runs), so SQLite's write lock is never held twice."""
    with db.transaction(write=False) as conn:
        return session(request, conn, settings)


SessionOwnTx = Annotated[Session, Depends(session_own_transactions)]


def login_required_response(request: Request) -> Response:
    """Where an anonymous request goes: the login page (htmx follows HX-Redirect)."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = "/login?next=" + quote(target, safe="")
    if request.headers.get("HX-Request"):
        return Response(status_code=401, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def render(
    request: Request, name: str, ctx: dict[str, Any], *, status: int = 200, s: Session | None
) -> HTMLResponse:
    """A template with what every page needs: the session's CSRF token and the user (never
    the session token itself)."""
    base: dict[str, Any] = {"csrf": s.csrf if s else "", "user": s.principal if s else None}
    return templates.TemplateResponse(request, name, {**base, **ctx}, status_code=status)


def not_found_page(request: Request, s: Session, detail: str) -> HTMLResponse:
    """The 404 page: the same answer for missing and for another tenant's (no leak)."""
    return render(request, "not_found.html", {"detail": detail}, status=404, s=s)


def _safe_next(target: str | None) -> str:
    """Only a path of this site (no scheme, no //host): no open redirect after login."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/grid"
    return target


async def form_fields(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (first value of each), without python-multipart."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


# --- login / logout -------------------------------------------------------------------------


@router.get("/")
def home(request: Request) -> Response:
    """The grid for a signed-in user, else the login page."""
    if request.cookies.get(security.SESSION_COOKIE):
        return RedirectResponse("/grid", status_code=303)
    return RedirectResponse("/login", status_code=303)


def _login_page(request: Request, *, error: str | None, next_: str, status: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {"error": error, "next": _safe_next(next_), "login_csrf": token},
        status=status,
        s=None,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/login",
    )
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    """The login form."""
    return _login_page(request, error=None, next_=next or "/grid")


@router.post("/login")
async def login_submit(request: Request, db: DatabaseDep, settings: SettingsDep) -> Response:
    """Check the credentials; on success set the session cookie and go on to `next`."""
    form = await form_fields(request)
    next_ = _safe_next(form.get("next"))
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = form.get("csrf", "")
    if not cookie or not secrets.compare_digest(cookie, sent):
        return _login_page(
            request, error="The form expired; please try again.", next_=next_, status=403
        )
    address = request.client.host if request.client else "unknown"
    try:
        issued = users.login(
            db,
            login=form.get("login", ""),
            password=form.get("password", ""),
            address=address,
            settings=settings,
        )
    except Throttled:
        return _login_page(
            request, error="Too many failed logins; try again later.", next_=next_, status=429
        )
    except Unauthorized:
        return _login_page(request, error="Wrong login or password.", next_=next_, status=401)
    response = RedirectResponse(next_, status_code=303)
    response.set_cookie(
        security.SESSION_COOKIE,
        issued.token,
        max_age=settings.token_ttl_seconds,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, db: DatabaseDep, settings: SettingsDep) -> Response:
    """Revoke the session's token and drop the cookie (CSRF-checked)."""
    token = request.cookies.get(security.SESSION_COOKIE)
    form = await form_fields(request)
    pepper = settings.secret_pepper.get_secret_value()
    if token and not security.csrf_matches(token, form.get("csrf"), pepper):
        return Response("CSRF token missing or wrong", status_code=403, media_type="text/plain")
    if token:
        with db.transaction() as conn:
            users.revoke_token(conn, token, pepper=pepper)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(security.SESSION_COOKIE, path="/")
    return response


# --- grid tree ------------------------------------------------------------------------------


def _nodes_ctx(nodes: list[service.Node]) -> list[dict[str, Any]]:
    now = int(datetime.now(UTC).timestamp() * 1000)
    out = []
    for n in nodes:
        css, text = _age(n.newest_ms, now)
        out.append({"n": n, "fresh_css": css, "fresh_text": text, "newest": _utc(n.newest_ms)})
    return out


@router.get("/grid")
def grid(
    request: Request,
    conn: ConnDep,
    s: SessionDep,
    client: Annotated[int | None, Query(ge=0, le=ID_MAX)] = None,
) -> Response:
    """The clients the user can see and the chosen one's sensor tree (roots; lazy children)."""
    clients = users.list_client_roles(conn, s.principal)
    if not clients:
        return render(request, "grid.html", {"clients": [], "current": None}, s=s)
    cid = client if client is not None else clients[0].client_cid
    try:
        roots = service.children(conn, s.principal, cid, None, limit=service.TREE_PAGE + 1)
    except NotFound as exc:
        return not_found_page(request, s, str(exc.detail))
    current = next((c for c in clients if c.client_cid == cid), None)
    more = _more(cid, None, 0, roots)
    return render(
        request,
        "grid.html",
        {
            "clients": clients,
            "current": current,
            "cid": cid,
            "more": more,
            "nodes": _nodes_ctx(roots),
            "types": sensors.list_types(conn),
        },
        s=s,
    )


@router.get("/grid/{client_cid}/children")
def grid_children(
    request: Request,
    conn: ConnDep,
    s: SessionDep,
    client_cid: CidPath,
    node: Annotated[int | None, Query(ge=0, le=ID_MAX)] = None,
    offset: Annotated[int, Query(ge=0, le=ID_MAX)] = 0,
) -> Response:
    """htmx partial: a page of the children of one node (of the roots without `node`)."""
    try:
        nodes = service.children(
            conn, s.principal, client_cid, node, offset=offset, limit=service.TREE_PAGE + 1
        )
    except NotFound as exc:
        return not_found_page(request, s, str(exc.detail))
    more = _more(client_cid, node, offset, nodes)
    return render(
        request,
        "_nodes.html",
        {"nodes": _nodes_ctx(nodes), "cid": client_cid, "more": more},
        s=s,
    )


def _more(cid: int, node: int | None, offset: int, page: list[service.Node]) -> str | None:
    """The URL of the next page of a node's children when there is one; trims `page` (read
    with one row more than a page) to a page."""
    if len(page) <= service.TREE_PAGE:
        return None
    del page[service.TREE_PAGE :]
    at = f"node={node}&" if node is not None else ""
    return f"/grid/{cid}/children?{at}offset={offset + len(page)}"


@router.get("/grid/{client_cid}/search")
def grid_search(
    request: Request,
    conn: ConnDep,
    s: SessionDep,
    client_cid: CidPath,
    q: str = "",
    type: str = "",
) -> Response:
    """htmx partial: sensors matching name, sensor_eid or meter serial, and the type."""
    type_id = int(type) if type.isdigit() else None
    try:
        if not q.strip() and type_id is None:
            nodes = service.children(conn, s.principal, client_cid, None)
        else:
            nodes = service.search(conn, s.principal, client_cid, text=q, sensor_type_id=type_id)
    except NotFound as exc:
        return not_found_page(request, s, str(exc.detail))
    return render(
        request,
        "_nodes.html",
        {"nodes": _nodes_ctx(nodes), "cid": client_cid, "flat": bool(q.strip() or type_id)},
        s=s,
    )


# --- sensor page ----------------------------------------------------------------------------


def _states_ctx(conn: Connection, s: Session, cid: int, mid: int, tz: str) -> list[dict[str, Any]]:
    out = []
    for st in states.list_states(conn, s.principal, client_cid=cid, sensor_mid=mid):
        info = st.info or {}
        out.append(
            {
                "st": st,
                "since": _local(st.since, tz),
                "till": _local(st.till, tz) if st.till is not None else "installed",
                "ratios": {
                    k: info[k]
                    for k in ("current_ratio", "voltage_ratio", "multiplier")
                    if k in info
                },
                "readings": st.signal_states,
            }
        )
    return out


class _View:
    """The URL state every sensor view shares (the one time control)."""

    def __init__(
        self,
        period: str | None = None,
        start: str | None = None,
        since: str | None = None,
        till: str | None = None,
        as_of: str | None = None,
        compare: str | None = None,
        weather: str | None = None,
        tz: str | None = None,
    ) -> None:
        self.args = (period, start, since, till, as_of, compare, weather)
        self.tz = tz

    def window(self, default_tz: str) -> timectl.Window:
        """The window, in the URL's zone or else `default_tz` (the client's time zone)."""
        period, start, since, till, as_of, compare, weather = self.args
        zone = timectl.zone(self.tz or default_tz)
        return timectl.window(
            period,
            start,
            since,
            till,
            as_of=as_of,
            compare=compare == "1",
            weather=weather,
            tz=zone,
            today=datetime.now(ZoneInfo(zone)).date(),
        )


ViewDep = Annotated[_View, Depends()]


def _sensor_view(
    request: Request,
    conn: Connection,
    s: Session,
    client_cid: int,
    sensor_mid: int,
    w: timectl.Window,
    *,
    view: str,
    template: str,
    extra: dict[str, Any] | None = None,
) -> Response:
    try:
        sensor = sensors.get_sensor(conn, s.principal, client_cid, sensor_mid)
        path = service.ancestors(conn, s.principal, client_cid, sensor_mid)
        signals = service.chart_signals(conn, s.principal, client_cid, sensor_mid)
        periods = _states_ctx(conn, s, client_cid, sensor_mid, w.tz)
        children = service.children(conn, s.principal, client_cid, sensor_mid)
    except NotFound as exc:
        return not_found_page(request, s, str(exc.detail))
    swaps = [
        {"since": p["st"].since, "till": p["st"].till, "meter": p["st"].meter_eid} for p in periods
    ]
    names = {t.signal_type_moid: t.symbol for t in signals_service.list_signal_types()}
    return render(
        request,
        template,
        {
            "view": view,
            "page_url": request.url.path,
            "sensor": sensor,
            "path": path,
            "signals": signals,
            "signal_names": names,
            "periods": periods,
            "w": w,
            "prev_q": w.shifted(-1).query(),
            "next_q": w.shifted(1).query(),
            "presets": {p: w.preset(p) for p in timectl.PERIODS if p != "custom"},
            "periods_json": json.dumps(swaps),
            "origin_names": ORIGIN_NAMES,
            "weather_options": timectl.WEATHER,
            "children": children,
            **(extra or {}),
        },
        s=s,
    )


@router.get("/sensors/{client_cid}.{sensor_mid}")
def sensor_page(
    request: Request,
    conn: ConnDep,
    s: SessionDep,
    client_cid: CidPath,
    sensor_mid: MidPath,
    v: ViewDep,
) -> Response:
    """A sensor: its properties, meter installation periods, and a chart per drawn signal."""
    return _sensor_view(
        request,
        conn,
        s,
        client_cid,
        sensor_mid,
        v.window(users.client_timezone(conn, client_cid)),
        view="charts",
        template="sensor.html",
    )


@router.get("/sensors/{client_cid}.{sensor_mid}/quality")
def sensor_quality(
    request: Request,
    conn: ConnDep,
    s: SessionDep,
    client_cid: CidPath,
    sensor_mid: MidPath,
    v: ViewDep,
) -> Response:
    """A sensor's data quality: per signal a calendar of daily completeness and the gaps."""
    return _sensor_view(
        request,
        conn,
        s,
        client_cid,
        sensor_mid,
        v.window(users.client_timezone(conn, client_cid)),
        view="quality",
        template="quality.html",
    )


# Aggregation step of the balance per period (minutes): about a few hundred buckets a window.
BALANCE_STEP = {"day": 15, "week": 60, "month": 360, "year": 1440}
BALANCE_PREFERRED = ("A+", "P+", "EA+")


@router.get("/sensors/{client_cid}.{sensor_mid}/balance")
def sensor_balance(
    request: Request,
    conn: ConnDep,
    s: SessionDep,
    client_cid: CidPath,
    sensor_mid: MidPath,
    v: ViewDep,
    signal: Annotated[int | None, Query(ge=0, le=ID_MAX)] = None,
) -> Response:
    """A node's balance: its energy or power against its children's, stacked, and the
    residual, per interval."""
    w = v.window(users.client_timezone(conn, client_cid))
    try:
        own = service.chart_signals(conn, s.principal, client_cid, sensor_mid)
    except NotFound as exc:
        return not_found_page(request, s, str(exc.detail))
    by_moid = {x.moid: x for x in own}
    chosen = by_moid.get(signal) if signal is not None else None
    if chosen is None:
        preferred = [x for x in own if x.symbol in BALANCE_PREFERRED] or own
        chosen = preferred[0] if preferred else None
    span_min = (w.till_ms - w.since_ms) // 60_000
    step = BALANCE_STEP.get(w.period) or max(15, span_min // 300 // 15 * 15)
    return _sensor_view(
        request,
        conn,
        s,
        client_cid,
        sensor_mid,
        w,
        view="balance",
        template="balance.html",
        extra={
            "chosen": chosen,
            "balance_signals": own,
            "delta_t": step,
            "children_json": json.dumps(
                [
                    {"mid": n.sensor_mid, "name": n.name}
                    for n in service.children(conn, s.principal, client_cid, sensor_mid)
                ]
            ),
        },
    )
