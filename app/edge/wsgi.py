"""The WSGI edge, outside Flask: trusted proxy hops, then the request id and the access log.

Both live here rather than in Flask hooks because they must cover the whole exchange: a
streamed body finishes long after Flask's request context has ended, and the access log's
duration and byte counts are only known then.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from werkzeug.middleware.proxy_fix import ProxyFix

from app.observability import metrics
from app.config import Section
from app.environ import (
    CACHE_ENVIRON,
    CONSUMER_ENVIRON,
    RATE_LIMIT_ENVIRON,
    REQUEST_ID_ENVIRON,
    ROUTE_ENVIRON,
    TRACE_ENVIRON,
    TUNNEL_ENVIRON,
    UPSTREAM_DURATION_ENVIRON,
    UPSTREAM_ENVIRON,
    connection_tokens,
)
from app.edge.guard import GuardSettings, read_guard_settings
from app.observability.logs import current_request_id, write_access_line
from app.observability.tracing import RequestSpan, Tracer, W3CTracer
from app.proxy import TunnelFigures

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "SPOOFABLE", "EdgeSettings", "RequestLog", "accept_request_id", "read_edge_settings", "scrub_client_fields",
    "wrap_wsgi",
]

# Bounded length and a conservative alphabet: the id is echoed into headers and logs.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~:+/=-]{0,127}")

access_log = logging.getLogger("frontdesk.access")

#: Request fields the edge drops, whoever sends them (docs/edge.md). Frameworks and proxies behind
#: gateways honour each of them without saying so in Vary: a client address, a rewritten URL or method,
#: another host. None is in a cache key, so one caller's value would shape the answer stored for every
#: later caller. The gateway's own view of these is X-Forwarded-For, -Proto and -Host, which it rebuilds.
SPOOFABLE = frozenset({
    "x-real-ip", "true-client-ip", "x-client-ip", "client-ip", "x-cluster-client-ip", "cf-connecting-ip",
    "fastly-client-ip", "x-originating-ip", "x-remote-ip", "x-remote-addr", "x-proxyuser-ip",
    "x-original-url", "x-original-uri", "x-rewrite-url", "x-override-url",
    "x-http-method-override", "x-http-method", "x-method-override",
    "x-host", "x-original-host", "x-http-host-override", "x-forwarded-server",
})
_SPOOFABLE_KEYS = tuple("HTTP_" + name.upper().replace("-", "_") for name in sorted(SPOOFABLE))
# Fields the server itself reads to frame and route the request: a Connection option never removes them.
# Upgrade is named in Connection by every WebSocket handshake; the transport drops it as hop-by-hop anyway.
_FRAMING = frozenset({"host", "content-length", "content-type", "transfer-encoding", "upgrade"})


def scrub_client_fields(environ: WSGIEnvironment) -> None:
    """At the edge, before any layer adds a field: drop the spoofable fields and those the client's
    Connection names (hop-by-hop by the client's own word, RFC 9110 7.6.1).

    Done here, not when the upstream request is built: by then the gateway has added its own
    fields (the request id, the caller's identity), and a client's ``Connection: X-Request-ID``
    would remove them.
    """
    for key in _SPOOFABLE_KEYS:
        environ.pop(key, None)
    connection = environ.get("HTTP_CONNECTION")
    if connection:
        for token in connection_tokens(connection) - _FRAMING:
            environ.pop("HTTP_" + token.upper().replace("-", "_"), None)


@dataclass(frozen=True)
class EdgeSettings:
    """The [edge] section: trusted hops here, the protections in app/edge/guard."""

    trusted_proxies: int
    guard: GuardSettings


def read_edge_settings(config: dict[str, Any]) -> EdgeSettings:
    """Read and check the [edge] section."""
    section = Section("edge", config["EDGE"])
    settings = EdgeSettings(trusted_proxies=section.integer("trusted_proxies"), guard=read_guard_settings(section))
    section.done()
    return settings


def wrap_wsgi(wsgi_app: WSGIApplication, settings: EdgeSettings, tracer: Tracer | None = None) -> WSGIApplication:
    """Wrap ``wsgi_app`` in the edge layers, built inside out: ProxyFix (when trusted hops are set)
    runs first, then RequestLog, then ``wsgi_app`` (the EdgeGuard around Flask)."""
    wrapped: WSGIApplication = RequestLog(wsgi_app, tracer)
    if settings.trusted_proxies:
        # Believe exactly as many X-Forwarded-* hops as there are proxies we run behind, so
        # a client can neither hide behind nor forge its address.
        hops = settings.trusted_proxies
        wrapped = ProxyFix(wrapped, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    return wrapped


def accept_request_id(value: str | None) -> str:
    """The client's X-Request-ID when it is well-formed, else a fresh one."""
    if value and _REQUEST_ID.fullmatch(value):
        return value
    # 128 random bits as 32 hex digits, as uuid4().hex looked, at a fifth of its cost (no UUID object).
    return os.urandom(16).hex()


class RequestLog:
    """Give each request an id and a trace span, return the id, and log and count it when the body is done."""

    def __init__(self, app: WSGIApplication, tracer: Tracer | None = None) -> None:
        self.app = app
        self.tracer: Tracer = tracer or W3CTracer()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request under its id."""
        started = time.perf_counter()
        scrub_client_fields(environ)  # first: every layer below sees only fields the client may set
        request_id = accept_request_id(environ.get("HTTP_X_REQUEST_ID"))
        environ[REQUEST_ID_ENVIRON] = environ["HTTP_X_REQUEST_ID"] = request_id
        token = current_request_id.set(request_id)
        if "HTTP_TRANSFER_ENCODING" in environ:
            environ["wsgi.input"] = _CountingInput(environ["wsgi.input"])
        environ[TRACE_ENVIRON] = span = self.tracer.start_request(environ)
        record = _Record(environ, started, span)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            record.status = status.split(" ", 1)[0]
            headers[:] = [(name, value) for name, value in headers if name.lower() != "x-request-id"]
            headers.append(("X-Request-ID", request_id))
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, start)
        except BaseException:
            record.finish()
            current_request_id.reset(token)
            raise
        return _LoggedBody(body, record)


class _Record:
    """What the access log line needs, gathered while the request runs."""

    __slots__ = ("environ", "started", "span", "status", "bytes_out")

    def __init__(self, environ: WSGIEnvironment, started: float, span: RequestSpan) -> None:
        self.environ = environ
        self.started = started
        self.span = span
        self.status = "-"
        self.bytes_out = 0

    def finish(self) -> None:
        now = time.perf_counter()
        duration = now - self.started
        environ = self.environ
        tunnel: TunnelFigures | None = environ.get(TUNNEL_ENVIRON)
        if tunnel is not None and tunnel.close is not None:
            tunnel.close()  # whatever ended the exchange, the tunnel and its slot go with it
        status = int(self.status) if self.status.isdigit() else None
        self.span.end(status)
        # A tunnel's request is its handshake: the time to the 101, not the tunnel's life.
        metrics.observe_request(environ.get(ROUTE_ENVIRON), environ.get("REQUEST_METHOD"), status,
                                duration if tunnel is None else tunnel.opened - self.started)
        if not access_log.isEnabledFor(logging.INFO):
            return
        stream = environ.get("wsgi.input")
        bytes_in = stream.count if isinstance(stream, _CountingInput) else int(environ.get("CONTENT_LENGTH") or 0)
        bytes_out = self.bytes_out
        if tunnel is not None:
            bytes_in, bytes_out = tunnel.bytes_up, tunnel.bytes_down
        upstream = environ.get(UPSTREAM_ENVIRON)
        upstream_duration = environ.get(UPSTREAM_DURATION_ENVIRON)
        # The query string is never logged: it is where clients put tokens and passwords.
        write_access_line({
            "method": environ.get("REQUEST_METHOD"),
            "path": (environ.get("RAW_URI") or environ.get("PATH_INFO") or "").partition("?")[0],
            "route": environ.get(ROUTE_ENVIRON),
            "upstream": upstream[0] if upstream else None,
            "target": upstream[1] if upstream else None,
            "upstream_ms": round(upstream_duration * 1000, 3) if upstream_duration is not None else None,
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "client": environ.get("REMOTE_ADDR"),
            "trace_id": self.span.trace_id,
            "span_id": self.span.span_id,
            # Set by auth (the verified caller), the cache (its Cache-Status) and the limiter (its decision).
            "consumer": environ.get(CONSUMER_ENVIRON),
            "cache": environ.get(CACHE_ENVIRON),
            "rate_limit": environ.get(RATE_LIMIT_ENVIRON),
            **({} if tunnel is None else {"tunnel_closed_by": tunnel.reason}),
        })


class _LoggedBody:
    """The response body, counted on its way out; closing it writes the access log line."""

    __slots__ = ("body", "record")

    def __init__(self, body: Iterable[bytes], record: _Record) -> None:
        self.body = body
        self.record = record

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.body:
            self.record.bytes_out += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.record.finish()
            current_request_id.set(None)


class _CountingInput:
    """A chunked request body, counted as it is read (its length is not known in advance)."""

    __slots__ = ("stream", "count")

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self.stream.readline(size)
        self.count += len(data)
        return data
