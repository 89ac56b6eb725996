"""The one check of an operator's credential: the metrics token, the cache's purge token, the status page's login.

Every comparison is constant-time and made on SHA-256 digests, so neither where two secrets differ
nor their lengths show in the time taken.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from werkzeug.security import check_password_hash

__all__ = ["BasicLogin", "BearerToken", "admin_authorized", "basic_credentials"]


@dataclass(frozen=True)
class BearerToken:
    """A shared secret sent as ``Authorization: Bearer <token>``."""

    token: str


@dataclass(frozen=True)
class BasicLogin:
    """A user name and a werkzeug password hash, sent as HTTP Basic."""

    username: str
    password_hash: str


def admin_authorized(authorization: str | None, credential: BearerToken | BasicLogin) -> bool:
    """Whether the Authorization field carries ``credential``."""
    if isinstance(credential, BearerToken):
        scheme, _, sent = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and _same(sent.strip(), credential.token)
    login = basic_credentials(authorization)
    if login is None:
        return False
    username, password = login
    # Both always computed, so the time taken does not tell a wrong name from a wrong password.
    name_ok = _same(username, credential.username)
    password_ok = check_password_hash(credential.password_hash, password)  # constant time too
    return name_ok and password_ok


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """The user name and password of an HTTP Basic Authorization field; None for anything else."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None


def _same(sent: str, expected: str) -> bool:
    # Digests first: compare_digest's time then depends on neither string's length.
    return hmac.compare_digest(_digest(sent), _digest(expected))


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()
