"""Forwarding in three steps: build the upstream request, send it, build the client's response.

The hot path talks to the urllib3 pool the Session's adapter owns rather than through
``Session.request``: that keeps the bytes exact (no decoding, duplicate headers kept, one
framing chosen here) and saves requests' model layer on every call (docs/decisions.md).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import gevent
from flask import Response
from gunicorn.http.errors import ParseException
from urllib3 import BaseHTTPResponse, HTTPConnectionPool, Retry
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, TimeoutError
from werkzeug.exceptions import ClientDisconnected
from werkzeug.wsgi import LimitedStream

from app.observability import metrics
from app.errors import (
    ClientBodyError,
    RequestBodyInvalid,
    RequestBodyTimeout,
    UpstreamTimeout,
    UpstreamUnreachable,
    problem_response,
)
from app.proxy.client import UpstreamState
from app.proxy.headers import request_headers, response_headers

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["ClientBody", "ProxyResponse", "UpstreamRequest", "build_request", "build_response", "send"]

log = logging.getLogger("frontdesk.proxy")

_READ_SIZE = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})
# What urlopen builds from retries=False on every call (Retry.from_int), built once: a Retry is
# never changed in place (increment returns a new one), so one instance serves every call.
_NO_RETRIES = Retry(False, redirect=False)


@dataclass(frozen=True)
class UpstreamRequest:
    """Everything needed to send one request upstream."""

    method: str
    url: str  # path and query, origin-form
    headers: dict[str, str]
    body: IO[bytes] | None
    chunked: bool


class ClientBody:
    """The client's body as the upstream call reads it: failing to read it is the client's fault.

    The fault rule (docs/decisions.md): what breaks while reading from the client (a malformed
    chunk, a body cut off, a client too slow for the deadline) is answered 400 or 408 and never
    counted against the upstream; what breaks on the upstream's side is the upstream's.
    """

    __slots__ = ("stream",)

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        """Read from the client, its failures turned into the client's errors."""
        try:
            return self.stream.read(size)
        except gevent.Timeout:
            # The deadline passed while waiting for the client's bytes, not the upstream's.
            raise RequestBodyTimeout("The request body arrived too slowly.") from None
        except (OSError, ParseException, ClientDisconnected):
            # gunicorn's chunk parser and its NoMoreData, Werkzeug's short Content-Length, a reset.
            raise RequestBodyInvalid("The request body is malformed or ended early.") from None


def build_request(environ: WSGIEnvironment, host: str, url: str) -> UpstreamRequest:
    """The upstream request for this client request, with exactly one body framing."""
    headers = request_headers(environ, host)
    chunked = "HTTP_TRANSFER_ENCODING" in environ
    if chunked:
        # Never both framings upstream: a chunked body is re-chunked, and a Content-Length
        # that came with it (gunicorn refuses those, other servers may not) is dropped.
        headers.pop("Content-Length", None)
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body: IO[bytes] | None = None
    if chunked:
        body = ClientBody(environ["wsgi.input"])  # type: ignore[assignment]
    elif length > 0:
        # gunicorn ends a body cut short by the client quietly; LimitedStream raises
        # ClientDisconnected instead, so the upstream call is abandoned (its connection closed,
        # never left waiting for bytes that will not come) rather than sent as if complete.
        body = ClientBody(LimitedStream(environ["wsgi.input"], length))  # type: ignore[assignment,arg-type]
    return UpstreamRequest(environ["REQUEST_METHOD"], url, headers, body, chunked)


def send(state: UpstreamState, pool: HTTPConnectionPool, request: UpstreamRequest,
         deadline: gevent.Timeout | None = None, target: str = "other") -> BaseHTTPResponse:
    """Send the request and wait for the response head, within the upstream's deadline.

    ``deadline`` is the request's overall one when the caller retries (it spans every attempt);
    without it, this one attempt gets the upstream's ``timeout``. The caller owns
    ``state.in_flight``: it was counted before this call and is released when the response is
    closed (or by the caller, when no response comes). Errors carry a ``condition`` for retries.
    ``target`` labels the call in the metrics (an endpoint's label: a bounded set).
    """
    settings = state.settings
    own = deadline is None
    if deadline is None:
        deadline = gevent.Timeout(settings.timeout)
        deadline.start()
    outcome = "error"
    started = time.perf_counter()
    try:
        answer = pool.urlopen(
            request.method, request.url, body=request.body, headers=request.headers, chunked=request.chunked,
            retries=_NO_RETRIES, redirect=False, assert_same_host=False, timeout=state.timeout,
            preload_content=False, decode_content=False, release_conn=False,
        )
        outcome = "5xx" if answer.status >= 500 else "ok"
        return answer
    except ClientBodyError:
        outcome = "client_error"
        raise
    except gevent.Timeout as expired:
        if expired is not deadline:
            raise
        outcome = "timeout"
        raise UpstreamTimeout(f"The upstream did not answer within {settings.timeout:g} s.") from None
    except NewConnectionError:  # before TimeoutError: urllib3 makes it a subclass of ConnectTimeoutError
        outcome = "connect_error"
        raise UpstreamUnreachable("The upstream refused the connection.", "connect") from None
    except ConnectTimeoutError:
        outcome = "timeout"
        raise UpstreamTimeout("The upstream did not accept the connection in time.", "connect") from None
    except TimeoutError:
        outcome = "timeout"
        raise UpstreamTimeout("The upstream did not answer in time.", "timeout") from None
    except (HTTPError, OSError) as error:
        log.warning("upstream failed", extra={"fields": {"upstream": settings.name, "cause": type(error).__name__}})
        raise UpstreamUnreachable("The upstream closed the connection or answered with invalid HTTP.") from None
    finally:
        if own:
            deadline.close()
        # Every caller of send is counted, whatever it forwards for (a route, an aggregate's part).
        metrics.observe_upstream(settings.name, target, outcome, time.perf_counter() - started)


class ProxyResponse(Response):
    """A response whose status, headers and bytes are the upstream's, passed through as they are."""

    # Werkzeug would otherwise invent a Content-Type and a Content-Length, and rewrite a few
    # headers on 304; the upstream's own are the ones to send.
    default_mimetype = None
    automatically_set_content_length = False

    def get_wsgi_headers(self, environ: WSGIEnvironment) -> object:  # type: ignore[override]
        """The headers as built, untouched."""
        return self.headers

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Start the answer; if the server refuses its head, release the upstream call and answer 502."""
        try:
            return super().__call__(environ, start_response)
        except BaseException as error:
            self.close()  # the call's slots and connection are released on this path too
            if not isinstance(error, Exception):
                raise
            # The last resort for this head, as the 500 handler is for the app: the upstream's
            # fields were checked by h11, so this is a field the server takes stricter still.
            log.warning("upstream answer refused by the server", extra={"fields": {"cause": type(error).__name__}})
            problem = problem_response(502, "Bad Gateway", "The upstream's answer could not be passed on.",
                                       UpstreamUnreachable.problem)
            return problem(environ, lambda status, headers, exc_info=None: start_response(
                status, headers, sys.exc_info()))


def build_response(upstream: BaseHTTPResponse, method: str, state: UpstreamState,
                   release: Callable[[], None] | None = None) -> ProxyResponse:
    """The client's response: the upstream's status, headers and raw (still encoded) body.

    ``release`` runs once when the body is closed (the endpoint's own in-flight count).
    """
    body = _UpstreamBody(upstream, state, release)  # from here on, closing the body releases the call
    try:
        headers = response_headers(upstream.headers.items(), upstream.headers.get("Connection"))
        if method == "HEAD" or upstream.status in _NO_BODY_STATUSES:
            upstream.read()  # nothing to stream: completing the (empty) read frees the connection now
            body.close()
        return ProxyResponse(body, status=upstream.status, headers=headers)
    except (HTTPError, OSError):
        body.close()
        raise UpstreamUnreachable("The upstream answered with invalid HTTP.") from None
    except BaseException:
        body.close()
        raise


class _UpstreamBody:
    """The upstream's body, streamed in blocks; closing it frees the connection and the in-flight slot."""

    __slots__ = ("upstream", "state", "release", "closed")

    def __init__(self, upstream: BaseHTTPResponse, state: UpstreamState,
                 release: Callable[[], None] | None) -> None:
        self.upstream = upstream
        self.state = state
        self.release = release
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
        if self.release is not None:
            self.release()
        if not self.upstream.closed:
            # Unread bytes are still on the wire (the client went away mid-body): the
            # connection cannot carry another request, so it is closed, not reused.
            self.upstream.close()
        self.upstream.release_conn()
