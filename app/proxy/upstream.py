"""The public surface blueprints use: the ``upstreams`` extension and ``Upstream`` handles."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from flask import Blueprint, Flask, Response, current_app
from flask.blueprints import BlueprintSetupState

from app.observability import metrics
from app.config import ConfigError, problems_of
from app.current import current_gateway, current_request
from app.environ import (
    PATH_SAFE,
    ROUTE_ENVIRON,
    TRACE_ENVIRON,
    UPSTREAM_DURATION_ENVIRON,
    UPSTREAM_ENVIRON,
    raw_target,
)
from app.errors import UpstreamBusy
from app.proxy.attempts import call
from app.proxy.client import UpstreamState, build_session, build_states
from app.proxy.discovery import Resolver
from app.proxy.endpoints import Endpoint
from app.proxy.monitor import Monitor
from app.proxy.paths import check_path
from app.proxy.relay import TunnelLimits
from app.proxy.settings import UpstreamSettings, read_upstreams
from app.proxy.transport import ProxyResponse, build_request, build_response
from app.proxy.tunnel import check_handshake
from app.proxy.tunnels import open_tunnel
from app.observability.tracing import CallSpan, RequestSpan

__all__ = ["Upstream", "Upstreams", "start_attempt", "upstreams"]

_EXTENSION = "frontdesk.upstreams"


@dataclass(frozen=True)
class _Runtime:
    session: requests.Session
    states: dict[str, UpstreamState]
    monitor: Monitor
    by_blueprint: dict[str, list[str]]  # the upstreams each code blueprint declared, for the inventory
    tunnels: dict[str, int]  # WebSocket tunnels open in this worker, by route template


def _runtime(app: Flask | None = None) -> _Runtime:
    """This app's runtime, its background monitor started (in the worker, at the first use)."""
    runtime: _Runtime = (app or current_gateway()).extensions[_EXTENSION]
    runtime.monitor.ensure_started()
    return runtime


class Upstreams:
    """The app-less extension that owns the Session, the pools and each upstream's state."""

    def init_app(self, app: Flask) -> None:
        """Read [upstreams] and build this app's (this worker's) Session and pools."""
        settings = read_upstreams(app.config, problems_of(app))
        session = build_session(settings)
        states = build_states(session, settings)
        app.extensions[_EXTENSION] = _Runtime(session, states, Monitor(states), {}, {})

    def use_resolver(self, app: Flask, resolver: Resolver) -> None:
        """Resolve host names with ``resolver`` from now on, starting now (tests control DNS this way)."""
        runtime: _Runtime = app.extensions[_EXTENSION]
        runtime.monitor.resolver = resolver
        if runtime.monitor.started:
            runtime.monitor.resolve_all()

    def monitor(self, app: Flask | None = None) -> Monitor:
        """The app's background monitor (health checks and DNS), started."""
        return _runtime(app).monitor

    def state(self, name: str, app: Flask | None = None) -> UpstreamState:
        """One upstream's run-time state in this worker (endpoints, health, breakers)."""
        return _runtime(app).states[name]

    def stop(self, app: Flask) -> None:
        """Stop the app's background work (tests call this for every app they built)."""
        runtime: _Runtime = app.extensions[_EXTENSION]
        runtime.monitor.stop()

    def unavailable_critical(self, app: Flask | None = None) -> list[str]:
        """The upstreams marked ``critical`` that have no target able to take calls now."""
        return [name for name, state in _runtime(app).states.items()
                if state.settings.resilience.critical and not state.has_available()]

    def of_blueprint(self, blueprint: str, app: Flask | None = None) -> tuple[str, ...]:
        """The upstreams a code blueprint declared with ``Upstream(name, bp)``, in declaration order."""
        runtime: _Runtime = (app or current_app).extensions[_EXTENSION]
        return tuple(runtime.by_blueprint.get(blueprint, ()))

    def settings(self, app: Flask | None = None) -> dict[str, UpstreamSettings]:
        """Every configured upstream's settings, by name."""
        runtime: _Runtime = (app or current_app).extensions[_EXTENSION]
        return {name: state.settings for name, state in runtime.states.items()}

    def session(self, app: Flask | None = None) -> requests.Session:
        """The app's Session, for calls that are not a forward (JSON fetches and the like)."""
        runtime: _Runtime = (app or current_app).extensions[_EXTENSION]
        return runtime.session


#: The one instance ``create_app`` initialises.
upstreams = Upstreams()


class Upstream:
    """A handle on one configured upstream: ``users = Upstream("users", bp)``.

    Passing the blueprint makes registration check that the upstream is configured, so a
    missing one stops the start instead of failing the first request.
    """

    def __init__(self, name: str, blueprint: Blueprint | None = None) -> None:
        self.name = name
        if blueprint is not None:
            blueprint.record_once(self._check)

    def _check(self, state: BlueprintSetupState) -> None:
        if self.name not in state.app.extensions[_EXTENSION].states:
            problems_of(state.app).report(ConfigError(
                f"upstreams.{self.name}", None,
                f"an [upstreams.{self.name}] table: blueprint {state.blueprint.name!r} forwards to it"))
        endpoint_prefix = ".".join(filter(None, (state.name_prefix, state.name)))  # as in the endpoints' names
        state.app.extensions[_EXTENSION].by_blueprint.setdefault(endpoint_prefix, []).append(self.name)

    def tunnel(self, path: str | None = None, *, query: str | None = None,
               limits: TunnelLimits | None = None) -> Response:
        """Tunnel the current request, a WebSocket handshake, to this upstream at ``path`` (as ``forward``).

        The answer is the upstream's 101 followed by the relay, or the upstream's refusal; a request
        that is no valid handshake is answered 426 or 400 before anything is sent (docs/websocket.md).
        """
        environ = current_request().environ
        key = check_handshake(environ)
        url = _upstream_url(environ, path, query)
        runtime = _runtime()
        state = runtime.states[self.name]
        spans: list[CallSpan] = []

        def note(endpoint: Endpoint, headers: dict[str, str]) -> None:
            start_attempt(environ, state.settings, headers, spans, endpoint)

        try:
            return open_tunnel(state, environ, url, _host(environ, state.settings), key, limits or TunnelLimits(),
                               runtime.tunnels, environ.get(ROUTE_ENVIRON) or metrics.UNMATCHED, note)
        finally:
            if spans:
                spans[-1].end(None)

    def forward(self, path: str | None = None, *, query: str | None = None,
                retry_any_method: bool = False) -> ProxyResponse:
        """Forward the current request here, at ``path`` (default: the client's own path and query).

        ``retry_any_method`` lets the upstream's retry policy retry this route's non-idempotent
        methods too: only for a route whose upstream makes them safe (an idempotency key).
        """
        environ = current_request().environ
        url = _upstream_url(environ, path, query)
        state = _runtime().states[self.name]
        settings = state.settings
        if state.in_flight >= settings.max_in_flight:
            metrics.record_rejected(self.name)
            raise UpstreamBusy(f"The upstream already has {settings.max_in_flight} requests in flight.")
        host = _host(environ, settings)
        upstream_request = build_request(environ, host, url)
        if not settings.forward_authorization:
            upstream_request.headers.pop("Authorization", None)
        # One span per attempt (a retry is another upstream call), each with its own traceparent.
        spans: list[CallSpan] = []

        def note(endpoint: Endpoint) -> None:
            environ[UPSTREAM_ENVIRON] = (self.name, endpoint.label)
            start_attempt(environ, settings, upstream_request.headers, spans, endpoint)

        state.in_flight += 1
        metrics.set_in_flight(self.name, state.in_flight)
        started = time.perf_counter()
        try:
            endpoint, answer = call(state, environ, upstream_request, retry_any_method=retry_any_method,
                                    on_attempt=note)
        except BaseException as error:
            state.in_flight -= 1
            metrics.set_in_flight(self.name, state.in_flight)
            if spans:
                spans[-1].end(type(error).__name__)
            raise
        finally:
            environ[UPSTREAM_DURATION_ENVIRON] = time.perf_counter() - started
        if spans:
            spans[-1].end(f"status {answer.status}" if answer.status >= 500 else None)
        return build_response(answer, upstream_request.method, state, functools.partial(_release, endpoint))


def _upstream_url(environ: dict[str, Any], path: str | None, query: str | None) -> str:
    """The origin-form target upstream: ``path`` (default: the client's own, checked) and the query."""
    raw_path, _, raw_query = raw_target(environ)
    check_path(raw_path)
    upstream_path = raw_path if path is None else quote(path, safe=PATH_SAFE)
    query = raw_query if query is None else query
    return f"{upstream_path}?{query}" if query else upstream_path


def _host(environ: dict[str, Any], settings: UpstreamSettings) -> str:
    # Every target of one upstream is the same service: one Host for all of them.
    netloc = settings.targets[0].netloc
    return str(environ.get("HTTP_HOST", netloc)) if settings.preserve_host else netloc


def _release(endpoint: Endpoint) -> None:
    endpoint.in_flight -= 1


def start_attempt(environ: dict[str, Any], settings: UpstreamSettings, headers: dict[str, str],
                  spans: list[CallSpan], endpoint: Endpoint) -> None:
    """Before each attempt at ``endpoint``: its Host (unless preserved), and a new call span after
    the previous attempt's, whose traceparent goes into ``headers``."""
    if not settings.preserve_host:
        headers["Host"] = endpoint.target.netloc
    if spans:
        spans[-1].end("retried")
    span = _start_call(environ, settings.name, endpoint.label, headers)
    if span is not None:
        spans.append(span)


def _start_call(environ: dict[str, Any], upstream: str, target: str, headers: dict[str, str]) -> CallSpan | None:
    """The upstream call's span, its traceparent in ``headers``; the caller's tracestate only with its trace."""
    span: RequestSpan | None = environ.get(TRACE_ENVIRON)
    if span is None:
        return None
    call = span.call(upstream, target)
    headers["Traceparent"] = call.traceparent()
    if span.tracestate is None:
        headers.pop("Tracestate", None)
    else:
        headers["Tracestate"] = span.tracestate
    return call
