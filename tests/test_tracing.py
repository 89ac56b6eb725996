"""W3C Trace Context through the gateway, the access log's trace fields, and OpenTelemetry export."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from app.observability.tracing import W3CTracer, build_tracer, parse_traceparent, read_tracing_settings
from tests.conftest import AppFactory, echo_config
from tests.fakes.backend import Backend

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"


def forwarded_traceparent(make_app: AppFactory, backend: Backend, headers: dict[str, str]) -> tuple[str, ...]:
    """(version, trace id, parent id, flags) the backend received, and its tracestate."""
    make_app(**echo_config(backend)).test_client().get("/x", headers=headers, buffered=True)
    [seen] = backend.wait_for(1)
    backend.clear()
    traceparent = seen.header("traceparent")
    assert traceparent is not None and len(seen.header_all("traceparent")) == 1
    return (*traceparent.split("-"), seen.header("tracestate") or "")


def test_valid_traceparent_keeps_the_trace_and_the_upstream_gets_the_gateways_span(
        make_app: AppFactory, backend: Backend) -> None:
    version, trace_id, parent_id, flags, state = forwarded_traceparent(
        make_app, backend, {"traceparent": VALID, "tracestate": "vendor=abc,other=1"})
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert parent_id != PARENT_ID and len(parent_id) == 16 and parent_id != "0" * 16
    assert state == "vendor=abc,other=1"


def test_unsampled_flag_is_kept(make_app: AppFactory, backend: Backend) -> None:
    assert forwarded_traceparent(make_app, backend, {"traceparent": VALID[:-2] + "00"})[3] == "00"


@pytest.mark.parametrize("traceparent", [
    None, "", "garbage", f"00-{TRACE_ID}-{PARENT_ID}", f"00-{'0' * 32}-{PARENT_ID}-01",
    f"00-{TRACE_ID}-{'0' * 16}-01", f"00-{TRACE_ID.upper()}-{PARENT_ID}-01", f"ff-{TRACE_ID}-{PARENT_ID}-01",
    f"00-{TRACE_ID}-{PARENT_ID}-01-extra", f"00-{TRACE_ID}x-{PARENT_ID}-01",
])
def test_invalid_or_missing_traceparent_starts_a_new_trace(make_app: AppFactory, backend: Backend,
                                                           traceparent: str | None) -> None:
    headers = {"tracestate": "vendor=abc"}
    if traceparent is not None:
        headers["traceparent"] = traceparent
    version, trace_id, parent_id, flags, state = forwarded_traceparent(make_app, backend, headers)
    assert version == "00" and len(trace_id) == 32 and trace_id != TRACE_ID and trace_id != "0" * 32
    assert len(parent_id) == 16 and flags == "01"
    assert state == ""  # a tracestate belongs to the trace it came with


def test_future_versions_are_read_by_their_first_fields() -> None:
    parent = parse_traceparent(f"01-{TRACE_ID}-{PARENT_ID}-01-more", None)
    assert parent is not None and parent.trace_id == TRACE_ID


def test_every_request_gets_a_distinct_trace() -> None:
    tracer = W3CTracer()
    ids = {tracer.start_request({}).trace_id for _ in range(100)}
    assert len(ids) == 100


def _access_lines(text: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "frontdesk.access"]


def test_access_log_carries_trace_and_upstream_fields(make_app: AppFactory, backend: Backend,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    client = make_app(**echo_config(backend), LOG={"level": "INFO"}).test_client()
    client.get("/_/slow/0.05?token=abc", headers={"traceparent": VALID}, buffered=True)
    [line] = _access_lines(capsys.readouterr().err)
    seen = backend.wait_for(1)[0].header("traceparent")
    assert line["trace_id"] == TRACE_ID
    assert seen == f"00-{TRACE_ID}-{line['span_id']}-01"
    assert line["path"] == "/_/slow/0.05" and line["route"] == "/<path:rest>"
    assert line["upstream"] == "echo" and line["target"] == backend.url
    assert 50 <= line["upstream_ms"] <= line["duration_ms"]
    # Reserved for the auth, cache and rate-limit features.
    assert line["consumer"] is None and line["cache"] is None and line["rate_limit"] is None


def test_otel_exports_request_and_upstream_spans(make_app: AppFactory, backend: Backend,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # export within 50 ms instead of 5 s
    with Backend("collector") as collector:
        app = make_app(**echo_config(backend), TRACING={
            "otel": True, "service_name": "gw-test", "otlp_endpoint": collector.url + "/v1/traces"})
        response = app.test_client().get("/items/1", headers={"traceparent": VALID}, buffered=True)
        assert response.status_code == 200
        [export] = collector.wait_for(1)
    assert export.target == "/v1/traces"
    request = ExportTraceServiceRequest.FromString(export.body)
    [resource_spans] = request.resource_spans
    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert attributes["service.name"] == "gw-test"
    spans = {span.name: span for scope in resource_spans.scope_spans for span in scope.spans}
    server, client = spans["GET /<path:rest>"], spans["GET echo"]
    assert server.trace_id.hex() == client.trace_id.hex() == TRACE_ID
    assert server.parent_span_id.hex() == PARENT_ID
    assert client.parent_span_id == server.span_id
    sent = backend.wait_for(1)[0].header("traceparent")
    assert sent == f"00-{TRACE_ID}-{client.span_id.hex()}-01"


def test_without_the_otel_extra_the_gateway_runs_unchanged(make_app: AppFactory, backend: Backend,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # An import of a name mapped to None raises ImportError, as when the package is absent.
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.setitem(sys.modules, "app.observability.otel", None)
    settings = read_tracing_settings({"TRACING": {"otel": True, "service_name": "x", "otlp_endpoint": None}})
    assert isinstance(build_tracer(settings), W3CTracer)
    app = make_app(**echo_config(backend), TRACING={"otel": True})
    response = app.test_client().get("/x", headers={"traceparent": VALID}, buffered=True)
    assert response.status_code == 200
    assert backend.wait_for(1)[0].header("traceparent").split("-")[1] == TRACE_ID  # type: ignore[union-attr]
