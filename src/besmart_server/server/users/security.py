"""Secrets: argon2id password hashes, opaque tokens and API keys stored as SHA-256 digests."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verifying against this keeps unknown logins as slow as wrong passwords (no user enumeration).
_dummy_hash = _hasher.hash("not-a-real-password")


def use_hasher(hasher: PasswordHasher) -> None:
    """Swap the argon2id parameters (the test suite uses cheap ones to stay fast)."""
    global _hasher, _dummy_hash
    _hasher = hasher
    _dummy_hash = hasher.hash("not-a-real-password")


TOKEN_PREFIX = "bst_"
API_KEY_PREFIX = "bsk_"


def hash_password(password: str) -> str:
    """An argon2id hash with its own salt and parameters."""
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when the password matches; constant work whether or not the user exists."""
    try:
        return _hasher.verify(stored_hash or _dummy_hash, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """A random opaque bearer token (46 characters, 256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_api_key() -> str:
    """A random API key for the X-Auth header."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str, pepper: str = "") -> str:
    """What is stored for a token or key: high-entropy secrets need no slow hash."""
    if pepper:
        return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(secret.encode()).hexdigest()


# The web pages' session: the cookie holds a bearer token of the tokens table (so logout and
# `besmart token revoke` end it), never readable by JavaScript (HttpOnly).
SESSION_COOKIE = "besmart_session"
CSRF_HEADER = "X-CSRF-Token"


def csrf_for(session_token: str, pepper: str = "") -> str:
    """The CSRF token of a session: derived one-way from the session token, so pages can
    carry it in forms and headers without revealing the session, and it ends with it."""
    return hmac.new(
        ("besmart-csrf:" + pepper).encode(), session_token.encode(), hashlib.sha256
    ).hexdigest()


def csrf_matches(session_token: str, sent: str | None, pepper: str = "") -> bool:
    """Whether a request's CSRF token belongs to its session (constant-time)."""
    return bool(sent) and hmac.compare_digest(csrf_for(session_token, pepper), sent or "")
