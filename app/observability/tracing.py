"""W3C Trace Context: continue the client's trace or start one, and hand each upstream call its parent id.

Without OpenTelemetry the gateway still takes part in traces: it keeps a valid incoming trace
id, names itself with a fresh span id (which becomes the upstream's parent id), and logs the
trace id. With the ``otel`` extra enabled, app/observability/otel.py supplies the same interface backed by
real spans that are exported.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from app.config import ConfigError, Section

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = [
    "CallSpan", "RequestSpan", "Tracer", "TracingSettings", "W3CTracer", "build_tracer",
    "parse_traceparent", "read_tracing_settings",
]

log = logging.getLogger("frontdesk.tracing")

#: Where the request's span sits in the WSGI environ, for the transport and the access log.

# version 00 (any other version is read by its first four fields, as the spec asks), lower-case hex.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# tracestate: at most 32 members (512 bytes is the spec's propagation floor); longer ones are dropped.
_TRACESTATE_MAX = 512


@dataclass(frozen=True)
class Parent:
    """A valid incoming traceparent (and its tracestate)."""

    trace_id: str
    span_id: str
    flags: str
    tracestate: str | None


def parse_traceparent(traceparent: str | None, tracestate: str | None) -> Parent | None:
    """The caller's trace context when ``traceparent`` is valid, else None (a new trace starts)."""
    if not traceparent:
        return None
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if tracestate is not None and len(tracestate) > _TRACESTATE_MAX:
        tracestate = None
    return Parent(trace_id, span_id, flags, tracestate)


class CallSpan(Protocol):
    """One upstream call: its ``traceparent`` header, ended with the outcome."""

    def traceparent(self) -> str:
        """The traceparent to send with this call."""

    def end(self, error: str | None) -> None:
        """The call is over; ``error`` names what went wrong, if anything."""


class RequestSpan(Protocol):
    """The gateway's span for one request."""

    trace_id: str
    span_id: str
    tracestate: str | None

    def call(self, upstream: str, target: str) -> CallSpan:
        """A span for one upstream call made while serving this request."""

    def end(self, status: int | None) -> None:
        """The request is over (its body sent)."""


class Tracer(Protocol):
    """Starts the gateway's span for each request."""

    def start_request(self, environ: WSGIEnvironment) -> RequestSpan:
        """The span for this request, continuing the caller's trace when it sent a valid one."""


class _W3CSpan:
    """A span that exists only as ids: it is propagated and logged, never exported."""

    __slots__ = ("trace_id", "span_id", "flags", "tracestate")

    def __init__(self, trace_id: str, span_id: str, flags: str, tracestate: str | None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.flags = flags
        self.tracestate = tracestate

    def call(self, upstream: str, target: str) -> _W3CSpan:
        # Nothing is exported, so the request's own span id is the upstream's parent.
        return self

    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def end(self, outcome: object) -> None:
        pass


class W3CTracer:
    """Trace Context propagation without exporting anything (the default)."""

    def start_request(self, environ: WSGIEnvironment) -> RequestSpan:
        """Continue the caller's trace with a new span id, or start a trace (sampled: 01)."""
        parent = parse_traceparent(environ.get("HTTP_TRACEPARENT"), environ.get("HTTP_TRACESTATE"))
        span_id = _random_hex(8)
        if parent is None:
            return _W3CSpan(_random_hex(16), span_id, "01", None)
        return _W3CSpan(parent.trace_id, span_id, parent.flags, parent.tracestate)


def _random_hex(size: int) -> str:
    value = os.urandom(size).hex()
    # All-zero ids are invalid; the odds are 2^-64 at worst, but the answer must still be valid.
    return value if value.strip("0") else _random_hex(size)


@dataclass(frozen=True)
class TracingSettings:
    """The [tracing] section."""

    otel: bool
    service_name: str
    otlp_endpoint: str | None


def read_tracing_settings(config: Mapping[str, Any]) -> TracingSettings:
    """Read and check the [tracing] section."""
    section = Section("tracing", config["TRACING"])
    settings = TracingSettings(
        otel=section.boolean("otel"),
        service_name=section.string("service_name"),
        otlp_endpoint=section.optional_string("otlp_endpoint"),
    )
    if settings.otlp_endpoint is not None and not re.match(r"https?://", settings.otlp_endpoint):
        raise ConfigError(section.key("otlp_endpoint"), settings.otlp_endpoint, "an http:// or https:// URL")
    section.done()
    return settings


def build_tracer(settings: TracingSettings) -> Tracer:
    """The OpenTelemetry tracer when enabled and installed, else plain W3C propagation."""
    if not settings.otel:
        return W3CTracer()
    try:
        from app.observability.otel import OTelTracer  # only here: the otel extra is optional
    except ImportError as error:
        log.warning("tracing.otel is on but OpenTelemetry is not installed (pip install .[otel]): "
                    "propagating trace context without exporting spans", extra={"fields": {"cause": str(error)}})
        return W3CTracer()
    return OTelTracer(settings)
