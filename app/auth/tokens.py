"""Bearer tokens: taken from the Authorization header, verified with a pinned key and algorithm."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

import jwt
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


class JwtVerifier:
    """Verifies a token against its pinned key: signature, then issuer, audience, expiry and required claims."""

    def __init__(self, settings: JwtSettings, keys: KeySource) -> None:
        self.settings = settings
        self.keys = keys
        self._jwt = jwt.PyJWT(options={"require": list(settings.required_claims)})

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; Rejected on any fault, KeysUnavailable when no key can be had."""
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
        try:
            return self._jwt.decode(token, key.key, algorithms=[algorithm], audience=list(self.settings.audience),
                                    issuer=self.settings.issuer, leeway=self.settings.leeway)
        except jwt.ExpiredSignatureError:
            raise Rejected("The token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise Rejected("The token is not valid yet.") from None
        except jwt.InvalidSignatureError:
            raise Rejected("The token's signature does not verify.") from None
        except jwt.PyJWTError:  # InvalidKeyError is not an InvalidTokenError: catch the root
            raise Rejected("The token's claims are not acceptable.") from None


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
