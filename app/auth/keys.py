"""Verification keys: parsed once, pinned to their algorithms, from a JWKS, a PEM file or a secret.

The JWKS cache is per worker. One fetch serves every request waiting on it; keys are refreshed
ahead of their expiry without making a request wait; an unknown ``kid`` refreshes at most once per
cooldown; a failed refresh keeps the last good set. Only a worker that never had keys answers 503.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import gevent
import jwt
from flask import has_request_context, request
from gevent.event import Event

from app.observability import metrics
from app.auth.errors import KeysUnavailable
from app.environ import TRACE_ENVIRON
from app.observability.tracing import RequestSpan

__all__ = [
    "JwksError", "JwksKeys", "KeySource", "StaticKeys", "VerifyingKey", "algorithms_for", "key_from_jwk",
    "parse_jwks",
]

log = logging.getLogger("frontdesk.auth")

# The algorithms each key type can verify: a key is only ever used with these (RFC 8725 3.1).
_BY_KEY_TYPE = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "oct": frozenset({"HS256", "HS384", "HS512"}),
    "OKP": frozenset({"EdDSA"}),
}
_BY_CURVE = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512", "secp256k1": "ES256K"}
# After a failed fetch, the next one waits this long: an identity provider that is down is not
# asked once per request.
_RETRY_AFTER_FAILURE = 1.0
# Refresh ahead once this share of the lifespan has passed.
_REFRESH_AHEAD = 0.8


class JwksError(Exception):
    """The key set could not be fetched or read; the message is safe to log."""


@dataclass(frozen=True)
class VerifyingKey:
    """One key, parsed, with the algorithms it may verify."""

    kid: str | None
    key: Any  # a cryptography public key object, or the secret's bytes
    algorithms: frozenset[str]


class KeySource(Protocol):
    """Where the verifier gets the key for a token's ``kid``."""

    def key_for(self, kid: str | None) -> VerifyingKey | None:
        """The key, or None when no such key is known (raises KeysUnavailable when none can be had)."""


def algorithms_for(jwk: Mapping[str, Any], allowed: Collection[str]) -> frozenset[str]:
    """The algorithms a JWK may verify: its type's, narrowed to its own ``alg`` and to ``allowed``."""
    kty = jwk.get("kty")
    if kty == "EC":
        by_type = frozenset({_BY_CURVE[jwk["crv"]]}) if jwk.get("crv") in _BY_CURVE else frozenset()
    else:
        by_type = _BY_KEY_TYPE.get(kty, frozenset()) if isinstance(kty, str) else frozenset()
    algorithms = by_type & frozenset(allowed)
    alg = jwk.get("alg")
    return algorithms & {alg} if isinstance(alg, str) else algorithms


def key_from_jwk(jwk: Mapping[str, Any], allowed: Collection[str]) -> VerifyingKey | None:
    """The verifying key a JWK describes, or None when it cannot verify any allowed algorithm."""
    if jwk.get("use", "sig") != "sig":
        return None
    algorithms = algorithms_for(jwk, allowed)
    kid = jwk.get("kid")
    if not algorithms or (kid is not None and not isinstance(kid, str)):
        return None
    try:
        parsed = jwt.PyJWK(dict(jwk), algorithm=sorted(algorithms)[0])
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    return VerifyingKey(kid=kid, key=parsed.key, algorithms=algorithms)


def parse_jwks(document: bytes, allowed: Collection[str]) -> dict[str | None, VerifyingKey]:
    """The usable keys of a JWKS document by ``kid``; keys it cannot use are skipped."""
    try:
        data = json.loads(document)
    except (ValueError, UnicodeDecodeError):
        raise JwksError("the key set is not JSON") from None
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise JwksError('the key set has no "keys" array')
    keys: dict[str | None, VerifyingKey] = {}
    for entry in entries:
        key = key_from_jwk(entry, allowed) if isinstance(entry, dict) else None
        if key is not None and key.kid not in keys:
            keys[key.kid] = key
    if not keys:
        raise JwksError("the key set holds no key for the configured algorithms")
    return keys


class StaticKeys:
    """One key known at start-up (a PEM public key or an HMAC secret), whatever the token's ``kid``."""

    def __init__(self, key: VerifyingKey) -> None:
        self._key = key

    def key_for(self, kid: str | None) -> VerifyingKey | None:
        """The one key."""
        return self._key


def _request_span() -> RequestSpan | None:
    """The current request's trace span, when there is a request."""
    return request.environ.get(TRACE_ENVIRON) if has_request_context() else None


class JwksKeys:
    """A JWKS cache for one worker; ``fetch`` returns the document's bytes or raises JwksError."""

    def __init__(self, fetch: Callable[[], bytes], allowed: Collection[str], *, lifespan: float,
                 cooldown: float, wait_timeout: float, clock: Callable[[], float] = time.monotonic,
                 spawn: Callable[[Callable[[], None]], object] = gevent.spawn) -> None:
        self._fetch = fetch
        self._allowed = frozenset(allowed)
        self._lifespan = lifespan
        self._cooldown = cooldown
        self._wait_timeout = wait_timeout
        self._clock = clock
        self._spawn = spawn
        self._keys: dict[str | None, VerifyingKey] | None = None
        self._fetched_at = 0.0
        self._failed_at: float | None = None
        self._unknown_refresh_at: float | None = None
        self._in_flight: Event | None = None
        self.fetches = 0  # attempts so far, for tests and metrics

    def key_for(self, kid: str | None) -> VerifyingKey | None:
        """The key for ``kid``, refreshing as the rules above allow."""
        now = self._clock()
        if self._keys is None:
            self._refresh(wait=True)
            if self._keys is None:
                raise KeysUnavailable("The identity provider's keys could not be fetched yet.")
        elif now - self._fetched_at >= self._lifespan * _REFRESH_AHEAD and self._may_try(now):
            self._refresh(wait=False)
        key = self._lookup(kid)
        if key is None and (self._unknown_refresh_at is None or now - self._unknown_refresh_at >= self._cooldown):
            # A new kid usually means the keys were rotated: look once, then not again for a while.
            self._unknown_refresh_at = now
            self._refresh(wait=True)
            key = self._lookup(kid)
        return key

    def _lookup(self, kid: str | None) -> VerifyingKey | None:
        keys = self._keys or {}
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))  # a token without kid is only unambiguous with one key
        return keys.get(kid)

    def _may_try(self, now: float) -> bool:
        return self._failed_at is None or now - self._failed_at >= _RETRY_AFTER_FAILURE

    def _refresh(self, *, wait: bool) -> None:
        """Fetch once for everyone: a caller arriving during a fetch waits for it (or not)."""
        if self._in_flight is not None:
            if wait:
                self._in_flight.wait(self._wait_timeout)
            return
        if self._keys is None and not self._may_try(self._clock()):
            return  # cold and recently failed: answer 503 now rather than hammer the provider
        done = self._in_flight = Event()
        # The fetch is a child span of the request that caused it (taken here: a spawned greenlet
        # has no request context).
        span = _request_span()
        if wait:
            self._fetch_and_store(done, span)
        else:
            self._spawn(lambda: self._fetch_and_store(done, span))

    def _fetch_and_store(self, done: Event, span: RequestSpan | None = None) -> None:
        call = span.call("jwks", "identity provider") if span is not None else None
        error_text: str | None = None
        try:
            self.fetches += 1
            keys = parse_jwks(self._fetch(), self._allowed)
        except JwksError as error:
            error_text = str(error)
            self._failed_at = self._clock()
            kept = "keeping the last good set" if self._keys is not None else "no keys yet"
            log.warning("JWKS refresh failed", extra={"fields": {"cause": error_text, "outcome": kept}})
            metrics.record_jwks_refresh(False)
        else:
            self._keys, self._fetched_at, self._failed_at = keys, self._clock(), None
            metrics.record_jwks_refresh(True)
        finally:
            self._in_flight = None
            done.set()
            if call is not None:
                call.end(error_text)
