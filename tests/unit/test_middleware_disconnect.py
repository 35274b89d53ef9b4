"""A client that disconnects while sending its body gets no answer and no route runs (the
middleware reads the body ahead of the route): spoken to in raw ASGI, as a server would."""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope, Send

from besmart_server.server.middleware import LimitsAndHeaders


def test_disconnect_mid_body_runs_nothing() -> None:
    ran: list[Scope] = []
    sent: list[Message] = []

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        ran.append(scope)

    incoming: list[Message] = [
        {"type": "http.request", "body": b'{"time": [', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "PUT", "path": "/api/x", "headers": []}
    asyncio.run(LimitsAndHeaders(route, max_body_bytes=4096)(scope, receive, send))
    assert ran == []
    assert sent == []
    assert incoming == []
