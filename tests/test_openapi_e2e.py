"""The OpenAPI document against the live gateway: real gunicorn gevent workers, real fake backends, schemathesis."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fakes.backend import Backend
from tests.gateway import Gateway

pytestmark = pytest.mark.e2e

KEY = "frontdesk-test-key-0000000000000000"
# An idle keep-alive connection holds a gevent worker through its whole graceful timeout at stop.
CLOSE = {"Connection": "close"}
ORDER_SCHEMA = ('{ type = "object", required = ["sku", "qty"], properties = { '
                'sku = { type = "string", maxLength = 16 }, '
                'qty = { type = "integer", minimum = 1, maximum = 1000 } } }')


def _config(backend: Backend) -> str:
    # The sample code families too, and every upstream they need pointed at the fake backend, under a
    # prefix its scripted /_/... paths can never be reached through.
    return f"""
[gateway]
blueprints = ["blueprints.users:bp", "blueprints.web:bp", "blueprints.mobile:bp"]

[upstreams.users]
targets = ["{backend.url}"]

[upstreams.orders]
targets = ["{backend.url}"]

[[routes]]
name = "place_order"
path = "/api/orders"
methods = ["GET", "POST"]
upstream = "orders"
upstream_path = "/orders"
auth = {{ scopes = ["orders:read"] }}
limits = ["1000/minute"]
request_schema = {ORDER_SCHEMA}
response_schema = {{ type = "object" }}
validate = true

[[routes]]
name = "order"
path = "/api/orders/<int:order_id>"
upstream = "orders"
upstream_path = "/orders/{{order_id}}"
auth = {{ scopes = ["orders:read"] }}
cache = {{ ttl = 5 }}

[[routes]]
name = "catalog"
path = "/api/catalog/<any(books, music):shelf>/<uuid:item>"
upstream = "orders"
upstream_path = "/catalog/{{shelf}}/{{item}}"
auth = "public"
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Backend]]:
    """One gateway (two gunicorn gevent workers) for this module: starting one costs seconds."""
    with Backend("echo") as backend:
        gateway = Gateway(tmp_path_factory.mktemp("openapi"), _config(backend), workers=2)
        try:
            yield gateway.start(), backend
        finally:
            gateway.stop()


@pytest.fixture
def gateway(live: tuple[Gateway, Backend]) -> Gateway:
    """The module's gateway."""
    return live[0]


@pytest.fixture
def upstream(live: tuple[Gateway, Backend]) -> Backend:
    """The module's fake backend, its record emptied for this test."""
    live[1].received.clear()
    return live[1]


def test_schemathesis_finds_no_server_error(gateway: Gateway, upstream: Backend, tmp_path: Path) -> None:
    report = tmp_path / "events.ndjson"
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", gateway.url + "/openapi.json",
        "--checks", "not_a_server_error", "--max-examples", "5", "--seed", "20261129", "--workers", "1",
        "--phases", "examples,fuzzing", "--request-timeout", "10", "--no-shrink",
        "--header", f"X-API-Key: {KEY}", "--report", "ndjson", "--report-ndjson-path", str(report),
    ]
    # The CLI in its own process: unpatched by gevent, and its config and caches in tmp_path.
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=100)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout or "passed" in result.stdout, result.stdout[-3000:]

    # It did test the operations, and requests got through the gateway to the upstream.
    tested = set()
    for line in report.read_text().splitlines():
        event = json.loads(line)
        for name, body in event.items():
            if name == "ScenarioFinished" and body.get("recorder"):
                tested.add(body["recorder"]["label"])
    assert {"POST /api/orders", "GET /api/orders/{order_id}", "GET /api/users/{user_id}"} <= tested, tested
    forwarded = {seen.target.split("?")[0].rsplit("/", 1)[0] for seen in upstream.received}
    assert {"/orders", "/users", "/catalog/books", "/catalog/music"} & forwarded, forwarded


def test_validation_through_gunicorn_keeps_a_valid_chunked_body_intact(gateway: Gateway, upstream: Backend) -> None:
    headers = {"X-API-Key": KEY, "Content-Type": "application/json", **CLOSE}
    chunks = [b'{"sku": "KB-33', b'00", "qty": 3}']
    response = requests.post(gateway.url + "/api/orders", data=iter(chunks), headers=headers, timeout=10)
    assert response.status_code == 200
    [seen] = upstream.wait_for(1)
    assert (seen.target, seen.body) == ("/orders", b"".join(chunks))

    refused = requests.post(gateway.url + "/api/orders", data=iter([b'{"sku": "KB-3300", ', b'"qty": 0}']),
                            headers=headers, timeout=10)
    assert refused.status_code == 400
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["errors"] == [{"pointer": "/qty", "detail": "0 is less than the minimum of 1"}]
    assert len(upstream.received) == 1  # only the valid one reached the upstream


def test_the_live_document_is_served_and_lists_the_declared_routes(gateway: Gateway) -> None:
    documents = [requests.get(gateway.url + "/openapi.json", headers=CLOSE, timeout=10) for _ in range(6)]
    assert {response.status_code for response in documents} == {200}
    assert len({response.headers["ETag"] for response in documents}) == 1  # every worker builds the same bytes
    paths = documents[0].json()["paths"]
    assert paths["/api/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "sku", "qty"]
    assert paths["/api/catalog/{shelf}/{item}"]["get"]["security"] == []
