"""Bearer tokens: taken from the Authorization header, verified with a pinned key and algorithm."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cachetools import TLRUCache
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from app.config import ConfigError

from app.auth.errors import Rejected
from app.auth.keys import KeySource, StaticKeys, VerifyingKey, algorithms_for
from app.auth.settings import JwtSettings

__all__ = ["JwtVerifier", "bearer_token", "scopes_of", "static_keys"]

# RFC 6750 2.1: "Bearer" (any case), one space, a token68. Anything else is not a bearer token.
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*) *")
# Larger tokens are refused before any parsing (gunicorn caps a header line at 8190 bytes anyway).
MAX_TOKEN_LENGTH = 8192
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521", "secp256k1": "secp256k1"}
# One wording whether PyJWT or the verified-token cache finds the fault.
_EXPIRED = "The token has expired."
_IMMATURE = "The token is not valid yet."


def bearer_token(authorization: str) -> str:
    """The token of a ``Bearer`` Authorization value; Rejected when the value is anything else."""
    if len(authorization) > MAX_TOKEN_LENGTH + 16:
        raise Rejected("The bearer token is too large.")
    match = _BEARER.fullmatch(authorization)
    if match is None:
        raise Rejected("The Authorization header is not one Bearer token.")
    return match.group(1)


def static_keys(settings: JwtSettings) -> StaticKeys:
    """The one key of a PEM file or an HMAC secret, parsed now; ConfigError when it cannot serve."""
    if settings.secret is not None:
        return StaticKeys(VerifyingKey(None, settings.secret.encode(), frozenset(settings.algorithms)))
    path = settings.public_key_file
    assert path is not None
    try:
        with open(path, "rb") as file:
            public_key = load_pem_public_key(file.read())
    except OSError as error:
        raise ConfigError("auth.jwt.public_key_file", path, f"a readable file ({error.strerror})") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError("auth.jwt.public_key_file", path, "a PEM public key (RSA, EC or Ed25519)") from None
    algorithms = algorithms_for(_describe(public_key), settings.algorithms)
    if not algorithms:
        raise ConfigError("auth.jwt.public_key_file", path,
                          f"a key that can verify one of {', '.join(settings.algorithms)}")
    return StaticKeys(VerifyingKey(None, public_key, algorithms))


def _describe(public_key: object) -> dict[str, str]:
    """The JWK fields that say which algorithms a key can verify."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return {"kty": "RSA"}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {"kty": "EC", "crv": _CURVES.get(public_key.curve.name, public_key.curve.name)}
    if isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return {"kty": "OKP"}
    return {}


@dataclass(frozen=True)
class _Verified:
    """What one successful verification proved: the claims, the key object it used, its time bounds."""

    claims: dict[str, Any]
    key: VerifyingKey
    not_before: float  # the later of nbf and iat (PyJWT refuses either in the future alike); -inf: neither
    expires: float  # exp; inf without one (only when required_claims leaves it out)


class JwtVerifier:
    """Verifies a token against its pinned key: signature, then issuer, audience, expiry and required claims.

    A successful verification is kept per worker, by the SHA-256 of the token, so the same token
    verified with the same key skips PyJWT until it expires (docs/decisions.md, entry 48).
    """

    def __init__(self, settings: JwtSettings, keys: KeySource) -> None:
        self.settings = settings
        self.keys = keys
        self._jwt = jwt.PyJWT(options={"require": list(settings.required_claims)})
        # No lock: a gevent worker runs one greenlet at a time, and nothing between a lookup and its
        # store yields. The timer is PyJWT's clock (the epoch); an entry leaves at exp + leeway, when
        # PyJWT would refuse the token, or when the LRU bound pushes it out (the only bound without exp).
        self._verified: TLRUCache[bytes, _Verified, float] | None = None
        if settings.verified_cache_size > 0:
            self._verified = TLRUCache(settings.verified_cache_size,
                                       lambda _, entry, __: entry.expires + settings.leeway, time.time)

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; Rejected on any fault, KeysUnavailable when no key can be had."""
        key, algorithm = self._key_of(token)
        if self._verified is None:
            return self._decode(token, key, algorithm)
        digest = hashlib.sha256(token.encode()).digest()
        entry = self._verified.get(digest)
        if entry is not None and entry.key is key:
            fault = _time_fault(entry, time.time(), self.settings.leeway)
            if fault is None:
                return _copied(entry.claims)
            self._verified.pop(digest, None)
            raise Rejected(fault)
        if entry is not None:
            self._verified.pop(digest, None)  # its key was rotated away or replaced: verify in full
        claims = self._decode(token, key, algorithm)
        self._verified[digest] = _Verified(claims, key, *_time_bounds(claims))
        return _copied(claims)

    def _key_of(self, token: str) -> tuple[VerifyingKey, str]:
        """The key and algorithm the token must verify with; checked on every call, cached or not."""
        header = _header(token)
        algorithm, kid = header.get("alg"), header.get("kid")
        # The configured list, never the token, decides which algorithms exist at all.
        if not isinstance(algorithm, str) or algorithm not in self.settings.algorithms:
            raise Rejected("The token's algorithm is not accepted.")
        if kid is not None and not isinstance(kid, str):
            raise Rejected("The token's key id is malformed.")
        key = self.keys.key_for(kid)
        if key is None:
            raise Rejected("The token was signed with an unknown key.")
        if algorithm not in key.algorithms:
            raise Rejected("The token's algorithm does not match its key.")
        return key, algorithm

    def _decode(self, token: str, key: VerifyingKey, algorithm: str) -> dict[str, Any]:
        try:
            return self._jwt.decode(token, key.key, algorithms=[algorithm], audience=list(self.settings.audience),
                                    issuer=self.settings.issuer, leeway=self.settings.leeway)
        except jwt.ExpiredSignatureError:
            raise Rejected(_EXPIRED) from None
        except jwt.ImmatureSignatureError:
            raise Rejected(_IMMATURE) from None
        except jwt.InvalidSignatureError:
            raise Rejected("The token's signature does not verify.") from None
        except jwt.PyJWTError:  # InvalidKeyError is not an InvalidTokenError: catch the root
            raise Rejected("The token's claims are not acceptable.") from None


def _time_fault(entry: _Verified, now: float, leeway: float) -> str | None:
    """PyJWT's time checks on a cached result, in its order (iat/nbf, then exp), with its comparisons.

    Issuer, audience, signature and required claims depend only on the token's bytes, the key object
    and the frozen settings, so a cached result keeps them; only the clock moves. The cache drops an
    entry at exp + leeway by itself; checking here too does not rest on its timer, and covers a clock
    stepped back (nbf, iat).
    """
    if entry.not_before > now + leeway:
        return _IMMATURE
    if entry.expires <= now - leeway:
        return _EXPIRED
    return None


def _time_bounds(claims: Mapping[str, Any]) -> tuple[float, float]:
    """(not before, expires) of verified claims, read as PyJWT reads them (``int``)."""
    starts = [_seconds(claims[name]) for name in ("nbf", "iat") if name in claims]
    return max(starts, default=-math.inf), _seconds(claims["exp"]) if "exp" in claims else math.inf


def _seconds(value: Any) -> float:
    """``int(value)`` as a float; PyJWT accepts integers too large for a float (exp = 10**400): infinite."""
    whole = int(value)
    try:
        return float(whole)
    except OverflowError:
        return math.inf if whole > 0 else -math.inf


def _copied(claims: dict[str, Any]) -> dict[str, Any]:
    """A deep copy, never the cached dict: a request (a view reading g.principal.claims) may change what
    it got, nested lists included, so a read-only view of the top level would not be enough."""
    return {name: _copied_json(value) for name, value in claims.items()}


def _copied_json(value: Any) -> Any:
    """A deep copy of decoded JSON (dicts, lists, immutable scalars): ~1.5 µs where copy.deepcopy takes ~4."""
    if isinstance(value, dict):
        return {name: _copied_json(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_copied_json(item) for item in value]
    return value


def _header(token: str) -> dict[str, Any]:
    """The token's JOSE header, decoded alone: PyJWT's own parse decodes all three parts, twice the work."""
    segment = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Rejected("The token is malformed.") from None
    if not isinstance(header, dict):
        raise Rejected("The token is malformed.")
    return header


def scopes_of(claims: Mapping[str, Any], path: str) -> frozenset[str]:
    """The scopes at a dotted claim path: a space-separated string or a list of strings (absent: none)."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return frozenset()
        value = value[part]
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(value)
    raise Rejected(f"The token's {path} claim is neither a string nor a list of strings.")
