"""The per-worker cache of verified tokens: hits skip PyJWT, and nothing a full verification refuses gets through."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from flask import Blueprint, Response, g, jsonify
from flask.testing import FlaskClient

from app.auth import read_auth, require_jwt
from app.auth.keys import StaticKeys, VerifyingKey
from app.auth.tokens import JwtVerifier, _time_bounds, _time_fault, _Verified
from app.config import ConfigError
from tests.conftest import AppFactory
from tests.fakes.backend import Backend
from tests.fakes.idp import Idp, SigningKey, claims
from tests.test_auth import SECRET, assert_problem, config, hs, hs_jwt
from tests.test_auth_jwks import bearer, jwks_app


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens PyJWT decoded, in order: ``PyJWT.decode`` wrapped, its result untouched."""
    calls: list[str] = []
    original = jwt.PyJWT.decode

    def counting(self: jwt.PyJWT, token: str | bytes, *args: Any, **kwargs: Any) -> Any:
        calls.append(token if isinstance(token, str) else token.decode())
        return original(self, token, *args, **kwargs)

    monkeypatch.setattr(jwt.PyJWT, "decode", counting)
    return calls


def hs_client(make_app: AppFactory, backend: Backend, **jwt_settings: Any) -> FlaskClient:
    return make_app(**config(backend, hs_jwt(forward_claims=["email"], **jwt_settings))).test_client()


def subjects(backend: Backend, count: int) -> list[tuple[str, str]]:
    """(subject, email) of each request the upstream received, in order."""
    received = backend.wait_for(count)
    assert len(received) == count
    headers = [{name.lower(): value for name, value in request.headers} for request in received]
    return [(sent["x-auth-subject"], sent["x-auth-claim-email"]) for sent in headers]


def test_a_repeated_token_is_accepted_without_decoding_it_again(
        make_app: AppFactory, backend: Backend, decodes: list[str]) -> None:
    client = hs_client(make_app, backend)
    token = hs(claims(email="alice@example.com"))
    assert client.get("/orders", headers=token).status_code == 200
    assert client.get("/orders", headers=token).status_code == 200
    assert len(decodes) == 1
    assert subjects(backend, 2) == [("alice", "alice@example.com")] * 2


def test_two_tokens_never_get_each_others_claims(make_app: AppFactory, backend: Backend,
                                                 decodes: list[str]) -> None:
    client = hs_client(make_app, backend)
    alice = hs(claims(email="alice@example.com"))
    bob = hs(claims(sub="bob", email="bob@example.com"))
    for token in (alice, bob, alice, bob, bob, alice):
        assert client.get("/orders", headers=token).status_code == 200
    assert len(decodes) == 2
    alice_seen, bob_seen = ("alice", "alice@example.com"), ("bob", "bob@example.com")
    assert subjects(backend, 6) == [alice_seen, bob_seen, alice_seen, bob_seen, bob_seen, alice_seen]


def test_a_cached_token_that_expires_is_refused_with_the_expiry_message(
        make_app: AppFactory, backend: Backend) -> None:
    client = hs_client(make_app, backend, leeway=0)
    now = time.time()
    expires = int(now) + (1 if now % 1 < 0.7 else 2)  # at least 0.3 s to be accepted, at most 1.3 s to wait
    token = hs(claims(exp=expires))
    assert client.get("/orders", headers=token).status_code == 200
    assert client.get("/orders", headers=token).status_code == 200
    time.sleep(expires - time.time() + 0.02)
    refused = client.get("/orders", headers=token)
    assert assert_problem(refused, 401)["detail"] == "The token has expired."
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="frontdesk", error="invalid_token"'
    assert len(backend.received) == 2


def test_size_zero_decodes_every_time(make_app: AppFactory, backend: Backend, decodes: list[str]) -> None:
    client = hs_client(make_app, backend, verified_cache_size=0)
    token = hs(claims(email="alice@example.com"))
    for _ in range(3):
        assert client.get("/orders", headers=token).status_code == 200
    assert len(decodes) == 3
    assert subjects(backend, 3) == [("alice", "alice@example.com")] * 3


def test_the_size_bound_evicts_the_least_recently_used(make_app: AppFactory, backend: Backend,
                                                       decodes: list[str]) -> None:
    client = hs_client(make_app, backend, verified_cache_size=2)
    one, two, three = (hs(claims(sub=name, email=f"{name}@example.com")) for name in ("one", "two", "three"))
    for token in (one, two, three):  # three pushes one out
        assert client.get("/orders", headers=token).status_code == 200
    assert len(decodes) == 3
    assert client.get("/orders", headers=three).status_code == 200
    assert len(decodes) == 3  # still cached
    assert client.get("/orders", headers=one).status_code == 200
    assert len(decodes) == 4  # evicted, verified again (and now two is out)
    assert client.get("/orders", headers=two).status_code == 200
    assert len(decodes) == 5
    assert [subject for subject, _ in subjects(backend, 6)] == ["one", "two", "three", "three", "one", "two"]


@pytest.mark.parametrize("payload", [
    claims(exp=1_000_000),  # expired
    claims(aud="someone-else"),
], ids=["expired", "wrong audience"])
def test_a_refusal_is_never_cached(make_app: AppFactory, backend: Backend, decodes: list[str],
                                   payload: dict[str, Any]) -> None:
    client = hs_client(make_app, backend)
    for _ in range(2):
        assert_problem(client.get("/orders", headers=hs(payload)), 401)
    bad_signature = hs(claims(), secret="another-secret-of-forty-bytes-0123456789")
    for _ in range(2):
        assert_problem(client.get("/orders", headers=bad_signature), 401)
    assert len(decodes) == 4
    assert backend.received == []


def test_an_exp_too_large_for_a_float_is_cached_like_any_other(
        make_app: AppFactory, backend: Backend, decodes: list[str]) -> None:
    client = hs_client(make_app, backend)
    token = hs(claims(exp=10**400, email="alice@example.com"))  # PyJWT accepts it: int(exp) is fine
    assert client.get("/orders", headers=token).status_code == 200
    assert client.get("/orders", headers=token).status_code == 200
    assert len(decodes) == 1


def test_a_view_changing_its_claims_does_not_change_the_next_request(
        make_app: AppFactory, backend: Backend) -> None:
    bp = Blueprint("greedy", __name__)

    @bp.get("/greedy")
    @require_jwt()
    def greedy() -> Response:
        seen = jsonify(dict(g.principal.claims))
        g.principal.claims["realm_access"]["roles"].append("admin")
        g.principal.claims["sub"] = "mallory"
        return seen

    client = make_app(**config(backend), blueprints=(bp,)).test_client()
    token = hs(claims(realm_access={"roles": ["reader"]}))
    seen = [client.get("/greedy", headers=token).get_json() for _ in range(3)]  # a miss, then two hits
    assert [(claims["sub"], claims["realm_access"]) for claims in seen] == [("alice", {"roles": ["reader"]})] * 3


@pytest.mark.parametrize(("value", "shown"), [(-1, "-1"), ("many", "'many'"), (1.5, "1.5"), (True, "True")])
def test_a_bad_size_stops_the_start_naming_the_key(make_app: AppFactory, backend: Backend,
                                                   value: object, shown: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_app(**config(backend, hs_jwt(verified_cache_size=value)))
    assert str(caught.value).startswith(f"auth.jwt.verified_cache_size = {shown}: expected a whole number >= 0")


# --- key rotation (JWKS) ------------------------------------------------------------------------


@pytest.fixture
def idp() -> Iterator[tuple[Idp, SigningKey]]:
    key = SigningKey("RS256", kid="a")
    with Idp(key, SigningKey("ES256", kid="c")) as running:
        yield running, key


def test_a_key_rotated_away_fails_its_cached_tokens(make_app: AppFactory, backend: Backend,
                                                    idp: tuple[Idp, SigningKey], decodes: list[str]) -> None:
    server, key = idp
    client = jwks_app(make_app, backend, server.url)
    token = bearer(key)
    for _ in range(2):
        assert client.get("/orders", headers=token).status_code == 200
    assert len(decodes) == 1
    server.publish(SigningKey("ES256", kid="c"))  # "a" is gone
    assert client.get("/orders", headers=bearer(SigningKey("RS256", kid="new"))).status_code == 401  # refresh
    assert server.fetches == 2
    refused = client.get("/orders", headers=token)
    assert assert_problem(refused, 401)["detail"] == "The token was signed with an unknown key."
    assert len(backend.received) == 2


def test_a_key_replaced_under_the_same_kid_fails_its_cached_tokens(
        make_app: AppFactory, backend: Backend, idp: tuple[Idp, SigningKey], decodes: list[str]) -> None:
    server, key = idp
    client = jwks_app(make_app, backend, server.url)
    token = bearer(key)
    assert client.get("/orders", headers=token).status_code == 200
    impostor = SigningKey("RS256", kid="a")
    server.publish(impostor)
    assert client.get("/orders", headers=bearer(SigningKey("RS256", kid="new"))).status_code == 401  # refresh
    refused = client.get("/orders", headers=token)
    assert assert_problem(refused, 401)["detail"] == "The token's signature does not verify."
    assert len(decodes) == 2  # verified in full against the new key, not served from the cache
    assert client.get("/orders", headers=bearer(impostor)).status_code == 200
    assert len(backend.received) == 2


# --- the verifier on its own --------------------------------------------------------------------


def test_a_token_without_exp_is_cached_when_the_settings_allow_it(decodes: list[str]) -> None:
    settings = read_auth({"AUTH": {"jwt": hs_jwt()}}).jwt
    assert settings is not None
    # read_auth refuses required_claims without exp; a verifier built by hand may still leave it out.
    verifier = JwtVerifier(dataclasses.replace(settings, required_claims=("iss", "aud")),
                           StaticKeys(VerifyingKey(None, SECRET.encode(), frozenset({"HS256"}))))
    token = jwt.api_jws.encode(json.dumps(claims(exp=None)).encode(), SECRET, algorithm="HS256")
    assert verifier.verify(token)["sub"] == verifier.verify(token)["sub"] == "alice"
    assert len(decodes) == 1


NOW = 2_000_000_000.0


@pytest.mark.parametrize("times", [
    {"exp": NOW + 1}, {"exp": NOW}, {"exp": NOW - 30}, {"exp": NOW - 31}, {"exp": NOW - 30.5},
    {"exp": NOW + 0.9}, {"exp": NOW - 29.5}, {"nbf": NOW + 30, "exp": NOW + 60}, {"nbf": NOW + 31},
    {"nbf": NOW + 30.9}, {"iat": NOW + 31}, {"iat": NOW + 30}, {"iat": NOW + 31, "exp": NOW - 31},
    {"nbf": NOW - 100, "iat": NOW - 100, "exp": NOW - 100}, {"exp": 10**400}, {"exp": -(10**400)}, {},
])
@pytest.mark.parametrize("leeway", [0.0, 30.0])
def test_cached_time_checks_agree_with_pyjwt(times: dict[str, float], leeway: float) -> None:
    # PyJWT's own validators (2.15) at a fixed now: the cache must refuse exactly what they refuse.
    validators = jwt.PyJWT()
    expected: str | None = None
    try:
        for claim, check in (("iat", validators._validate_iat), ("nbf", validators._validate_nbf),
                             ("exp", validators._validate_exp)):
            if claim in times:
                check(times, NOW, leeway)
    except jwt.ExpiredSignatureError:
        expected = "The token has expired."
    except jwt.ImmatureSignatureError:
        expected = "The token is not valid yet."
    entry = _Verified({}, VerifyingKey(None, b"", frozenset()), *_time_bounds(times))
    assert _time_fault(entry, NOW, leeway) == expected
