"""OpenTelemetry spans for the gateway request and each upstream call, exported over OTLP/HTTP.

The only module that imports OpenTelemetry (the optional ``otel`` extra): app/observability/tracing.py
imports it when ``[tracing] otel`` is on and falls back to plain propagation without it.
The SDK (its export thread included) starts on the first request a worker serves, so always
after gevent has patched the worker, never in the gunicorn master or the preflight check.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from app.environ import ROUTE_ENVIRON
from app.observability.tracing import TracingSettings, parse_traceparent

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["OTelTracer"]

# Where app/edge/wsgi.py's hook leaves the matched rule (not imported: edge imports tracing).


class _CallSpan:
    """A CLIENT span around one upstream call."""

    __slots__ = ("span",)

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def traceparent(self) -> str:
        context = self.span.get_span_context()
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"

    def end(self, error: str | None) -> None:
        if error is not None:
            self.span.set_status(Status(StatusCode.ERROR, error))
        self.span.end()


class _RequestSpan:
    """The SERVER span for one request; named after its route template once routing is done."""

    __slots__ = ("span", "tracer", "environ", "trace_id", "span_id", "tracestate")

    def __init__(self, span: trace.Span, tracer: trace.Tracer, environ: WSGIEnvironment,
                 tracestate: str | None) -> None:
        self.span = span
        self.tracer = tracer
        self.environ = environ
        context = span.get_span_context()
        self.trace_id = f"{context.trace_id:032x}"
        self.span_id = f"{context.span_id:016x}"
        self.tracestate = tracestate

    def call(self, upstream: str, target: str) -> _CallSpan:
        span = self.tracer.start_span(
            f"{self.environ.get('REQUEST_METHOD', '')} {upstream}", kind=SpanKind.CLIENT,
            context=trace.set_span_in_context(self.span),
            attributes={"frontdesk.upstream": upstream, "server.address": target},
        )
        return _CallSpan(span)

    def end(self, status: int | None) -> None:
        route = self.environ.get(ROUTE_ENVIRON)
        method = self.environ.get("REQUEST_METHOD", "")
        self.span.update_name(f"{method} {route}" if route else method)
        if route:
            self.span.set_attribute("http.route", route)
        if status is not None:
            self.span.set_attribute("http.response.status_code", status)
            if status >= 500:
                self.span.set_status(Status(StatusCode.ERROR))
        self.span.end()


class OTelTracer:
    """Tracer backed by the OpenTelemetry SDK; one provider per worker process, made lazily."""

    def __init__(self, settings: TracingSettings, exporter: SpanExporter | None = None) -> None:
        """``exporter`` replaces the OTLP exporter (tests pass an in-memory one)."""
        self.settings = settings
        self.exporter = exporter
        self.provider: TracerProvider | None = None
        self._tracer: trace.Tracer | None = None
        self._pid = 0

    def _get_tracer(self) -> trace.Tracer:
        if self._tracer is None or self._pid != os.getpid():
            exporter = self.exporter or OTLPSpanExporter(endpoint=self.settings.otlp_endpoint)
            self.provider = TracerProvider(resource=Resource.create({"service.name": self.settings.service_name}))
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
            self._tracer = self.provider.get_tracer("frontdesk")
            self._pid = os.getpid()
        return self._tracer

    def start_request(self, environ: WSGIEnvironment) -> _RequestSpan:
        """A SERVER span, child of the caller's span when it sent a valid traceparent."""
        tracer = self._get_tracer()
        parent = parse_traceparent(environ.get("HTTP_TRACEPARENT"), environ.get("HTTP_TRACESTATE"))
        context = None
        tracestate = None
        if parent is not None:
            tracestate = parent.tracestate
            remote = SpanContext(
                trace_id=int(parent.trace_id, 16), span_id=int(parent.span_id, 16), is_remote=True,
                trace_flags=TraceFlags(int(parent.flags, 16)),
                trace_state=TraceState.from_header([tracestate]) if tracestate else None,
            )
            context = trace.set_span_in_context(NonRecordingSpan(remote))
        span = tracer.start_span(environ.get("REQUEST_METHOD", ""), context=context, kind=SpanKind.SERVER,
                                 attributes={"http.request.method": environ.get("REQUEST_METHOD", "")})
        return _RequestSpan(span, tracer, environ, tracestate)
