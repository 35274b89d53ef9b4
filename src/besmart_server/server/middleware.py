"""Pure ASGI middleware (no per-request threads) between the server and every route: the
request body's size limit and Content-Encoding, NUL characters in any text of the request,
security headers, and the 500 of an unexpected error."""

from __future__ import annotations

import logging
import re
import zlib
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from besmart_server.server.fields import nul_in_json

log = logging.getLogger("besmart")

_BASE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_SECURITY_HEADERS = [*_BASE_HEADERS, (b"cache-control", b"no-store")]
# The API answers JSON only; the docs page may load its own (same-origin) script and styles,
# and nothing from any other host.
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_DOCS_CSP = (
    b"content-security-policy",
    b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; frame-ancestors 'none'",
)
# The web pages (besmart_server.web): everything from this server only, no inline script, so a
# page works with no network beyond the server and an injected tag can run nothing (inline
# styles stay allowed: ECharts' tooltips carry style attributes).
_WEB_CSP = (
    b"content-security-policy",
    b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    b"frame-ancestors 'none'",
)
_STATIC = "/static/"  # the web pages' files


def _csp_for(path: str) -> tuple[bytes, bytes]:
    if path.startswith("/docs"):
        return _DOCS_CSP
    if path.startswith(("/api/", "/openapi.json")) or path == "/api":
        return _API_CSP
    return _WEB_CSP


def _headers_for(path: str, csp: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    if path.startswith(_STATIC):  # kept by the browser, revalidated by ETag (304) on each use
        return [*_BASE_HEADERS, (b"cache-control", b"no-cache"), csp]
    return [*_SECURITY_HEADERS, csp]


_GZIP = frozenset({b"gzip", b"x-gzip"})
_IDENTITY = b"identity"
# A JSON string's escape for U+0000; raw control characters are not valid JSON at all.
_JSON_NUL = b"\\u0000"
# A JSON escape of a UTF-16 surrogate (U+D800..U+DFFF): valid only as a high + low pair.
_JSON_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


class _Reject(Exception):
    """An answer the middleware gives instead of the app's."""

    def __init__(self, status: int, body: object) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class _Gone(Exception):
    """The client disconnected while sending its request."""


def _too_large(limit: int, what: str = "Request body") -> _Reject:
    return _Reject(413, {"detail": f"{what} larger than {limit} bytes (max_body_bytes)"})


def _nul(loc: list[str | int]) -> _Reject:
    # PostgreSQL cannot store U+0000 in text; rejecting it everywhere keeps both engines alike.
    msg = "The NUL character (U+0000) is not allowed in text"
    return _Reject(422, {"detail": [{"loc": loc, "msg": msg, "type": "string_nul"}]})


def check_text(scope: Scope) -> None:
    """422 when the path, a query parameter (also inside JSON it carries, like `info`) or a
    header holds a NUL character."""
    if "\x00" in scope.get("path", ""):
        raise _nul(["path"])
    query: bytes = scope.get("query_string", b"")
    if query:
        for name, value in parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                raise _nul(["query", name.replace("\x00", "")])
            if "\\u0000" in value:
                _check_json_text(value, ["query", name])
    for name, value in scope.get("headers", []):
        if b"\x00" in value:
            raise _nul(["header", name.decode("latin-1")])


def _check_json_text(text: str | bytes, loc: list[str | int]) -> None:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return  # not JSON: the route answers for that; an escaped backslash is no NUL
    found = nul_in_json(doc, loc)
    if found is not None:
        raise _nul(found)


def check_body_text(body: bytes) -> None:
    """422 when the body is not UTF-8 or holds a NUL character (naming the JSON field where
    there is one)."""
    if not body.isascii():  # a C scan; only then the decode that finds where
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            # Every body is JSON; a route parsing it with pydantic would answer FastAPI's 400
            # "error parsing the body", undocumented: all routes answer this one alike.
            msg = f"Body is not valid JSON: not UTF-8 at byte {exc.start}"
            raise _Reject(
                422, {"detail": [{"loc": ["body"], "msg": msg, "type": "json_invalid"}]}
            ) from None
    if b"\x00" in body:
        raise _nul(["body"])
    # A backslash first: memchr-fast, absent from numeric bodies, while the 6-byte search is
    # slow on digits (its last byte, 0, is everywhere).
    if b"\\" not in body:
        return
    if _JSON_NUL in body:  # rare: only then is the body parsed here too
        _check_json_text(body, ["body"])
    if _JSON_SURROGATE.search(body):
        _check_surrogates(body)


def _check_surrogates(body: bytes) -> None:
    """422 for a JSON body with a lone surrogate escape ("\\ud800"): no text can hold it (it
    is no character; UTF-8 and both databases refuse it), so every route refuses it alike,
    not only those that parse with orjson (a route parsing with `json` would fail later)."""
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "surrogate" in str(exc):
            msg = f"Body is not valid JSON: {exc}"
            raise _Reject(
                422, {"detail": [{"loc": ["body"], "msg": msg, "type": "json_invalid"}]}
            ) from None


class _Gunzip:
    """Inflates a gzip body as it arrives, never past `limit` bytes of output (a gzip bomb
    costs at most `limit` bytes of memory before its 413)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.seen_input = False
        self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        self.seen_input = self.seen_input or bool(data)
        try:
            while data:
                piece = self._d.decompress(data, self.limit - self.size + 1)
                self.size += len(piece)
                if self.size > self.limit:
                    raise _too_large(self.limit, "Decompressed request body")
                out.append(piece)
                if self._d.eof:  # a next gzip member (RFC 1952 allows several) or trailing bytes
                    data = self._d.unused_data
                    if data:
                        self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                else:
                    data = self._d.unconsumed_tail
        except zlib.error as exc:
            raise _Reject(
                400, {"detail": f"Content-Encoding gzip: body is not gzip ({exc})"}
            ) from exc
        return out

    def finish(self) -> None:
        if self.seen_input and not self._d.eof:
            raise _Reject(400, {"detail": "Content-Encoding gzip: body is truncated"})


def _encoding(scope: Scope) -> bytes:
    """The request's single content coding (identity when none); 415 for any other."""
    codings = [
        c.strip().lower()
        for name, value in scope.get("headers", [])
        if name == b"content-encoding"
        for c in value.split(b",")
        if c.strip()
    ]
    codings = [c for c in codings if c != _IDENTITY]
    if not codings:
        return _IDENTITY
    if len(codings) == 1 and codings[0] in _GZIP:
        return b"gzip"
    shown = b", ".join(codings).decode("latin-1")
    raise _Reject(415, {"detail": f"Content-Encoding {shown} is not supported: send gzip or none"})


class LimitsAndHeaders:
    """Before a route runs: 415 for a content coding other than gzip, 413 for a body over the
    limit (declared, streamed or decompressed), 422 for a NUL character in the path, query,
    headers or body, or a lone surrogate escape in a JSON body. On every answer: security
    headers. An unexpected error answers 500 and leaves the keep-alive connection usable."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        csp = _csp_for(path)
        extra = _headers_for(path, csp)
        try:
            scope, receive = await self._read_request(scope, receive)
        except _Reject as rejected:
            await self._send_json(send, rejected.status, rejected.body, csp)
            return
        except _Gone:
            return  # the client left before its body arrived: nobody to answer
        started = False
        finished = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
                headers = [*message.get("headers", []), *extra]
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Logged without the request's headers or body: they may carry secrets.
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await self._send_json(send, 500, {"detail": "Internal server error"}, csp)
            elif not finished:
                raise  # a half-sent answer: only closing the connection can end it
            # Not re-raised otherwise: the server would close the connection after a complete
            # answer without saying so, and a client's next pooled request would die with it.

    async def _read_request(self, scope: Scope, receive: Receive) -> tuple[Scope, Receive]:
        """Check the request and read its whole body (decoded) ahead of the route, which gets
        it as one message; the route would read it all anyway."""
        check_text(scope)
        limit = self.max_body_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise _too_large(limit)
        gunzip = _Gunzip(limit) if _encoding(scope) == b"gzip" else None
        chunks: list[bytes] = []
        received = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] != "http.request":
                raise _Gone
            data: bytes = message.get("body", b"")
            more_body = bool(message.get("more_body", False))
            received += len(data)
            if received > limit:
                raise _too_large(limit)
            chunks.extend(gunzip.feed(data) if gunzip is not None else [data])
        if gunzip is not None:
            gunzip.finish()
        body = b"".join(chunks)
        check_body_text(body)
        if gunzip is not None:
            headers = [
                (n, v)
                for n, v in scope["headers"]
                if n not in (b"content-encoding", b"content-length")
            ]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        return scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive)

    @staticmethod
    async def _send_json(
        send: Send, status: int, body: object, csp: tuple[bytes, bytes] = _API_CSP
    ) -> None:
        raw = orjson.dumps(body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()),
                    *_SECURITY_HEADERS,
                    csp,
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives `messages` first, then the server's own (e.g. http.disconnect)."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
