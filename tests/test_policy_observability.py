"""Auth, rate limits, the cache and resilience report to the metrics (bounded labels) and the access log."""

from __future__ import annotations

import json
from typing import Any

import pytest

from prometheus_client import REGISTRY

from app.observability import metrics
from tests.conftest import AppFactory
from tests.fakes.backend import Backend

KEY = {"X-API-Key": "frontdesk-test-key-0000000000000000"}


def sample(name: str, **labels: str) -> float:
    """One sample's value in this process, 0 until it exists."""
    metrics.flush()
    return REGISTRY.get_sample_value(name, labels) or 0.0


def route(path: str, backend: Backend, **extra: Any) -> dict[str, Any]:
    """Overrides: one route at ``path`` to ``backend`` with ``extra`` route keys."""
    return {"UPSTREAMS": {"echo": {"targets": [backend.url]}},
            "ROUTES": [{"path": path, "upstream": "echo", **extra}]}


def test_auth_outcomes_are_counted_by_route(make_app: AppFactory, backend: Backend) -> None:
    path = "/auth-metrics"
    client = make_app(**route(path, backend, auth={"scopes": ["users:read"]})).test_client()
    before = {outcome: sample("frontdesk_auth_total", route=path, outcome=outcome)
              for outcome in ("ok", "missing", "invalid", "forbidden")}
    client.get(path, headers=KEY, buffered=True)
    client.get(path, buffered=True)
    client.get(path, headers={"X-API-Key": "not-a-key"}, buffered=True)
    client.get(path, headers={"Authorization": "Bearer x.y.z"}, buffered=True)  # no JWT scheme: missing
    after = {outcome: sample("frontdesk_auth_total", route=path, outcome=outcome) for outcome in before}
    assert {outcome: after[outcome] - before[outcome] for outcome in before} == {
        "ok": 1, "missing": 2, "invalid": 1, "forbidden": 0}


def test_rate_limit_decisions_are_counted_by_route(make_app: AppFactory, backend: Backend) -> None:
    path = "/limit-metrics"
    client = make_app(**route(path, backend, auth="public", limits=["2/minute"])).test_client()
    before = {decision: sample("frontdesk_rate_limit_decisions_total", route=path, decision=decision)
              for decision in ("allowed", "limited")}
    statuses = [client.get(path, buffered=True).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert sample("frontdesk_rate_limit_decisions_total", route=path, decision="allowed") - before["allowed"] == 2
    assert sample("frontdesk_rate_limit_decisions_total", route=path, decision="limited") - before["limited"] == 1


def test_cache_hits_misses_and_stores_are_counted(make_app: AppFactory, backend: Backend) -> None:
    path = "/cache-metrics"
    client = make_app(**route(path, backend, auth="public", cache={"ttl": 60})).test_client()
    names = {"hit": ("hit", ""), "miss": ("miss", "uri-miss"), "store": ("store", "")}
    before = {key: sample("frontdesk_cache_events_total", route=path, event=event, reason=reason)
              for key, (event, reason) in names.items()}
    assert [client.get(path, buffered=True).status_code for _ in range(3)] == [200, 200, 200]
    after = {key: sample("frontdesk_cache_events_total", route=path, event=event, reason=reason)
             for key, (event, reason) in names.items()}
    assert {key: after[key] - before[key] for key in names} == {"hit": 2, "miss": 1, "store": 1}
    assert len(backend.received) == 1
    assert sample("frontdesk_cache_bytes") > 0


def test_circuit_state_and_availability_per_target(make_app: AppFactory, backend: Backend) -> None:
    breaker = {"failure_ratio": 0.5, "min_requests": 2, "window": 10, "open_for": 30}
    app = make_app(UPSTREAMS={"flaky": {"targets": [backend.url], "breaker": breaker}},
                   ROUTES=[{"path": "/flaky", "upstream": "flaky", "auth": "public"}])
    client = app.test_client()
    labels = {"upstream": "flaky", "target": backend.url}
    assert client.get("/flaky", buffered=True).status_code == 200
    assert sample("frontdesk_circuit_state", **labels) == 0
    assert sample("frontdesk_target_available", **labels) == 1
    backend.status = 503
    for _ in range(2):
        client.get("/flaky", buffered=True)
    assert sample("frontdesk_circuit_state", **labels) == 2
    assert sample("frontdesk_target_available", **labels) == 0


def test_access_line_names_consumer_cache_and_limit(make_app: AppFactory, backend: Backend,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = "/logged"
    policies = {"auth": {"scopes": []}, "limits": ["5/minute"], "cache": {"ttl": 60, "scope": "consumer"}}
    app = make_app(**route(path, backend, **policies), LOG={"level": "INFO", "format": "json"})
    client = app.test_client()
    for _ in range(2):
        assert client.get(path, headers=KEY, buffered=True).status_code == 200
    lines = [json.loads(text) for text in capsys.readouterr().err.splitlines() if text.startswith("{")]
    access = [line for line in lines if line["logger"] == "frontdesk.access" and line["path"] == path]
    assert [(line["consumer"], line["rate_limit"], line["cache"].split(";")[0]) for line in access] == [
        ("tests", "allowed", "fwd=uri-miss"), ("tests", "allowed", "hit")]
    assert KEY["X-API-Key"] not in json.dumps(lines)
