"""The JWKS cache: one fetch for many, rotation, cooldown, refresh ahead, outages warm and cold."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.auth.errors import KeysUnavailable
from app.auth.keys import JwksError, JwksKeys, parse_jwks
from app.environ import TRACE_ENVIRON
from tests.conftest import AppFactory
from tests.fakes import free_port
from tests.fakes.backend import Backend
from tests.fakes.idp import AUDIENCE, ISSUER, Idp, SigningKey, claims

ALLOWED = ("RS256", "ES256")


@pytest.fixture(scope="module")
def rsa_a() -> SigningKey:
    return SigningKey("RS256", kid="a")


@pytest.fixture(scope="module")
def rsa_b() -> SigningKey:
    return SigningKey("RS256", kid="b")


@pytest.fixture(scope="module")
def ec_c() -> SigningKey:
    return SigningKey("ES256", kid="c")


def document(*keys: SigningKey | dict[str, Any]) -> bytes:
    return json.dumps({"keys": [key if isinstance(key, dict) else key.jwk for key in keys]}).encode()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """A scripted fetch: serves ``document`` or raises when ``down``; counts calls."""

    def __init__(self, body: bytes, delay: float = 0.0) -> None:
        self.body, self.delay, self.down, self.calls = body, delay, False, 0

    def __call__(self) -> bytes:
        self.calls += 1
        if self.delay:
            gevent.sleep(self.delay)
        if self.down:
            raise JwksError("down")
        return self.body


def cache(source: Source, clock: Clock, spawned: list[Callable[[], None]] | None = None,
          cooldown: float = 10.0) -> JwksKeys:
    queue = spawned if spawned is not None else []
    return JwksKeys(source, ALLOWED, lifespan=300.0, cooldown=cooldown, wait_timeout=2.0, clock=clock,
                    spawn=queue.append)


# --- the cache on its own -----------------------------------------------------------------------


def test_concurrent_requests_share_one_fetch(rsa_a: SigningKey) -> None:
    source = Source(document(rsa_a), delay=0.05)
    keys = cache(source, Clock())
    found = [gevent.spawn(keys.key_for, "a") for _ in range(50)]
    gevent.joinall(found, timeout=5)
    assert source.calls == 1
    assert all(greenlet.value is not None and greenlet.value.kid == "a" for greenlet in found)


def test_unknown_kid_refreshes_at_most_once_per_cooldown(rsa_a: SigningKey, rsa_b: SigningKey) -> None:
    source, clock = Source(document(rsa_a)), Clock()
    keys = cache(source, clock)
    assert keys.key_for("a") is not None and source.calls == 1
    assert keys.key_for("unknown-1") is None and source.calls == 2
    for kid in ("unknown-2", "unknown-3", "b"):
        assert keys.key_for(kid) is None  # an attacker cycling kids gets no more fetches
    assert source.calls == 2
    source.body = document(rsa_a, rsa_b)  # rotation
    clock.now += 10.0
    found = keys.key_for("b")
    assert found is not None and found.kid == "b" and source.calls == 3


def test_keys_are_refreshed_ahead_of_expiry_without_waiting(rsa_a: SigningKey, rsa_b: SigningKey) -> None:
    source, clock = Source(document(rsa_a)), Clock()
    spawned: list[Callable[[], None]] = []
    keys = cache(source, clock, spawned)
    keys.key_for("a")
    clock.now += 239.0
    keys.key_for("a")
    assert spawned == []
    clock.now += 1.0  # 80 % of the 300 s lifespan
    source.body = document(rsa_b)
    assert keys.key_for("a") is not None  # answered from the current set at once
    assert len(spawned) == 1 and source.calls == 1
    spawned.pop()()
    assert source.calls == 2
    assert keys.key_for("b") is not None and source.calls == 2


def test_outage_keeps_the_last_good_set(rsa_a: SigningKey) -> None:
    source, clock = Source(document(rsa_a)), Clock()
    spawned: list[Callable[[], None]] = []
    keys = cache(source, clock, spawned)
    keys.key_for("a")
    source.down = True
    for _ in range(3):
        clock.now += 3600.0  # long past the lifespan
        assert keys.key_for("a") is not None
        spawned.pop()()  # the background refresh fails
    assert source.calls == 4
    assert keys.key_for("a") is not None


def test_cold_outage_is_503_and_retries_only_after_a_pause(rsa_a: SigningKey) -> None:
    source, clock = Source(document(rsa_a)), Clock()
    source.down = True
    keys = cache(source, clock)
    with pytest.raises(KeysUnavailable):
        keys.key_for("a")
    with pytest.raises(KeysUnavailable):
        keys.key_for("a")
    assert source.calls == 1  # the provider is not hammered while it is down
    source.down = False
    clock.now += 1.0
    assert keys.key_for("a") is not None and source.calls == 2


def test_each_key_is_pinned_to_its_own_algorithms(rsa_a: SigningKey, ec_c: SigningKey) -> None:
    parsed = parse_jwks(document(rsa_a, ec_c, {**rsa_a.jwk, "kid": "no-alg", "alg": None}),
                        ("RS256", "PS256", "ES256"))
    assert parsed["a"].algorithms == {"RS256"}
    assert parsed["c"].algorithms == {"ES256"}
    unpinned = {**rsa_a.jwk, "kid": "free"}
    del unpinned["alg"]
    assert parse_jwks(document(unpinned), ("RS256", "PS256", "ES256"))["free"].algorithms == {"RS256", "PS256"}


@pytest.mark.parametrize("entry", [
    {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},  # a shared secret never enters a public-key set
    {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
    {"kty": "EC", "kid": "odd-curve", "crv": "P-999", "x": "AA", "y": "AA"},
    {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
    {"kty": "RSA", "kid": "hs-alg", "alg": "HS256", "n": "AQAB", "e": "AQAB"},
    {"kid": "no-kty"},
])
def test_unusable_keys_are_skipped(rsa_a: SigningKey, entry: dict[str, Any]) -> None:
    assert set(parse_jwks(document(rsa_a, entry), ALLOWED)) == {"a"}
    with pytest.raises(JwksError):
        parse_jwks(document(entry), ALLOWED)


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"keys": {}}', b'{"nokeys": []}', b"\xff\xfe"])
def test_unreadable_key_sets_are_errors(body: bytes) -> None:
    with pytest.raises(JwksError):
        parse_jwks(body, ALLOWED)


# --- through the app, against a local JWKS server -----------------------------------------------


@pytest.fixture
def idp(rsa_a: SigningKey, ec_c: SigningKey) -> Iterator[Idp]:
    with Idp(rsa_a, ec_c) as running:
        yield running


def jwks_app(make_app: AppFactory, backend: Backend, url: str, cooldown: float = 0.3) -> FlaskClient:
    return make_app(
        UPSTREAMS={"echo": {"targets": [backend.url]}},
        AUTH={"jwt": {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": list(ALLOWED), "jwks_url": url,
                      "jwks_cooldown": cooldown, "jwks_timeout": 0.5}},
        ROUTES=[{"path": "/orders", "upstream": "echo", "auth": {"scopes": ["orders:read"]}}],
    ).test_client()


def bearer(key: SigningKey, **headers: Any) -> dict[str, str]:
    return {"Authorization": "Bearer " + key.sign(claims(), **headers)}


def test_rotation_new_kid_accepted_after_refresh_and_cooldown_honoured(
        make_app: AppFactory, backend: Backend, idp: Idp, rsa_a: SigningKey, rsa_b: SigningKey) -> None:
    client = jwks_app(make_app, backend, idp.url)
    assert client.get("/orders", headers=bearer(rsa_a)).status_code == 200
    assert client.get("/orders", headers=bearer(SigningKey("RS256", kid="stranger"))).status_code == 401
    assert idp.fetches == 2  # the unknown kid looked once
    idp.publish(rsa_a, rsa_b)
    refused = client.get("/orders", headers=bearer(rsa_b))  # still within the cooldown: no new fetch
    assert refused.status_code == 401 and idp.fetches == 2
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    time.sleep(0.35)
    assert client.get("/orders", headers=bearer(rsa_b)).status_code == 200
    assert idp.fetches == 3
    assert client.get("/orders", headers=bearer(rsa_a)).status_code == 200 and idp.fetches == 3


def test_es256_and_algorithm_pinned_per_key(make_app: AppFactory, backend: Backend, idp: Idp,
                                            rsa_a: SigningKey, ec_c: SigningKey) -> None:
    client = jwks_app(make_app, backend, idp.url)
    assert client.get("/orders", headers=bearer(ec_c)).status_code == 200
    # The EC key's kid on an RSA signature: the key would not verify RS256, so the token is refused.
    assert client.get("/orders", headers=bearer(rsa_a, kid="c")).status_code == 401


def test_outage_with_a_warm_cache_still_serves(make_app: AppFactory, backend: Backend, idp: Idp,
                                               rsa_a: SigningKey) -> None:
    client = jwks_app(make_app, backend, idp.url)
    assert client.get("/orders", headers=bearer(rsa_a)).status_code == 200
    idp.down = True
    assert client.get("/orders", headers=bearer(SigningKey("RS256", kid="new"))).status_code == 401
    assert client.get("/orders", headers=bearer(rsa_a)).status_code == 200


def test_outage_with_a_cold_cache_is_503_then_recovers(make_app: AppFactory, backend: Backend, idp: Idp,
                                                       rsa_a: SigningKey) -> None:
    idp.down = True
    client = jwks_app(make_app, backend, idp.url)
    response = client.get("/orders", headers=bearer(rsa_a))
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["type"].endswith("/keys-unavailable")
    idp.down = False
    time.sleep(1.0)  # the pause between two attempts of a cold cache
    assert client.get("/orders", headers=bearer(rsa_a)).status_code == 200


def test_unreachable_identity_provider_is_503(make_app: AppFactory, backend: Backend, rsa_a: SigningKey) -> None:
    client = jwks_app(make_app, backend, f"http://127.0.0.1:{free_port()}/jwks")
    assert client.get("/orders", headers=bearer(rsa_a)).status_code == 503
    assert client.get("/orders").status_code == 401  # no token: nothing to fetch keys for
    assert backend.received == []


class _Span:
    """A request span that records the child spans it starts and how they end."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def call(self, upstream: str, target: str) -> _Span:
        self.calls.append((upstream, "open"))
        return self

    def end(self, error: str | None) -> None:
        name, _ = self.calls[-1]
        self.calls[-1] = (name, error)


def test_each_fetch_is_a_span_of_the_request_that_caused_it(rsa_a: SigningKey) -> None:
    span = _Span()
    source = Source(document(rsa_a))
    keys = cache(source, Clock())
    with Flask(__name__).test_request_context(environ_base={TRACE_ENVIRON: span}):
        assert keys.key_for("a") is not None
        source.down = True
        assert keys.key_for("unknown") is None  # an unknown kid: one refresh, which fails
    assert span.calls == [("jwks", None), ("jwks", "down")]
