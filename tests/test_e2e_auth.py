"""Auth through real gunicorn gevent workers: RS256 and ES256 from a JWKS, HS256 from the environment."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest
import requests

from tests.fakes.backend import Backend
from tests.fakes.idp import AUDIENCE, ISSUER, Idp, SigningKey, claims
from tests.gateway import Gateway

pytestmark = pytest.mark.e2e

SECRET = "e2e-secret-of-forty-bytes-0123456789abcd"
API_KEY = "e2e-key-7c1d9e3a5b7f9d1c3e5a7b9d1f3a5c7e"
ROUTES = f"""
[[routes]]
path = "/orders"
upstream = "echo"
auth = {{ scopes = ["orders:read"] }}

[[routes]]
path = "/open"
upstream = "echo"
auth = "public"

[auth.api_keys.consumers.batch]
key_sha256 = "{hashlib.sha256(API_KEY.encode()).hexdigest()}"
scopes = ["orders:read"]
"""


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with Backend("echo") as running:
        yield running


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey("RS256")


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey("ES256")


@pytest.fixture(scope="module")
def idp(rsa_key: SigningKey, ec_key: SigningKey) -> Iterator[Idp]:
    with Idp(rsa_key, ec_key) as running:
        yield running


def start(directory: Path, backend: Backend, jwt: str, workers: int, env: dict[str, str] | None = None) -> Gateway:
    """A gateway with the echo upstream, an [auth.jwt] table (issuer, audience and ``jwt``) and ROUTES."""
    config = (f'[upstreams.echo]\ntargets = ["{backend.url}"]\n\n'
              f'[auth.jwt]\nissuer = "{ISSUER}"\naudience = "{AUDIENCE}"\n{jwt}\n{ROUTES}')
    return Gateway(directory, config, workers=workers, env=env).start()


@pytest.fixture(scope="module")
def jwks_gateway(tmp_path_factory: pytest.TempPathFactory, backend: Backend, idp: Idp) -> Iterator[Gateway]:
    """Two workers verifying RS256 and ES256 tokens with keys from the local JWKS server."""
    gateway = start(tmp_path_factory.mktemp("jwks"), backend, f"""algorithms = ["RS256", "ES256"]
jwks_url = "{idp.url}"
forward_claims = ["email"]""", workers=2)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def hs_gateway(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> Iterator[Gateway]:
    """One worker verifying HS256 tokens; the secret comes from the environment, never the file."""
    gateway = start(tmp_path_factory.mktemp("hs"), backend, 'algorithms = ["HS256"]', workers=1,
                    env={"GATEWAY_AUTH__JWT__SECRET": SECRET})
    yield gateway
    gateway.stop()


def identity(backend: Backend) -> dict[str, str]:
    [received] = backend.wait_for(1)
    return {name.lower(): value for name, value in received.headers if name.lower().startswith("x-auth-")}


def test_concurrent_first_requests_fetch_once_per_worker(jwks_gateway: Gateway, idp: Idp,
                                                         rsa_key: SigningKey) -> None:
    token = {"Authorization": "Bearer " + rsa_key.sign(claims())}
    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(lambda _: requests.get(jwks_gateway.url + "/orders", headers=token,
                                                        timeout=10).status_code, range(80)))
    assert statuses == [200] * 80
    assert 1 <= idp.fetches <= 2  # one fetch per worker, however many requests wait for it


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_asymmetric_tokens_end_to_end(jwks_gateway: Gateway, backend: Backend, alg: str,
                                      rsa_key: SigningKey, ec_key: SigningKey) -> None:
    key = rsa_key if alg == "RS256" else ec_key
    backend.clear()
    token = key.sign(claims(sub=f"user-{alg}", email="u@example.com"))
    response = requests.get(jwks_gateway.url + "/orders", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert response.status_code == 200
    assert identity(backend) == {"x-auth-subject": f"user-{alg}", "x-auth-scopes": "orders:read",
                                 "x-auth-scheme": "jwt", "x-auth-claim-email": "u@example.com"}


def test_hs256_end_to_end_and_no_other_family(hs_gateway: Gateway, backend: Backend, rsa_key: SigningKey) -> None:
    backend.clear()
    token = jwt.encode(claims(sub="hs-user"), SECRET, algorithm="HS256")
    response = requests.get(hs_gateway.url + "/orders", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert response.status_code == 200
    assert identity(backend)["x-auth-subject"] == "hs-user"
    rs_token = rsa_key.sign(claims())
    refused = requests.get(hs_gateway.url + "/orders", headers={"Authorization": f"Bearer {rs_token}"}, timeout=5)
    assert refused.status_code == 401
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.headers["WWW-Authenticate"].startswith('Bearer realm="frontdesk", error="invalid_token"')
    log = hs_gateway.log()
    assert "/orders" in log  # the access log was written...
    assert token not in log and rs_token not in log  # ...and no token in it, accepted or refused


@pytest.mark.parametrize("authorization", [
    b"Bearer \xff\xfe\x80garbage",  # a NUL byte never gets here: gunicorn answers 400 itself
    b"Bearer a.b.c", b"Bearer " + b"x" * 8000, b"Basic Zm9vOmJhcg==", b"bearer", b"Bearer x, Bearer y",
])
def test_garbage_through_gunicorn_is_401(jwks_gateway: Gateway, authorization: bytes) -> None:
    status, head = raw_request(jwks_gateway, b"GET /orders HTTP/1.1\r\nHost: gw\r\nAuthorization: " + authorization
                               + b"\r\nConnection: close\r\n\r\n")
    assert status == 401, head
    assert b"application/problem+json" in head


def raw_request(gateway: Gateway, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1])), timeout=5) as connection:
        connection.sendall(request)
        raw = b""
        while chunk := connection.recv(65536):
            raw += chunk
    head = raw.partition(b"\r\n\r\n")[0]
    return int(head.split(b" ", 2)[1]), head


@pytest.mark.parametrize("path", ["/open", "/orders"])
def test_spoofed_identity_headers_never_reach_the_upstream(jwks_gateway: Gateway, backend: Backend, path: str) -> None:
    backend.clear()
    status, _ = raw_request(jwks_gateway, (
        f"GET {path} HTTP/1.1\r\nHost: gw\r\nX-Auth-Subject: admin\r\nx-auth-subject: root\r\n"
        f"X-AUTH-SCOPES: everything\r\nX_Auth_Consumer: batch\r\nX-Auth-Claim-Email: a@b\r\n"
        f"X-API-Key: {API_KEY}\r\nConnection: close\r\n\r\n").encode())
    assert status == 200
    assert identity(backend) == (
        {} if path == "/open" else {"x-auth-consumer": "batch", "x-auth-scopes": "orders:read",
                                    "x-auth-scheme": "api_key"})
    [received] = backend.wait_for(1)
    assert not received.header_all("X-API-Key") and not received.header_all("X_Auth_Consumer")
