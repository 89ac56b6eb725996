"""Opening one WebSocket tunnel: the route's slot, one endpoint, the handshake, and the relay's release.

Every slot taken here is given back on every path: the route's tunnel count when the tunnel closes
(or at once when no tunnel comes of it), the upstream's and the endpoint's in-flight counts when the
handshake's answer is in, and the breaker's ticket with a verdict only for the upstream's own faults
(a refused connection, a timeout, broken HTTP, a failing status); any other ending gives it back
without one (the fault rule, docs/decisions.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
from flask import Response
from urllib3.util import SKIP_HEADER

from app.environ import DRAIN_SIGNAL_ENVIRON, TUNNEL_ENVIRON, UPSTREAM_DURATION_ENVIRON, UPSTREAM_ENVIRON
from app.errors import TunnelsFull, TunnelUnsupported, UpstreamBusy, UpstreamDown, UpstreamTimeout, UpstreamUnreachable
from app.observability import metrics
from app.proxy.attempts import hash_key
from app.proxy.client import UpstreamState
from app.proxy.endpoints import FAILING_STATUSES, Endpoint
from app.proxy.headers import request_headers
from app.proxy.relay import Relay, TunnelFigures, TunnelLimits
from app.proxy.tunnel import Handshake, RefusalResponse, TunnelResponse, shake_hands

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["open_tunnel"]

#: The environ key under which gunicorn hands the app the client's connection (gunicorn.http.wsgi.create).
CLIENT_SOCKET = "gunicorn.socket"


def open_tunnel(state: UpstreamState, environ: WSGIEnvironment, url: str, host: str, key: str,
                limits: TunnelLimits, counts: dict[str, int], route: str,
                on_attempt: Callable[[Endpoint, dict[str, str]], None]) -> Response:
    """The client's answer: a 101 whose body relays the tunnel, or the upstream's refusal.

    ``counts`` holds the open tunnels per route in this worker; ``route`` names this one's.
    ``on_attempt`` prepares the headers for the chosen endpoint (Host, trace context).
    """
    client = environ.get(CLIENT_SOCKET)
    if client is None:
        raise TunnelUnsupported("This server offers no client connection to relay (run the gateway under gunicorn).")
    settings = state.settings
    if counts.get(route, 0) >= limits.max_tunnels:
        raise TunnelsFull(f"The route already has {limits.max_tunnels} WebSocket connections open.")
    if state.in_flight >= settings.max_in_flight:
        metrics.record_rejected(settings.name)
        raise UpstreamBusy(f"The upstream already has {settings.max_in_flight} requests in flight.")
    headers = _handshake_headers(environ, host, settings.forward_authorization)
    counts[route] = counts.get(route, 0) + 1  # taken now: a handshake under way counts against the limit
    try:
        answer = _handshake(state, environ, url, headers, key, on_attempt)
    except BaseException:
        counts[route] -= 1
        raise
    if answer.sock is None:
        counts[route] -= 1
        return RefusalResponse(answer)
    figures = TunnelFigures(route)
    metrics.record_tunnel_opened(route, counts[route])

    def release() -> None:
        counts[route] -= 1
        metrics.record_tunnel_closed(route, figures.reason or "client", counts[route])

    relay = Relay(client, answer.sock, answer.pending, limits, figures, environ.get(DRAIN_SIGNAL_ENVIRON), release)
    figures.close = relay.close  # the edge closes it too when the exchange ends (a response dropped by an error)
    environ[TUNNEL_ENVIRON] = figures
    try:
        return TunnelResponse(answer, relay)
    except BaseException:
        relay.close()
        raise


def _handshake_headers(environ: WSGIEnvironment, host: str, forward_authorization: bool) -> dict[str, str]:
    """What every forwarded request carries (identity and forwarded fields, never the API key), and the upgrade."""
    headers = {name: value for name, value in request_headers(environ, host).items() if value != SKIP_HEADER}
    if not forward_authorization:
        headers.pop("Authorization", None)
    headers["Connection"] = "Upgrade"
    headers["Upgrade"] = "websocket"
    return headers


def _handshake(state: UpstreamState, environ: WSGIEnvironment, url: str, headers: dict[str, str], key: str,
               on_attempt: Callable[[Endpoint, dict[str, str]], None]) -> Handshake:
    """Send the handshake to one endpoint within the upstream's deadline; its answer."""
    settings = state.settings
    balance_key = hash_key(environ, settings.resilience.hash_on) if settings.resilience.balance == "hash" else ""
    endpoint = state.pick(balance_key)
    ticket = endpoint.admit() if endpoint is not None else None
    if endpoint is None or ticket is None:
        raise UpstreamDown("No target of the upstream can take calls now.", state.retry_after())
    environ[UPSTREAM_ENVIRON] = (settings.name, endpoint.label)
    state.in_flight += 1
    endpoint.in_flight += 1
    metrics.set_in_flight(settings.name, state.in_flight)
    outcome = "error"
    started = time.perf_counter()
    deadline = gevent.Timeout(settings.timeout)
    deadline.start()
    try:
        on_attempt(endpoint, headers)
        answer = shake_hands(endpoint, url, headers, key, connect_timeout=settings.connect_timeout,
                             read_timeout=settings.read_timeout)
    except gevent.Timeout as expired:
        if expired is not deadline:
            endpoint.release(ticket)
            raise
        outcome = "timeout"
        endpoint.record_call(ticket, False)
        raise UpstreamTimeout(f"The upstream did not answer within {settings.timeout:g} s.") from None
    except UpstreamTimeout:
        outcome = "timeout"
        endpoint.record_call(ticket, False)
        raise
    except UpstreamUnreachable as error:
        outcome = "connect_error" if error.condition == "connect" else "error"
        endpoint.record_call(ticket, False)
        raise
    except BaseException:
        endpoint.release(ticket)  # not the upstream's doing (the worker is stopping, a bug): no verdict
        raise
    else:
        outcome = "5xx" if answer.status >= 500 else "ok"
        endpoint.record_call(ticket, answer.status not in FAILING_STATUSES)
    finally:
        deadline.close()
        state.in_flight -= 1
        endpoint.in_flight -= 1
        metrics.set_in_flight(settings.name, state.in_flight)
        seconds = time.perf_counter() - started
        environ[UPSTREAM_DURATION_ENVIRON] = seconds
        metrics.observe_upstream(settings.name, endpoint.label, outcome, seconds)
    return answer
