"""Metrics, logs and spans under real gunicorn: two gevent workers, summed counts, restarts, no secrets."""

from __future__ import annotations

import glob
import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.backend import Backend
from tests.gateway import Gateway

pytestmark = pytest.mark.e2e

TOKEN = "e2e-scrape-token-4f1d2c9a"
CATCH_ALL = "/<path:rest>"


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    """One echo backend for the module's gateway."""
    with Backend("echo") as running:
        yield running


@pytest.fixture(scope="module")
def collector() -> Iterator[Backend]:
    """Records the OTLP/HTTP exports of the module's gateway."""
    with Backend("collector") as running:
        yield running


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator-named multiprocess directory, with a stale file that start-up must wipe."""
    path = tmp_path_factory.mktemp("metrics")
    (path / "counter_999999.db").write_bytes(b"stale")
    return path


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, backend: Backend, collector: Backend,
            metrics_dir: Path) -> Iterator[Gateway]:
    """Two workers, metrics behind a token, the access log at INFO in JSON, spans exported."""
    config = f"""
[upstreams.echo]
targets = ["{backend.url}"]

[upstreams.users]  # the project's users blueprint forwards here
targets = ["{backend.url}"]

[[routes]]
path = "/<path:rest>"
upstream = "echo"
auth = "public"
methods = ["GET", "POST"]
"""
    running = Gateway(tmp_path_factory.mktemp("gateway"), config, workers=2, env={
        "GATEWAY_METRICS__TOKEN": TOKEN, "GATEWAY_METRICS_DIR": str(metrics_dir),
        "GATEWAY_TRACING__OTEL": "true", "GATEWAY_TRACING__OTLP_ENDPOINT": collector.url + "/v1/traces",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    })
    try:
        running.start()
        yield running
    finally:
        running.stop()


def scrape(gateway: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the endpoint serves, once every worker has flushed (each does every second)."""
    time.sleep(1.2)
    response = requests.get(gateway.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text) for s in family.samples
    }


def forwarded(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return samples.get(("frontdesk_requests_total", (("method", "GET"), ("route", CATCH_ALL),
                                                     ("status_class", "2xx"))), 0.0)


def per_worker(metrics_dir: Path) -> dict[int, float]:
    """Forwarded 2xx GETs counted in each worker's own file."""
    counts = {}
    for path in glob.glob(str(metrics_dir / "counter_*.db")):
        pid = int(Path(path).stem.split("_")[1])
        for metric in MultiProcessCollector.merge([path]):  # type: ignore[no-untyped-call]
            for s in metric.samples:
                if s.name == "frontdesk_requests_total" and s.labels == {
                        "route": CATCH_ALL, "method": "GET", "status_class": "2xx"}:
                    counts[pid] = s.value
    return counts


def burst(gateway: Gateway, size: int) -> None:
    """``size`` concurrent GETs, each on its own connection, so both workers accept some."""
    def one(index: int) -> int:
        return requests.get(f"{gateway.url}/_/slow/0.05?n={index}", headers={"Connection": "close"},
                            timeout=10).status_code

    with ThreadPoolExecutor(max_workers=25) as pool:
        assert set(pool.map(one, range(size))) == {200}


def test_stale_files_are_wiped_at_start(gateway: Gateway, metrics_dir: Path) -> None:
    assert not (metrics_dir / "counter_999999.db").exists()


def test_metrics_refuse_anonymous_scrapes(gateway: Gateway) -> None:
    response = requests.get(gateway.url + "/metrics", timeout=5)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_counts_are_summed_across_workers_and_survive_a_restart(gateway: Gateway, metrics_dir: Path) -> None:
    before = forwarded(scrape(gateway))
    sent = 0
    # A burst of known size, repeated (at most 4 times) until both workers have served some of it.
    for _ in range(4):
        burst(gateway, 60)
        sent += 60
        time.sleep(1.2)  # each worker writes its files once a second
        if len([count for count in per_worker(metrics_dir).values() if count > 0]) >= 2:
            break
    samples = scrape(gateway)
    assert forwarded(samples) == before + sent
    assert len(per_worker(metrics_dir)) >= 2
    upstream_ok = ("frontdesk_upstream_requests_total",
                   (("outcome", "ok"), ("target", gateway_backend_url(samples)), ("upstream", "echo")))
    assert samples[upstream_ok] >= sent
    assert samples[("frontdesk_upstream_in_flight", (("upstream", "echo"),))] == 0

    # A worker is replaced: its counts stay, its live gauge file goes.
    victim = gateway.worker_pids()[0]
    assert glob.glob(str(metrics_dir / f"gauge_livesum_{victim}.db"))
    os.kill(victim, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pids = gateway.worker_pids()
        if victim not in pids and len(pids) == 2:
            break
        time.sleep(0.1)
    assert victim not in gateway.worker_pids()
    assert not glob.glob(str(metrics_dir / f"gauge_livesum_{victim}.db"))
    time.sleep(0.5)  # the new worker boots
    burst(gateway, 10)
    assert forwarded(scrape(gateway)) == before + sent + 10


def gateway_backend_url(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> str:
    [target] = {dict(labels)["target"] for name, labels in samples if name == "frontdesk_upstream_requests_total"}
    return target


def test_secrets_sent_by_clients_never_reach_the_logs(gateway: Gateway) -> None:
    secrets = {
        "bearer": "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LWp3dA.Zm9yZ2VkLXNpZ25hdHVyZQ",
        "api_key": "ak_live_7f3c9e2b1d4a8f6e",
        "password": "hunter2-correct-horse",
        "basic": "dXNlcjpzM2NyM3QtYmFzaWM=",
    }
    headers = {"Authorization": f"Bearer {secrets['bearer']}", "X-Api-Key": secrets["api_key"]}
    query = {"password": secrets["password"], "api_key": secrets["api_key"]}
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for path in ("/ok", "/_/reset", "/_/status/500", "/a/%2e%2e/b"):
        requests.get(gateway.url + path, headers={**headers, "traceparent": traceparent}, params=query, timeout=5)
    requests.post(gateway.url + "/login", data={"user": "ada", "password": secrets["password"]},
                  headers={"Authorization": f"Basic {secrets['basic']}"}, timeout=5)
    requests.get(gateway.url + "/metrics", headers={"Authorization": f"Bearer {secrets['bearer']}"}, timeout=5)
    time.sleep(0.3)  # the access log line is written when the body is closed
    log = gateway.log()
    # The requests were logged (one access line each, the error lines with their cause)...
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert [line.get("trace_id") for line in lines].count("4bf92f3577b34da6a3ce929d0e0e4736") == 4
    assert any(line["message"] == "upstream failed" for line in lines)
    # ...and none of what the clients sent as credentials.
    for secret in secrets.values():
        assert secret not in log


def test_spans_are_exported_from_gevent_workers(gateway: Gateway, backend: Backend, collector: Backend) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    response = requests.get(gateway.url + "/traced", headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
                            timeout=5)
    assert response.status_code == 200
    sent = [r.header("traceparent") for r in backend.received if r.target == "/traced"]
    assert len(sent) == 1 and sent[0] is not None
    deadline = time.monotonic() + 10
    spans: dict[str, Any] = {}
    while time.monotonic() < deadline and len(spans) < 2:
        for export in list(collector.received):
            for resource in ExportTraceServiceRequest.FromString(export.body).resource_spans:
                for scope in resource.scope_spans:
                    spans.update({span.name: span for span in scope.spans if span.trace_id.hex() == trace_id})
        time.sleep(0.1)
    server, client = spans["GET /<path:rest>"], spans["GET echo"]
    assert server.parent_span_id.hex() == "b7ad6b7169203331"
    assert client.parent_span_id == server.span_id
    assert sent[0] == f"00-{trace_id}-{client.span_id.hex()}-01"
