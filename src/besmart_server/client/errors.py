"""Typed errors of the client: one class per answer a caller may want to handle."""

from __future__ import annotations

from typing import Any


class BesmartError(Exception):
    """Base of every client error; `status` is the HTTP status (None when no answer came)
    and `detail` what the server said (a string, or FastAPI's list of errors for 422)."""

    status: int | None = None

    def __init__(self, message: str, *, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        self.detail = detail


class AuthError(BesmartError):
    """401: missing, wrong, expired or revoked credentials."""

    status = 401


class Forbidden(BesmartError):
    """403: the caller may see the resource but not change it."""

    status = 403


class NotFound(BesmartError):
    """404: the resource does not exist or the caller may not see it."""

    status = 404


class Conflict(BesmartError):
    """409: the change conflicts with what is stored (duplicate, overlap, in use)."""

    status = 409


class TooLarge(BesmartError):
    """413: a request or a read exceeds a server limit; split it."""

    status = 413


class ValidationError(BesmartError):
    """422: the server rejected the input; `errors` is its `detail` list, each item with
    `loc`, `msg` and `type`."""

    status = 422

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The server's validation errors (`[{"loc": [...], "msg": ..., "type": ...}]`)."""
        if isinstance(self.detail, list):
            return [e for e in self.detail if isinstance(e, dict)]
        return [{"loc": [], "msg": str(self.detail), "type": "value_error"}]


class RateLimited(BesmartError):
    """429: too many attempts; `retry_after` is the server's hint in seconds (or None)."""

    status = 429

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, detail=detail)
        self.retry_after = retry_after


class ServerError(BesmartError):
    """5xx: the server failed; the request may be retried later."""


class ConnectionFailed(BesmartError):
    """No answer: the server could not be reached (after the configured retries)."""


_BY_STATUS: dict[int, type[BesmartError]] = {
    401: AuthError,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    422: ValidationError,
    429: RateLimited,
}


def error_for(status: int, body: Any, retry_after: str | None = None) -> BesmartError:
    """The typed error for an HTTP error answer: its message is the server's text."""
    detail = body.get("detail", body) if isinstance(body, dict) else body
    message = _message(status, detail)
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else BesmartError)
    if cls is RateLimited:
        return RateLimited(message, status=status, detail=detail, retry_after=_seconds(retry_after))
    return cls(message, status=status, detail=detail)


def _message(status: int, detail: Any) -> str:
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []))
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        return f"{status}: " + "; ".join(parts)
    return f"{status}: {detail}" if detail not in (None, "") else f"HTTP {status}"


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
