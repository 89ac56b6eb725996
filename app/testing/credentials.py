"""Credentials for tests: JWTs signed with the kit's test key, and API keys with chosen scopes.

Everything here is published test data, never a secret: the kit configures the HS256 test key only in
the apps it builds, from the ``testing`` settings.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jwt

if TYPE_CHECKING:
    from app.testing.gateway import GatewayUnderTest

__all__ = [
    "TESTING_API_KEY", "TEST_AUDIENCE", "TEST_ISSUER", "TEST_JWT_SECRET", "ApiKeys", "Tokens",
    "kit_auth_settings",
]

TEST_ISSUER = "https://issuer.frontdesk.test/"
"""The ``iss`` of the kit's tokens (``.test`` is reserved: it names no real issuer)."""
TEST_AUDIENCE = "frontdesk"
"""The ``aud`` of the kit's tokens."""
TEST_JWT_SECRET = "frontdesk-kit-test-secret-0000000000000000"
"""The HS256 key the kit signs with and configures in ``[auth.jwt]`` (42 bytes of published test data)."""
TESTING_API_KEY = "frontdesk-test-key-0000000000000000"
"""The key of the ``tests`` consumer in ``settings/testing.py`` (its SHA-256 is what the settings hold)."""

_LIFETIME = 3600
_consumer_numbers = itertools.count(1)


def kit_auth_settings() -> dict[str, Any]:
    """The ``[auth]`` overrides that make the kit's tokens valid: one HS256 key, the test issuer and audience."""
    return {"jwt": {"issuer": TEST_ISSUER, "audience": TEST_AUDIENCE, "algorithms": ["HS256"],
                    "secret": TEST_JWT_SECRET}}


def _scope_claim(path: str, scopes: tuple[str, ...]) -> dict[str, Any]:
    """Scopes where ``[auth.jwt] scope_claim`` reads them: "scope" as one string, any other claim as a list."""
    value: Any = " ".join(scopes) if path == "scope" else list(scopes)
    for part in reversed(path.split(".")):
        value = {part: value}
    result: dict[str, Any] = value
    return result


def _deep_update(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value


class Tokens:
    """Mints bearer tokens the gateway under test accepts, for the scopes and claims a test chooses."""

    def __init__(self, settings: Callable[[], Mapping[str, Any]]) -> None:
        """``settings()`` gives the raw settings the app is built from; its ``[auth.jwt]`` shapes the token."""
        self._settings = settings

    def __call__(self, *scopes: str, **claims: Any) -> dict[str, str]:
        """``Authorization: Bearer ...`` headers for a token with these scopes and claims."""
        return {"Authorization": "Bearer " + self.encode(*scopes, **claims)}

    def claims(self, *scopes: str, **claims: Any) -> dict[str, Any]:
        """The payload: valid iss, aud, sub, iat and exp (an hour), the scopes; a claim given as None is left out."""
        settings = self._jwt()
        audience = settings["audience"]
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": settings["issuer"], "aud": audience if isinstance(audience, str) else audience[0],
            "sub": "tests-user", "iat": now, "exp": now + _LIFETIME,
        }
        _deep_update(payload, _scope_claim(str(settings.get("scope_claim", "scope")), scopes))
        payload.update(claims)
        return {key: value for key, value in payload.items() if value is not None}

    def encode(self, *scopes: str, **claims: Any) -> str:
        """The signed token itself. Claims are signed as given, so a test can send odd ones on purpose."""
        settings = self._jwt()
        algorithm = settings["algorithms"][0]
        secret = settings.get("secret")
        if secret is None:
            raise RuntimeError(f"[auth.jwt] verifies {algorithm} with a key the kit does not have: "
                               "keep the kit's jwt settings, or sign your own tokens")
        body = json.dumps(self.claims(*scopes, **claims)).encode()
        return jwt.api_jws.encode(body, secret, algorithm=algorithm)

    def _jwt(self) -> Mapping[str, Any]:
        settings: Mapping[str, Any] = self._settings()["AUTH"].get("jwt") or {}
        if not settings:
            raise RuntimeError("[auth.jwt] is not configured: the kit's JWT settings were removed")
        return settings


class ApiKeys:
    """API-key headers: the testing consumer's published key, or a new consumer with chosen scopes."""

    def __init__(self, gateway: GatewayUnderTest) -> None:
        """Keys valid in ``gateway`` (a new consumer is added to its settings before the first request)."""
        self._gateway = gateway

    def __call__(self, *scopes: str, plan: str | None = None, consumer: str | None = None) -> dict[str, str]:
        """Headers with an API key: with no argument the ``tests`` consumer's, else a new consumer's."""
        if not scopes and plan is None and consumer is None:
            key = TESTING_API_KEY
        else:
            key = "kit-" + secrets.token_hex(16)
            name = consumer or f"kit-{next(_consumer_numbers)}"
            table: dict[str, Any] = {"key_sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": list(scopes)}
            if plan is not None:
                table["plan"] = plan
            self._gateway.configure(AUTH={"api_keys": {"consumers": {name: table}}})
        api_keys: Mapping[str, Any] = self._gateway.settings()["AUTH"].get("api_keys") or {}
        return {str(api_keys.get("header", "X-API-Key")): key}
