"""Metrics in one process: what each request and upstream call records, bounded labels, the endpoint's gate."""

from __future__ import annotations

import re
import uuid
from typing import Any

import gevent
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from app.observability import metrics
from app.config import ConfigError
from tests.conftest import AppFactory, echo_config
from tests.fakes import free_port
from tests.fakes.backend import Backend

CATCH_ALL = "/<path:rest>"
TOKEN = "scrape-token-0123456789"


def call(client: FlaskClient, method: str, path: str, **kwargs: Any) -> TestResponse:
    """One request whose body is read and closed, as a server does: the edge records it then."""
    return client.open(path, method=method, buffered=True, **kwargs)


def sample(name: str, **labels: str) -> float:
    """The current value of one sample in this process (0 when it does not exist yet)."""
    metrics.flush()
    return REGISTRY.get_sample_value(name, labels) or 0.0


def series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Every (sample name, labels) pair of an exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items())))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_requests_are_counted_by_route_template_method_and_status_class(client: FlaskClient) -> None:
    before = sample("frontdesk_requests_total", route=CATCH_ALL, method="GET", status_class="5xx")
    before_ok = sample("frontdesk_requests_total", route=CATCH_ALL, method="POST", status_class="2xx")
    count_before = sample("frontdesk_request_duration_seconds_count", route=CATCH_ALL)
    assert call(client, "GET", "/_/status/503").status_code == 503
    assert call(client, "POST", "/a/b", data=b"x").status_code == 200
    assert sample("frontdesk_requests_total", route=CATCH_ALL, method="GET", status_class="5xx") == before + 1
    assert sample("frontdesk_requests_total", route=CATCH_ALL, method="POST", status_class="2xx") == before_ok + 1
    assert sample("frontdesk_request_duration_seconds_count", route=CATCH_ALL) == count_before + 2


def test_unrouted_requests_and_odd_methods_share_bounded_labels(make_app: AppFactory) -> None:
    client = make_app().test_client()
    before = sample("frontdesk_requests_total", route="unmatched", method="other", status_class="4xx")
    assert call(client, "BREW", "/nowhere/" + uuid.uuid4().hex).status_code == 404
    assert sample("frontdesk_requests_total", route="unmatched", method="other", status_class="4xx") == before + 1


def test_histogram_buckets_span_sub_millisecond_to_a_minute(client: FlaskClient) -> None:
    call(client, "GET", "/x")
    text = call(client, "GET", "/metrics").get_data(as_text=True)
    bounds = {
        s.labels["le"] for family in text_string_to_metric_families(text)
        if family.name == "frontdesk_request_duration_seconds"
        for s in family.samples if s.name.endswith("_bucket") and s.labels["route"] == CATCH_ALL
    }
    assert {"0.0005", "0.001", "0.01", "0.1", "1.0", "10.0", "30.0", "60.0", "+Inf"} <= bounds
    assert metrics.BUCKETS == tuple(sorted(metrics.BUCKETS))


def test_upstream_outcomes_ok_5xx_and_latency(client: FlaskClient, backend: Backend) -> None:
    labels = {"upstream": "echo", "target": backend.url}
    ok, errors = sample("frontdesk_upstream_requests_total", **labels, outcome="ok"), \
        sample("frontdesk_upstream_requests_total", **labels, outcome="5xx")
    slow_before = sample("frontdesk_upstream_duration_seconds_bucket", upstream="echo", le="0.1")
    total_before = sample("frontdesk_upstream_duration_seconds_count", upstream="echo")
    call(client, "GET", "/x")
    call(client, "GET", "/_/status/502")
    call(client, "GET", "/_/slow/0.2")
    assert sample("frontdesk_upstream_requests_total", **labels, outcome="ok") == ok + 2
    assert sample("frontdesk_upstream_requests_total", **labels, outcome="5xx") == errors + 1
    assert sample("frontdesk_upstream_duration_seconds_count", upstream="echo") == total_before + 3
    # The 0.2 s call is above the 0.1 s bucket, the two fast ones below it.
    assert sample("frontdesk_upstream_duration_seconds_bucket", upstream="echo", le="0.1") == slow_before + 2


def test_upstream_failures_are_counted_by_outcome(make_app: AppFactory, backend: Backend) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    refused = make_app(**{**echo_config(backend), "UPSTREAMS": {"echo": {"targets": [dead]}}}).test_client()
    before = sample("frontdesk_upstream_requests_total", upstream="echo", target=dead, outcome="connect_error")
    assert call(refused, "GET", "/x").status_code == 502
    assert sample("frontdesk_upstream_requests_total", upstream="echo", target=dead,
                  outcome="connect_error") == before + 1

    slow = make_app(**echo_config(backend, timeout=0.1)).test_client()
    labels = {"upstream": "echo", "target": backend.url}
    timeouts, resets = (sample("frontdesk_upstream_requests_total", **labels, outcome=o) for o in ("timeout", "error"))
    assert call(slow, "GET", "/_/slow/1").status_code == 504
    assert call(slow, "GET", "/_/reset").status_code == 502
    assert sample("frontdesk_upstream_requests_total", **labels, outcome="timeout") == timeouts + 1
    assert sample("frontdesk_upstream_requests_total", **labels, outcome="error") == resets + 1


def test_in_flight_gauge_and_rejections_over_max_in_flight(make_app: AppFactory, backend: Backend) -> None:
    client = make_app(**echo_config(backend, max_in_flight=1)).test_client()
    rejected = sample("frontdesk_upstream_rejected_total", upstream="echo")
    slow = gevent.spawn(call, client, "GET", "/_/slow/0.5")
    backend.wait_for(1)
    assert sample("frontdesk_upstream_in_flight", upstream="echo") == 1
    assert call(client, "GET", "/x").status_code == 503
    assert slow.get(timeout=5).status_code == 200
    assert sample("frontdesk_upstream_in_flight", upstream="echo") == 0
    assert sample("frontdesk_upstream_rejected_total", upstream="echo") == rejected + 1


def test_a_scan_of_random_paths_adds_no_series(make_app: AppFactory, backend: Backend) -> None:
    app = make_app(UPSTREAMS={"echo": {"targets": [backend.url]}},
                   ROUTES=[{"path": "/api/<path:rest>", "upstream": "echo", "auth": "public"}])
    client = app.test_client()
    # One of each kind first, so every series the scan can touch exists.
    call(client, "GET", "/api/warm")
    call(client, "GET", "/warm")
    call(client, "POST", "/warm")
    call(client, "GET", "/metrics")
    before = series(call(client, "GET", "/metrics").get_data(as_text=True))
    for _ in range(150):
        call(client, "GET", f"/api/{uuid.uuid4().hex}/{uuid.uuid4().hex}?q={uuid.uuid4().hex}")
        call(client, "GET", f"/{uuid.uuid4().hex}")
        call(client, uuid.uuid4().hex[:8].upper(), f"/{uuid.uuid4().hex}")
    after = series(call(client, "GET", "/metrics").get_data(as_text=True))
    ours = {entry for entry in after if entry[0].startswith("frontdesk_")}
    assert ours <= before
    # No label holds a scanned path's uuid (the registry is shared by the session: a route template such as
    # /mobile/users/<user_id>/overview can be 32 characters long too, so length alone is not the test).
    assert not any("warm" in value or re.search("[0-9a-f]{32}", value) for _, labels in ours for _, value in labels)


def test_helpers_refuse_labels_outside_their_fixed_sets() -> None:
    with pytest.raises(ValueError, match="fixed set"):
        metrics.observe_upstream("echo", "http://x:1", "teapot", 0.1)
    with pytest.raises(ValueError):
        metrics.record_auth("/r", "maybe")
    with pytest.raises(ValueError):
        metrics.record_rate_limit("/r", "perhaps")
    with pytest.raises(ValueError):
        metrics.record_cache("/r", "peek")


def test_feature_helpers_record_into_their_families(make_app: AppFactory) -> None:
    make_app()  # [metrics] enabled: recording is on
    before = sample("frontdesk_auth_total", route="/r", outcome="idp_unavailable")
    metrics.record_auth("/r", "idp_unavailable")
    metrics.record_cache("/r", "miss", "expired")
    assert sample("frontdesk_auth_total", route="/r", outcome="idp_unavailable") == before + 1
    assert sample("frontdesk_cache_events_total", route="/r", event="miss", reason="expired") >= 1


def test_disabled_metrics_record_nothing_and_serve_no_endpoint(make_app: AppFactory, backend: Backend) -> None:
    app = make_app(UPSTREAMS={"echo": {"targets": [backend.url]}}, METRICS={"enabled": False},
                   ROUTES=[{"path": "/api/<path:rest>", "upstream": "echo", "auth": "public"}])
    client = app.test_client()
    before = sample("frontdesk_upstream_requests_total", upstream="echo", target=backend.url, outcome="ok")
    call(client, "GET", "/api/x")
    assert sample("frontdesk_upstream_requests_total", upstream="echo", target=backend.url, outcome="ok") == before
    assert call(client, "GET", "/metrics").status_code == 404
    make_app()  # leave recording on for the tests after this one


def test_metrics_endpoint_is_the_gateways_own_not_forwarded(client: FlaskClient, backend: Backend) -> None:
    response = call(client, "GET", "/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    assert "frontdesk_requests_total" in response.get_data(as_text=True)
    assert backend.received == []


def test_metrics_refused_outside_allow_from(make_app: AppFactory) -> None:
    client = make_app().test_client()
    response = call(client, "GET", "/metrics", environ_base={"REMOTE_ADDR": "203.0.113.5"})
    assert response.status_code == 403
    assert response.content_type == "application/problem+json"
    assert response.json is not None and response.json["type"].endswith("/metrics-forbidden")
    allowed = make_app(METRICS={"allow_from": ["203.0.113.0/24"]}).test_client()
    assert call(allowed, "GET", "/metrics", environ_base={"REMOTE_ADDR": "203.0.113.5"}).status_code == 200


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", TOKEN, "Bearer"])
def test_metrics_with_a_token_refuse_anonymous_and_wrong_tokens(make_app: AppFactory,
                                                                authorization: str | None) -> None:
    client = make_app(METRICS={"token": TOKEN, "allow_from": []}).test_client()
    headers = {"Authorization": authorization} if authorization else {}
    response = call(client, "GET", "/metrics", headers=headers, environ_base={"REMOTE_ADDR": "198.51.100.1"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.content_type == "application/problem+json"
    assert TOKEN not in response.get_data(as_text=True)
    ok = call(client, "GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"},
              environ_base={"REMOTE_ADDR": "198.51.100.1"})
    assert ok.status_code == 200


@pytest.mark.parametrize(("overrides", "key"), [
    ({"token": "short"}, "metrics.token"),
    ({"allow_from": ["10.0.0.0/33"]}, "metrics.allow_from"),
    ({"path": "/metrics/<name>"}, "metrics.path"),
    ({"path": "metrics"}, "metrics.path"),
    ({"enabled": "perhaps"}, "metrics.enabled"),
    ({"tokn": "x"}, "metrics.tokn"),
])
def test_bad_metrics_settings_stop_the_start(make_app: AppFactory, overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_app(METRICS=overrides)
    assert caught.value.key == key
    assert "short" not in str(caught.value) or key != "metrics.token"  # the token itself is never echoed
