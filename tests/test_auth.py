"""Auth through the Flask app: tokens, garbage, scopes, API keys, identity headers, the start-up refusal."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from flask import Blueprint, Flask, Response, g, jsonify
from flask.testing import FlaskClient

from app import create_app
from app.auth import public, require_api_key, require_jwt
from app.config import ConfigError
from tests.conftest import AppFactory
from tests.fakes.backend import Backend
from tests.fakes.idp import AUDIENCE, ISSUER, SigningKey, claims

SECRET = "test-secret-of-forty-bytes-0123456789abc"
KEY = "k-3f9a1c5e7b2d4f6a8c0e1b3d5f7a9c1e"
KEY_SHA256 = hashlib.sha256(KEY.encode()).hexdigest()
READ_ONLY_KEY = "k-read-only-0000000000000000000000000"


def hs_jwt(**extra: Any) -> dict[str, Any]:
    return {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["HS256"], "secret": SECRET, **extra}


def config(backend: Backend, jwt_settings: dict[str, Any] | None = None, **upstream: Any) -> dict[str, Any]:
    """An echo upstream behind routes of each kind of policy."""
    def route(path: str, auth: object, methods: tuple[str, ...] = ("GET",)) -> dict[str, Any]:
        return {"path": path, "upstream": "echo", "methods": list(methods), "auth": auth}

    return {
        "UPSTREAMS": {"echo": {"targets": [backend.url], **upstream}},
        "AUTH": {
            "jwt": jwt_settings or hs_jwt(forward_claims=["email", "tenant"]),
            "api_keys": {"consumers": {
                "batch": {"key_sha256": KEY_SHA256, "scopes": ["orders:read", "orders:write"], "plan": "gold"},
                "reader": {"key_sha256": hashlib.sha256(READ_ONLY_KEY.encode()).hexdigest(),
                           "scopes": ["orders:read"]},
            }},
        },
        "ROUTES": [
            route("/orders", {"scopes": ["orders:read"]}),
            route("/orders", {"scopes": ["orders:read", "orders:write"]}, ("POST",)),
            route("/jwt-only", {"schemes": ["jwt"]}),
            route("/key-only", {"schemes": ["api_key"]}),
            route("/open", "public"),
        ],
    }


def hs(payload: dict[str, Any] | None = None, secret: str = SECRET) -> dict[str, str]:
    """Authorization with an HS256 token; the payload is signed as it is (PyJWT's encode would refuse odd claims)."""
    body = json.dumps(payload or claims()).encode()
    return {"Authorization": "Bearer " + jwt.api_jws.encode(body, secret, algorithm="HS256")}


@pytest.fixture
def app(make_app: AppFactory, backend: Backend) -> Flask:
    return make_app(**config(backend))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def sent(backend: Backend) -> dict[str, str]:
    [received] = backend.wait_for(1)
    return {name.lower(): value for name, value in received.headers}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.get_json(force=True)
    assert body["status"] == status
    return body


# --- bearer tokens ------------------------------------------------------------------------------


def test_valid_token_reaches_the_upstream_with_identity_headers(client: FlaskClient, backend: Backend) -> None:
    response = client.get("/orders", headers=hs(claims(email="alice@example.com", tenant=7, azp="cli")))
    assert response.status_code == 200
    headers = sent(backend)
    assert headers["x-auth-subject"] == "alice"
    assert headers["x-auth-scopes"] == "orders:read"
    assert headers["x-auth-scheme"] == "jwt"
    assert headers["x-auth-consumer"] == "cli"
    assert headers["x-auth-claim-email"] == "alice@example.com"
    assert headers["x-auth-claim-tenant"] == "7"  # not a string: sent as JSON
    assert "authorization" not in headers  # forward_authorization is off by default


def test_forward_authorization_per_upstream(make_app: AppFactory, backend: Backend) -> None:
    client = make_app(**config(backend, forward_authorization=True)).test_client()
    token = hs()
    assert client.get("/orders", headers=token).status_code == 200
    assert sent(backend)["authorization"] == token["Authorization"]


def test_missing_token_is_401_with_a_bare_challenge(client: FlaskClient, backend: Backend) -> None:
    response = client.get("/jwt-only")
    body = assert_problem(response, 401)
    assert response.headers.getlist("WWW-Authenticate") == ['Bearer realm="frontdesk"']
    assert body["type"].endswith("/unauthorized")
    assert backend.received == []


def test_route_accepting_both_schemes_challenges_with_both(client: FlaskClient) -> None:
    response = client.get("/orders")
    assert response.headers.getlist("WWW-Authenticate") == [
        'Bearer realm="frontdesk"', 'ApiKey realm="frontdesk", header="X-API-Key"']


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: object, payload: object) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}.{_b64(b'sig')}"


GOOD = jwt.encode(claims(), SECRET, algorithm="HS256")
BAD_TOKENS: dict[str, str] = {
    "bearer alone": "Bearer",
    "bearer and spaces": "Bearer    ",
    "two tokens": f"Bearer {GOOD} {GOOD}",
    "two headers joined": f"Bearer {GOOD}, Bearer {GOOD}",
    "huge": "Bearer " + "a" * 20000,
    "binary": "Bearer \x00\x01\xff\xfe",
    "latin-1": "Bearer é.é.é",
    "not three parts": "Bearer abc",
    "dots only": "Bearer ...",
    "bad base64": "Bearer !!!.@@@.###",
    "header not json": f"Bearer {_b64(b'nope')}.{_b64(b'{}')}.{_b64(b'x')}",
    "header a list": f"Bearer {_unsigned([1], claims())}",
    "alg none": "Bearer " + jwt.encode(claims(), "", algorithm="none"),
    "alg none unsigned": f"Bearer {_unsigned({'alg': 'none'}, claims())}",
    "alg a number": f"Bearer {_unsigned({'alg': 5}, claims())}",
    "alg RS256 on an HS gateway": f"Bearer {_unsigned({'alg': 'RS256'}, claims())}",
    "kid a number": f"Bearer {_unsigned({'alg': 'HS256', 'kid': 5}, claims())}",
    "payload a list": f"Bearer {jwt.api_jws.encode(b'[1, 2]', SECRET, algorithm='HS256')}",
    "payload not json": f"Bearer {jwt.api_jws.encode(b'nope', SECRET, algorithm='HS256')}",
    "wrong secret": hs(secret="another-secret-of-forty-bytes-0123456789")["Authorization"],
    "tampered payload": "Bearer " + GOOD.split(".")[0] + "." + _b64(json.dumps(claims(sub="admin")).encode())
                        + "." + GOOD.split(".")[2],
    "expired": hs(claims(exp=1_000_000))["Authorization"],
    "not yet valid": hs(claims(nbf=4_000_000_000))["Authorization"],
    "wrong issuer": hs(claims(iss="https://evil.test/"))["Authorization"],
    "wrong audience": hs(claims(aud="someone-else"))["Authorization"],
    "no exp": hs(claims(exp=None))["Authorization"],
    "no sub": hs(claims(sub=None))["Authorization"],
    "exp a string": hs(claims(exp="tomorrow"))["Authorization"],
    "exp NaN": hs(claims(exp=float("nan")))["Authorization"],
    "exp infinite": hs(claims(exp=float("inf")))["Authorization"],
    "exp true": hs(claims(exp=True))["Authorization"],
    "iat a string": hs(claims(iat="now"))["Authorization"],
    "aud a number": hs(claims(aud=5))["Authorization"],
    "iss a list": hs(claims(iss=[ISSUER]))["Authorization"],
    "sub a number": hs(claims(sub=5))["Authorization"],
    "scope a number": hs(claims(scope=5))["Authorization"],
    "scope a list with a number": hs(claims(scope=["orders:read", 5]))["Authorization"],
    "scope an object": hs(claims(scope={"orders:read": True}))["Authorization"],
}


@pytest.mark.parametrize("authorization", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_garbage_authorization_is_401_never_500(client: FlaskClient, backend: Backend, authorization: str) -> None:
    response = client.get("/jwt-only", headers={"Authorization": authorization})
    body = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="frontdesk", error="invalid_token"'
    token = authorization.partition(" ")[2].strip()
    assert len(token) < 8 or token not in body["detail"]
    assert backend.received == []


@pytest.mark.parametrize("authorization", ["Basic YWxhZGRpbjpvcGVuc2VzYW1l", "Token abc", "bearerabc", ""])
def test_other_schemes_are_no_token_at_all(client: FlaskClient, authorization: str) -> None:
    response = client.get("/jwt-only", headers={"Authorization": authorization})
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="frontdesk"'


def test_a_token_is_never_logged(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    for authorization in (hs()["Authorization"], *BAD_TOKENS.values()):
        client.get("/jwt-only", headers={"Authorization": authorization})
    token_parts = {part for value in BAD_TOKENS.values() for part in value.split() if len(part) > 20}
    assert not any(part in caplog.text for part in token_parts | {GOOD})


# --- scopes -------------------------------------------------------------------------------------


def test_missing_scope_is_403_naming_it(client: FlaskClient, backend: Backend) -> None:
    response = client.post("/orders", headers=hs(claims(scope="orders:read other")))
    body = assert_problem(response, 403)
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="frontdesk", error="insufficient_scope", scope="orders:read orders:write"')
    assert "orders:write" in body["detail"]
    assert backend.received == []


def test_every_scope_is_needed_and_enough(client: FlaskClient) -> None:
    assert client.post("/orders", headers=hs(claims(scope="orders:write orders:read"))).status_code == 200


@pytest.mark.parametrize(("scope_claim", "extra"), [
    ("scp", {"scp": ["orders:read"]}),
    ("realm_access.roles", {"realm_access": {"roles": ["orders:read", "x"]}}),
])
def test_scope_claim_styles(make_app: AppFactory, backend: Backend, scope_claim: str, extra: dict[str, Any]) -> None:
    client = make_app(**config(backend, hs_jwt(scope_claim=scope_claim))).test_client()
    assert client.get("/orders", headers=hs(claims(scope=None, **extra))).status_code == 200
    assert client.get("/orders", headers=hs(claims(scope="orders:read"))).status_code == 403


# --- API keys -----------------------------------------------------------------------------------


def test_api_key_consumer_reaches_the_upstream(client: FlaskClient, backend: Backend) -> None:
    assert client.post("/orders", headers={"X-API-Key": KEY}).status_code == 200
    headers = sent(backend)
    assert headers["x-auth-consumer"] == "batch"
    assert headers["x-auth-plan"] == "gold"
    assert headers["x-auth-scheme"] == "api_key"
    assert "x-auth-subject" not in headers
    assert "x-api-key" not in headers  # the gateway's credential stays at the gateway


@pytest.mark.parametrize("key", ["unknown-key-00000000000000000000", KEY + "x", KEY.upper(), "é" * 10, "a" * 600])
def test_unknown_or_malformed_api_key_is_401(client: FlaskClient, key: str) -> None:
    response = client.get("/key-only", headers={"X-API-Key": key})
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == 'ApiKey realm="frontdesk", header="X-API-Key"'


def test_api_key_without_the_scope_is_403(client: FlaskClient) -> None:
    response = client.post("/orders", headers={"X-API-Key": READ_ONLY_KEY})
    assert_problem(response, 403)
    assert "WWW-Authenticate" not in response.headers


def test_each_route_accepts_only_its_schemes(client: FlaskClient) -> None:
    assert client.get("/jwt-only", headers={"X-API-Key": KEY}).status_code == 401
    assert client.get("/key-only", headers=hs()).status_code == 401
    assert client.get("/key-only", headers={"X-API-Key": KEY}).status_code == 200
    assert client.get("/orders", headers={"X-API-Key": KEY}).status_code == 200


# --- identity headers cannot be forged ----------------------------------------------------------

SPOOFED = {"X-Auth-Subject": "admin", "X-Auth-Scopes": "everything", "X-AUTH-CLAIM-EMAIL": "root@example.com",
           "x-auth-consumer": "batch", "X-Auth-Anything": "1"}


def test_spoofed_identity_headers_never_reach_a_public_route(client: FlaskClient, backend: Backend) -> None:
    assert client.get("/open", headers=SPOOFED).status_code == 200
    assert not [name for name in sent(backend) if name.startswith("x-auth-")]


def test_spoofed_identity_headers_are_replaced_by_the_verified_ones(client: FlaskClient, backend: Backend) -> None:
    assert client.get("/orders", headers={**SPOOFED, **hs()}).status_code == 200
    [received] = backend.wait_for(1)
    identity = sorted((name.lower(), value) for name, value in received.headers if name.lower().startswith("x-auth-"))
    assert identity == [("x-auth-scheme", "jwt"), ("x-auth-scopes", "orders:read"), ("x-auth-subject", "alice")]


@pytest.mark.parametrize("where", ["first", "middle", "last", "only"])
def test_take_credentials_drops_identity_names_wherever_they_sit_in_the_environ(app: Flask, where: str) -> None:
    # The names are searched joined, as one string: the first name has no separator before it.
    runtime = app.extensions["frontdesk.auth"]
    others = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_X_AUTHOR": "kept", "HTTP_HOST": "h",
              "HTTP_X_AUTH": "kept too: the prefix is X-Auth- with its dash"}
    spoofed = {"HTTP_X_AUTH_SUBJECT": "admin"}  # one: a second would be found after the first
    items = list(others.items())
    position = {"first": 0, "middle": 2, "last": len(items), "only": 0}[where]
    environ = dict(items[:position] + list(spoofed.items()) + items[position:]) if where != "only" else dict(spoofed)
    runtime.take_credentials(environ)
    assert environ == ({} if where == "only" else others)


# --- public keys from a PEM file ----------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey("RS256")


def pem_file(tmp_path: Path, key: SigningKey) -> str:
    path = tmp_path / "public.pem"
    path.write_bytes(key.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(path)


def test_pem_public_key_verifies_and_refuses_algorithm_confusion(
        make_app: AppFactory, backend: Backend, tmp_path: Path, rsa_key: SigningKey) -> None:
    path = pem_file(tmp_path, rsa_key)
    settings = {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["RS256"], "public_key_file": path}
    client = make_app(**config(backend, settings)).test_client()
    assert client.get("/jwt-only", headers={"Authorization": "Bearer " + rsa_key.sign(claims())}).status_code == 200
    # The classic attack: HS256 "signed" with the public key's PEM as the HMAC secret.
    pem = Path(path).read_bytes()
    forged_header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    header_and_payload = f"{forged_header}.{_b64(json.dumps(claims(sub='admin')).encode())}"
    signature = _b64(hmac.new(pem, header_and_payload.encode(), hashlib.sha256).digest())
    response = client.get("/jwt-only", headers={"Authorization": f"Bearer {header_and_payload}.{signature}"})
    assert_problem(response, 401)


def test_pem_key_of_the_wrong_family_stops_the_start(make_app: AppFactory, backend: Backend, tmp_path: Path,
                                                     rsa_key: SigningKey) -> None:
    settings = {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["ES256"],
                "public_key_file": pem_file(tmp_path, rsa_key)}
    with pytest.raises(ConfigError, match=r"^auth\.jwt\.public_key_file = .*: expected a key that "
                                          r"can verify one of ES256"):
        make_app(**config(backend, settings))


# --- code routes and the start-up refusal -------------------------------------------------------


def code_blueprint() -> Blueprint:
    bp = Blueprint("me", __name__)

    @bp.get("/me")
    @require_jwt(scopes=("profile",))
    def me() -> Response:
        return jsonify(subject=g.principal.subject, scopes=sorted(g.principal.scopes))

    @bp.get("/machines")
    @require_api_key()
    def machines() -> Response:
        return jsonify(consumer=g.principal.consumer)

    @bp.get("/hello")
    @public
    def hello() -> Response:
        return jsonify(hello="world")

    return bp


def test_code_routes_see_the_principal_on_g(make_app: AppFactory, backend: Backend) -> None:
    client = make_app(**config(backend), blueprints=(code_blueprint(),)).test_client()
    assert client.get("/me", headers=hs(claims(scope="profile x"))).get_json() == {
        "subject": "alice", "scopes": ["profile", "x"]}
    assert client.get("/me", headers=hs()).status_code == 403
    assert client.get("/machines", headers={"X-API-Key": KEY}).get_json() == {"consumer": "batch"}
    assert client.get("/hello").status_code == 200


def test_code_route_without_policy_stops_the_start_naming_it(make_app: AppFactory) -> None:
    bp = Blueprint("sloppy", __name__)

    @bp.get("/forgotten")
    def forgotten() -> str:
        return "oops"

    with pytest.raises(ConfigError, match=r"^auth policy of /forgotten = 'sloppy.forgotten': expected @public"):
        make_app(blueprints=(bp,))


def test_declared_route_without_auth_stops_the_start_naming_it(make_app: AppFactory, backend: Backend) -> None:
    with pytest.raises(ConfigError, match=r"^auth policy of /x = 'routes.r0_x': expected @public"):
        make_app(UPSTREAMS={"echo": {"targets": [backend.url]}}, ROUTES=[{"path": "/x", "upstream": "echo"}])


def test_route_defaults_can_set_the_policy(make_app: AppFactory, backend: Backend) -> None:
    app = make_app(**{**config(backend), "ROUTE_DEFAULTS": {"methods": ["GET"], "auth": {"scopes": ["a"]}},
                      "ROUTES": [{"path": "/x", "upstream": "echo"}]})
    assert app.test_client().get("/x", headers=hs(claims(scope="a"))).status_code == 200
    assert app.test_client().get("/x").status_code == 401


def test_route_needing_an_unconfigured_scheme_stops_the_start(backend: Backend) -> None:
    # Production, not testing: the testing settings configure API keys for the code blueprints.
    def make(**overrides: Any) -> None:
        create_app("production", blueprints=(), UPSTREAMS={"echo": {"targets": [backend.url]}}, **overrides)

    with pytest.raises(ConfigError, match=r"^auth policy of /x = 'routes.r0_x': expected configured schemes .*"
                                          r"missing: api_key"):
        make(AUTH={"jwt": hs_jwt()}, ROUTES=[{"path": "/x", "upstream": "echo", "auth": {"schemes": ["api_key"]}}])
    with pytest.raises(ConfigError, match=r"missing: jwt, api_key"):
        make(ROUTES=[{"path": "/x", "upstream": "echo", "auth": {"scopes": []}}])
