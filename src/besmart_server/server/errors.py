"""Errors that carry their HTTP status, rendered by one handler (docs/domain.md, "Errors")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class AppError(Exception):
    """Base of every expected failure; `status` decides the response."""

    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(AppError):
    """404: the body is a JSON string (as in the spec's examples)."""

    status = 404


class Conflict(AppError):
    """409: the body is a JSON string."""

    status = 409


class Forbidden(AppError):
    """403: the caller may see the resource but not change it."""

    status = 403


class Unauthorized(AppError):
    """401: missing, malformed, expired or revoked credentials."""

    status = 401

    def __init__(self, detail: str = "Not valid authentication credentials") -> None:
        super().__init__(detail)


class TooLarge(AppError):
    """413: a request or a read exceeds a configured limit."""

    status = 413


class Throttled(AppError):
    """429: too many failed logins; `retry_after` in whole seconds."""

    status = 429

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Invalid(AppError):
    """422 in FastAPI's validation shape; `loc` names where the input is wrong."""

    status = 422

    def __init__(
        self, detail: str, *, loc: Sequence[str | int] = ("body",), type_: str = "value_error"
    ) -> None:
        super().__init__(detail)
        self.loc = list(loc)
        self.type_ = type_

    def body(self) -> dict[str, Any]:
        """The FastAPI validation body for this error."""
        return {"detail": [{"loc": self.loc, "msg": self.detail, "type": self.type_}]}


# Documented error responses, so OpenAPI lists what each route may answer.
_STRING = {"content": {"application/json": {"schema": {"type": "string"}}}}
_DETAIL = {
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"detail": {"type": "string"}}}
        }
    }
}
R401: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not valid authentication credentials", **_DETAIL}
}
R403: dict[int | str, dict[str, Any]] = {403: {"description": "Forbidden", **_STRING}}
R404: dict[int | str, dict[str, Any]] = {
    404: {"description": "Failed attempt - no resource", **_STRING}
}
R409: dict[int | str, dict[str, Any]] = {409: {"description": "Conflict", **_STRING}}
R413: dict[int | str, dict[str, Any]] = {413: {"description": "Request too large", **_DETAIL}}
R429: dict[int | str, dict[str, Any]] = {429: {"description": "Too many failed logins", **_DETAIL}}
