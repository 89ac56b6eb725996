"""The demo `make run` serves: development settings, the three demo services, real gunicorn."""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from tests.gateway import ROOT, Gateway

pytestmark = pytest.mark.e2e


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for probe in sockets:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in sockets]
    for probe in sockets:
        probe.close()
    return ports


class DemoGateway(Gateway):
    """The gateway, plus where the demo identity provider listens."""

    idp_url = ""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoGateway]:
    """The demo services on free ports, and the gateway with the development settings pointed at them.

    One of each for the whole module: the tests only read, or create users nobody else counts.
    """
    users_1, users_2, orders, catalog, idp = _free_ports(5)
    services = subprocess.Popen(
        [sys.executable, "-m", "examples.demo", "--users-ports", f"{users_1},{users_2}",
         "--orders-port", str(orders), "--catalog-port", str(catalog), "--idp-port", str(idp)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert services.stdout is not None
        listening = [services.stdout.readline() for _ in range(5)]
        assert all("listening" in line for line in listening), listening
        # One worker: round-robin order is per worker.
        gateway = DemoGateway(tmp_path_factory.mktemp("demo"), "", workers=1, env={
            "GATEWAY_ENV": "development",
            "GATEWAY_LOG__FORMAT": "json",
            "GATEWAY_UPSTREAMS__USERS__TARGETS": f"http://127.0.0.1:{users_1},http://127.0.0.1:{users_2}",
            "GATEWAY_UPSTREAMS__ORDERS__TARGETS": f"http://127.0.0.1:{orders}",
            "GATEWAY_UPSTREAMS__CATALOG__TARGETS": f"http://127.0.0.1:{catalog}",
            "GATEWAY_AUTH__JWT__JWKS_URL": f"http://127.0.0.1:{idp}/.well-known/jwks.json",
        })
        gateway.idp_url = f"http://127.0.0.1:{idp}"
        try:
            gateway.start()
            yield gateway
        finally:
            gateway.stop()
    finally:
        services.terminate()
        services.wait(10)


def mint(demo: DemoGateway, *scopes: str, alg: str = "RS256") -> dict[str, str]:
    """Authorization for a demo token with ``scopes``, minted the way the README shows."""
    minted = subprocess.run(
        [sys.executable, "-m", "examples.demo.token", "--idp", demo.idp_url,
         "--alg", alg, *(f"--scope={scope}" for scope in scopes)],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=True,
    )
    return {"Authorization": "Bearer " + minted.stdout.strip()}


@pytest.fixture(scope="module")
def everything(demo: DemoGateway) -> dict[str, str]:
    """A token with every demo scope."""
    return mint(demo, "users:read", "users:write", "orders:read")


def test_users_round_robin_over_two_instances(demo: Gateway, everything: dict[str, str]) -> None:
    served_by = [requests.get(demo.url + "/api/users", headers=everything, timeout=5).headers["X-Served-By"]
                 for _ in range(4)]
    assert sorted(set(served_by)) == ["users#1", "users#2"]
    assert served_by[0] != served_by[1]


def test_users_code_blueprint_reads_and_writes(demo: Gateway, everything: dict[str, str]) -> None:
    one = requests.get(demo.url + "/api/users/u-1001", headers=everything, timeout=5)
    assert one.status_code == 200 and one.json()["id"] == "u-1001"
    missing = requests.get(demo.url + "/api/users/u-9999", headers=everything, timeout=5)
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/problem+json"  # the upstream's own, untouched
    created = requests.post(demo.url + "/api/users", json={"name": "Ada", "email": "ada@example.com"},
                            headers=everything, timeout=5)
    assert created.status_code == 201
    assert created.headers["Location"].startswith("/users/")


def test_orders_declared_routes(demo: DemoGateway, everything: dict[str, str]) -> None:
    listed = requests.get(demo.url + "/api/orders", params={"user": "u-1001"}, headers=everything, timeout=5)
    assert listed.status_code == 200
    one = requests.get(demo.url + "/api/orders/o-5001", headers=mint(demo, "orders:read", alg="ES256"), timeout=5)
    assert one.json()["id"] == "o-5001"


def test_orders_deadline_gives_504(demo: Gateway, everything: dict[str, str]) -> None:
    started = time.monotonic()
    slow = requests.get(demo.url + "/api/orders/o-5001/slow", params={"seconds": "3"}, headers=everything,
                        timeout=10)
    assert slow.status_code == 504
    assert slow.json()["type"].endswith("/upstream-timeout")
    assert time.monotonic() - started < 2.5  # orders has timeout = 1.0 in the development settings


def test_catalog_gzip_and_cookies_pass_through(demo: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", int(demo.url.rsplit(":", 1)[1])), timeout=5) as connection:
        connection.sendall(b"GET /api/catalog/products HTTP/1.1\r\nHost: demo\r\nAccept-Encoding: gzip\r\n"
                           b"Connection: close\r\n\r\n")
        raw = b""
        while chunk := connection.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
    assert lines[0] == "HTTP/1.1 200 OK"
    assert ("Content-Encoding", "gzip") in headers
    assert ("Content-Length", str(len(body))) in headers
    assert len([value for name, value in headers if name == "Set-Cookie"]) == 2
    assert json.loads(gzip.decompress(body))


def test_traversal_is_refused_before_any_upstream(demo: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", int(demo.url.rsplit(":", 1)[1])), timeout=5) as connection:
        connection.sendall(b"GET /api/catalog/%2e%2e/admin HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
        answer = connection.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"application/problem+json" in answer


def test_no_token_is_401_and_a_missing_scope_403(demo: DemoGateway) -> None:
    anonymous = requests.get(demo.url + "/api/orders", timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.headers["Content-Type"] == "application/problem+json"
    assert 'Bearer realm="frontdesk"' in anonymous.headers["WWW-Authenticate"]
    reader = requests.post(demo.url + "/api/orders", json={}, headers=mint(demo, "orders:read"), timeout=5)
    assert reader.status_code == 403
    assert 'error="insufficient_scope", scope="orders:write"' in reader.headers["WWW-Authenticate"]


def test_demo_api_key_reads_orders(demo: Gateway) -> None:
    key = {"X-API-Key": "demo-batch-key-0123456789abcdef0123456789abcdef"}
    assert requests.get(demo.url + "/api/orders/o-5001", headers=key, timeout=5).status_code == 200
    assert requests.get(demo.url + "/api/orders/o-5001", headers={"X-API-Key": "guess"}, timeout=5).status_code == 401
