"""Annotated dependencies: settings, the request's transaction, and who is calling."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from besmart_server.server.access import Principal
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.errors import Forbidden, Unauthorized
from besmart_server.server.signals.service import ReadBudget
from besmart_server.server.signals.store import SeriesStore
from besmart_server.server.users import security
from besmart_server.server.users import service as users

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_T = TypeVar("_T")

bearer_scheme = HTTPBearer(auto_error=False, description="Token from POST /api/users/token")
api_key_scheme = APIKeyHeader(name="X-Auth", auto_error=False, description="A client's API key")


# The dependencies that only look at the app or the request are `async def`: FastAPI runs a
# plain `def` dependency in the thread pool, a hop to a worker thread and back for each (on
# the 2-core benchmark machine, ~0.1 ms each; a signal read had eight). Those that touch the
# database stay plain functions, so they never block the event loop.


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return _settings(request)


async def get_db(request: Request) -> Database:
    """The app's database."""
    return _db(request)


async def get_store(request: Request) -> SeriesStore:
    """The app's series store, made with the database when the app starts."""
    store: SeriesStore = request.app.state.store
    return store


def get_conn(request: Request) -> Iterator[Connection]:
    """One transaction per request: committed before the response is sent, rolled back on error."""
    with _db(request).transaction(write=request.method not in _READ_METHODS) as conn:
        yield conn


def read_budget(settings: Settings) -> ReadBudget:
    """What one request may read, from the settings: every read route spends the same budget."""
    return ReadBudget(settings.max_points_per_read, max_window_days=settings.max_window_days)


async def get_budget(request: Request) -> ReadBudget:
    """A fresh read budget for the request."""
    return read_budget(_settings(request))


SettingsDep = Annotated[Settings, Depends(get_settings)]
BudgetDep = Annotated[ReadBudget, Depends(get_budget)]
DatabaseDep = Annotated[Database, Depends(get_db)]
StoreDep = Annotated[SeriesStore, Depends(get_store)]
# scope="function": the commit happens before the response leaves, so a 2xx means durable.
ConnDep = Annotated[Connection, Depends(get_conn, scope="function")]


async def bearer_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> str:
    """The raw bearer token of the request (401 when absent): the Authorization header, or
    the web pages' session cookie, so that their charts read the same routes scripts do."""
    return _bearer_token(request, credentials)


def _bearer_token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is not None and credentials.scheme.lower() == "bearer":
        return credentials.credentials
    token = request.cookies.get(security.SESSION_COOKIE)
    if not token:
        raise Unauthorized()
    if request.method not in _READ_METHODS:
        # A cookie rides along on any request the browser makes: a change needs the CSRF
        # token of the session too, which only our own pages hold.
        pepper = _settings(request).secret_pepper.get_secret_value()
        if not security.csrf_matches(token, request.headers.get(security.CSRF_HEADER), pepper):
            raise Forbidden("CSRF token missing or wrong")
    return token


BearerToken = Annotated[str, Depends(bearer_token)]


def token_user(conn: Connection, settings: Settings, token: str) -> Principal:
    """current_user's check of a token, for a route that runs it in a transaction of its own
    (BearerToken gives the token)."""
    return users.authenticate_token(conn, token, pepper=settings.secret_pepper.get_secret_value())


def current_user(conn: ConnDep, settings: SettingsDep, token: BearerToken) -> Principal:
    """The user behind a valid bearer token."""
    return token_user(conn, settings, token)


def user_or_api_key(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Principal:
    """A bearer token or an X-Auth API key (weather routes), else the session cookie."""
    pepper = settings.secret_pepper.get_secret_value()
    if credentials is not None and credentials.scheme.lower() == "bearer":
        return users.authenticate_token(conn, credentials.credentials, pepper=pepper)
    if api_key:
        return users.authenticate_api_key(conn, api_key, pepper=pepper)
    return users.authenticate_token(conn, _bearer_token(request, None), pepper=pepper)


def user_before_transaction(
    db: DatabaseDep, settings: SettingsDep, token: Annotated[str, Depends(bearer_token)]
) -> Principal:
    """The bearer token's user, checked in a short read transaction of its own: for routes
    that open their own write transactions (data writes, graph runs), so that one request
    never holds SQLite's write lock while it opens a second writer."""
    with db.transaction(write=False) as conn:
        return users.authenticate_token(
            conn, token, pepper=settings.secret_pepper.get_secret_value()
        )


class Reading:
    """A read-only connection (Database.reads) with the caller already checked on it: the
    route's work runs on it with `run`, in one trip to the thread pool, which also ends it."""

    def __init__(
        self, scope: AbstractContextManager[Connection], conn: Connection, user: Principal
    ) -> None:
        self._scope: AbstractContextManager[Connection] | None = scope
        self.conn = conn
        self.user = user

    @property
    def open(self) -> bool:
        """Whether the connection is still held (`run` or `close` end it)."""
        return self._scope is not None

    def run(self, work: Callable[[Connection, Principal], _T]) -> _T:
        """`work(conn, user)`, then the connection ended (rolled back on an error)."""
        try:
            out = work(self.conn, self.user)
        except BaseException as exc:
            self.close(exc)
            raise
        self.close()
        return out

    def close(self, exc: BaseException | None = None) -> None:
        """End the connection, once."""
        scope, self._scope = self._scope, None
        if scope is not None:
            if exc is None:
                scope.__exit__(None, None, None)
            else:
                scope.__exit__(type(exc), exc, exc.__traceback__)


def _open_reading(db: Database, settings: Settings, token: str) -> Reading:
    scope = db.reads()
    conn = scope.__enter__()
    try:
        user = token_user(conn, settings, token)
    except BaseException as exc:
        scope.__exit__(type(exc), exc, exc.__traceback__)
        raise
    return Reading(scope, conn, user)


async def reading(
    db: DatabaseDep, settings: SettingsDep, token: BearerToken
) -> AsyncIterator[Reading]:
    """CurrentUser and a read-only connection in one trip to the thread pool (CurrentUser
    with ConnDep take three: the transaction's start, the check and the commit), checked as
    a dependency, so before the route's parameters (a bad token is a 401, not a 422). The
    route ends the connection in its own trip (Reading.run); whatever it left open, or a
    route that never ran, is ended here."""
    held = await run_in_threadpool(_open_reading, db, settings, token)
    try:
        yield held
    finally:
        if held.open:
            await run_in_threadpool(held.close)


CurrentUser = Annotated[Principal, Depends(current_user)]
# A read-only route's caller and connection (Reading.run its work).
ReadingDep = Annotated[Reading, Depends(reading, scope="function")]
# For routes without ConnDep that manage their own transactions.
UserOwnTransactions = Annotated[Principal, Depends(user_before_transaction)]
UserOrApiKey = Annotated[Principal, Depends(user_or_api_key)]
