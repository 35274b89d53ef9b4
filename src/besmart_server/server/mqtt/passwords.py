"""Device secrets and Mosquitto's password-file hash (`$7$`: PBKDF2-SHA512, as
`mosquitto_passwd` writes it), so the broker's password file is rewritten from the database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

ITERATIONS: Final = 101  # mosquitto_passwd's own default
_SALT_BYTES: Final = 12


def new_secret() -> str:
    """A device secret: 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def mosquitto_hash(secret: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The `$7$iterations$salt$hash` form of a password file line."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify(secret: str, line_hash: str) -> bool:
    """Whether a secret matches a `$7$` hash."""
    parts = line_hash.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    salt = base64.b64decode(parts[3])
    expected = mosquitto_hash(secret, salt=salt, iterations=int(parts[2]))
    return hmac.compare_digest(expected, line_hash)
