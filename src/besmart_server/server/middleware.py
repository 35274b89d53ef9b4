"""Pure ASGI middleware: request body limit and security headers (no per-request threads)."""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
# The interactive docs load their own scripts; the API answers JSON only.
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")


class _BodyTooLarge(Exception):
    pass


class LimitsAndHeaders:
    """413 for bodies over the limit (declared or streamed); security headers on every answer."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._reject(send, limit)
                return
        is_docs = scope.get("path", "").startswith(("/docs", "/redoc"))
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.extend(_SECURITY_HEADERS)
                if not is_docs:
                    headers.append(_API_CSP)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except _BodyTooLarge:
            if not started:
                await self._reject(send, limit)
        except Exception:
            # The 500 goes out from here, with the headers; the app's handler still logs the
            # error (the outermost middleware sees that a response has started and sends none).
            if not started:
                await self._send_json(
                    send, 500, {"detail": "Internal server error"}, csp=not is_docs
                )
            raise

    @classmethod
    async def _reject(cls, send: Send, limit: int) -> None:
        await cls._send_json(send, 413, {"detail": f"Request body larger than {limit} bytes"})

    @staticmethod
    async def _send_json(send: Send, status: int, detail: object, *, csp: bool = True) -> None:
        body = orjson.dumps(detail)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *_SECURITY_HEADERS,
                    *([_API_CSP] if csp else []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
