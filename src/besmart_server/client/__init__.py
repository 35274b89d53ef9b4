"""Python client of the besmart REST API: `Client`, its typed errors and pandas series helpers.

from besmart_server.client import Client

with Client("http://127.0.0.1:8000", login="demo", password="...") as bs:
    frame = bs.read(1, 2, 32, since="2026-01-01", till="2026-01-02", get_last=True)
    bs.write(frame, 1, 3, 32)
"""

from besmart_server.client.core import REFRESH_MARGIN_S, Client, SeriesWrite
from besmart_server.client.errors import (
    AuthError,
    BesmartError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    RateLimited,
    ServerError,
    TooLarge,
    ValidationError,
)
from besmart_server.client.series import frame_from_data, to_ms

__all__ = [
    "REFRESH_MARGIN_S",
    "AuthError",
    "BesmartError",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "NotFound",
    "RateLimited",
    "SeriesWrite",
    "ServerError",
    "TooLarge",
    "ValidationError",
    "frame_from_data",
    "to_ms",
]
