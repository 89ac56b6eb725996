"""Forwarding in three steps: build the upstream request, send it, build the client's response.

The hot path talks to the urllib3 pool the Session's adapter owns rather than through
``Session.request``: that keeps the bytes exact (no decoding, duplicate headers kept, one
framing chosen here) and saves requests' model layer on every call (docs/decisions.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import gevent
from flask import Response
from urllib3 import BaseHTTPResponse, HTTPConnectionPool
from urllib3.exceptions import HTTPError, NewConnectionError, TimeoutError

from app import metrics
from app.errors import UpstreamTimeout, UpstreamUnreachable
from app.proxy.client import UpstreamState
from app.proxy.headers import request_headers, response_headers

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["ProxyResponse", "UpstreamRequest", "build_request", "build_response", "send"]

log = logging.getLogger("frontdesk.proxy")

_READ_SIZE = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class UpstreamRequest:
    """Everything needed to send one request upstream."""

    method: str
    url: str  # path and query, origin-form
    headers: dict[str, str]
    body: IO[bytes] | None
    chunked: bool


def build_request(environ: WSGIEnvironment, host: str, url: str) -> UpstreamRequest:
    """The upstream request for this client request, with exactly one body framing."""
    headers = request_headers(environ, host)
    chunked = "HTTP_TRANSFER_ENCODING" in environ
    if chunked:
        # Never both framings upstream: a chunked body is re-chunked, and a Content-Length
        # that came with it (gunicorn refuses those, other servers may not) is dropped.
        headers.pop("Content-Length", None)
    has_body = chunked or int(environ.get("CONTENT_LENGTH") or 0) > 0
    body = environ["wsgi.input"] if has_body else None
    return UpstreamRequest(environ["REQUEST_METHOD"], url, headers, body, chunked)


def send(state: UpstreamState, pool: HTTPConnectionPool, request: UpstreamRequest) -> BaseHTTPResponse:
    """Send the request and wait for the response head, within the upstream's deadline.

    The caller owns ``state.in_flight``: it was counted before this call and is released when
    the response is closed (or here, when no response comes).
    """
    settings = state.settings
    deadline = gevent.Timeout(settings.timeout)
    outcome = "error"
    started = time.perf_counter()
    deadline.start()
    try:
        answer = pool.urlopen(
            request.method, request.url, body=request.body, headers=request.headers, chunked=request.chunked,
            retries=False, redirect=False, assert_same_host=False, timeout=state.timeout,
            preload_content=False, decode_content=False, release_conn=False,
        )
        outcome = "5xx" if answer.status >= 500 else "ok"
        return answer
    except gevent.Timeout as expired:
        if expired is not deadline:
            raise
        outcome = "timeout"
        raise UpstreamTimeout(f"The upstream did not answer within {settings.timeout:g} s.") from None
    except NewConnectionError:  # before TimeoutError: urllib3 makes it a subclass of ConnectTimeoutError
        outcome = "connect_error"
        raise UpstreamUnreachable("The upstream refused the connection.") from None
    except TimeoutError:
        outcome = "timeout"
        raise UpstreamTimeout("The upstream did not answer in time.") from None
    except (HTTPError, OSError) as error:
        log.warning("upstream failed", extra={"fields": {"upstream": settings.name, "cause": type(error).__name__}})
        raise UpstreamUnreachable("The upstream closed the connection or answered with invalid HTTP.") from None
    finally:
        deadline.close()
        # Every caller of send is counted, whatever it forwards for (a route, an aggregate's part).
        metrics.observe_upstream(settings.name, _target_url(state, pool), outcome, time.perf_counter() - started)


def _target_url(state: UpstreamState, pool: HTTPConnectionPool) -> str:
    for target, candidate in state.pools:
        if candidate is pool:
            return target.url
    return "other"  # a pool the upstream does not own: keep the label set bounded anyway


class ProxyResponse(Response):
    """A response whose status, headers and bytes are the upstream's, passed through as they are."""

    # Werkzeug would otherwise invent a Content-Type and a Content-Length, and rewrite a few
    # headers on 304; the upstream's own are the ones to send.
    default_mimetype = None
    automatically_set_content_length = False

    def get_wsgi_headers(self, environ: WSGIEnvironment) -> object:  # type: ignore[override]
        """The headers as built, untouched."""
        return self.headers


def build_response(upstream: BaseHTTPResponse, method: str, state: UpstreamState) -> ProxyResponse:
    """The client's response: the upstream's status, headers and raw (still encoded) body."""
    headers = response_headers(upstream.headers.items(), upstream.headers.get("Connection"))
    body = _UpstreamBody(upstream, state)
    if method == "HEAD" or upstream.status in _NO_BODY_STATUSES or upstream.status < 200:
        upstream.read()  # nothing to stream: completing the (empty) read frees the connection now
        body.close()
    return ProxyResponse(body, status=upstream.status, headers=headers)


class _UpstreamBody:
    """The upstream's body, streamed in blocks; closing it frees the connection and the in-flight slot."""

    __slots__ = ("upstream", "state", "closed")

    def __init__(self, upstream: BaseHTTPResponse, state: UpstreamState) -> None:
        self.upstream = upstream
        self.state = state
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        if self.closed:
            return
        try:
            yield from self.upstream.stream(_READ_SIZE, decode_content=False)
        except (HTTPError, OSError) as error:
            # The head is already on its way to the client: the only honest signal left is to
            # break the client's connection too, so it cannot take a truncated body as whole.
            log.warning("upstream body broke off", extra={"fields": {
                "upstream": self.state.settings.name, "cause": type(error).__name__}})
            raise ConnectionResetError(104, "upstream body broke off") from None

    def close(self) -> None:
        """Give the connection back, or drop it when the body was not read to its end."""
        if self.closed:
            return
        self.closed = True
        self.state.in_flight -= 1
        metrics.set_in_flight(self.state.settings.name, self.state.in_flight)
        if not self.upstream.closed:
            # Unread bytes are still on the wire (the client went away mid-body): the
            # connection cannot carry another request, so it is closed, not reused.
            self.upstream.close()
        self.upstream.release_conn()
