"""Gateway-made errors and the one handler that renders every error as problem+json (RFC 9457)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import (
    BadGateway,
    BadRequest,
    RequestTimeout,
    GatewayTimeout,
    HTTPException,
    InternalServerError,
    NotImplemented,
    ServiceUnavailable,
)

from werkzeug.routing import WebsocketMismatch

from app.observability.logs import current_request_id

__all__ = [
    "PROBLEM_BASE",
    "PROBLEM_JSON",
    "ClientBodyError",
    "GatewayError",
    "HandshakeInvalid",
    "PathRefused",
    "RequestBodyInvalid",
    "RequestBodyTimeout",
    "TunnelsFull",
    "TunnelUnsupported",
    "UpstreamBusy",
    "UpstreamDown",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "WebSocketRequired",
    "problem_response",
    "register_error_handlers",
]

PROBLEM_JSON = "application/problem+json"
#: Where the problem types live: each error's ``problem`` is this plus its name.
PROBLEM_BASE = "https://frontdesk.dev/problems/"

# Headers that describe a body: the problem document's own replace the ones passed in.
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})

log = logging.getLogger("frontdesk.errors")


class GatewayError(HTTPException):
    """An error the gateway itself answers with; ``problem`` names its documented type."""

    problem = "about:blank"
    #: Headers every answer of this kind carries (Retry-After, WWW-Authenticate...); an instance
    #: may set its own.
    extra_headers: tuple[tuple[str, str], ...] = ()

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        """Werkzeug's headers plus ``extra_headers``."""
        return [*super().get_headers(*args, **kwargs), *self.extra_headers]


class PathRefused(GatewayError, BadRequest):
    """The path would climb out of the route's upstream path, or is encoded to hide that."""

    problem = PROBLEM_BASE + "path-refused"


class ClientBodyError(GatewayError):
    """Reading the client's body failed: the client's fault, never counted against the upstream."""


class RequestBodyInvalid(ClientBodyError, BadRequest):
    """The client's body could not be read: its chunked framing is broken, or it ended early."""

    problem = PROBLEM_BASE + "request-body-invalid"


class RequestBodyTimeout(ClientBodyError, RequestTimeout):
    """The client sent its body too slowly: the request's deadline passed while waiting for it."""

    problem = PROBLEM_BASE + "request-body-timeout"


class UpstreamUnreachable(GatewayError, BadGateway):
    """The upstream refused or reset the connection, or answered with broken HTTP."""

    problem = PROBLEM_BASE + "upstream-unreachable"

    def __init__(self, description: str, condition: str = "reset") -> None:
        super().__init__(description)
        #: What failed, in the terms retry policies use: "connect" or "reset".
        self.condition = condition


class UpstreamTimeout(GatewayError, GatewayTimeout):
    """The upstream did not answer within the route's timeouts."""

    problem = PROBLEM_BASE + "upstream-timeout"

    def __init__(self, description: str, condition: str = "deadline") -> None:
        super().__init__(description)
        #: "connect", "timeout" (no byte of the answer in time) or "deadline" (the overall one).
        self.condition = condition


class UpstreamBusy(GatewayError, ServiceUnavailable):
    """The upstream already has ``max_in_flight`` calls from this worker: shed load at once."""

    problem = PROBLEM_BASE + "upstream-busy"
    extra_headers = (("Retry-After", "1"),)  # ask well-behaved clients to come back in a second


class UpstreamDown(GatewayError, ServiceUnavailable):
    """No target of the upstream can take calls (all unhealthy, ejected or behind an open breaker)."""

    problem = PROBLEM_BASE + "upstream-down"

    def __init__(self, description: str, retry_after: int) -> None:
        # Werkzeug's ServiceUnavailable writes Retry-After itself: when the soonest target may be back.
        super().__init__(description, retry_after=retry_after)


class HandshakeInvalid(GatewayError, BadRequest):
    """A WebSocket opening handshake that breaks RFC 6455 4.1 (method, version, key): the client's fault."""

    problem = PROBLEM_BASE + "websocket-handshake-invalid"


class WebSocketRequired(GatewayError):
    """A plain request to a WebSocket-only route, or a WebSocket version other than 13 (RFC 6455 4.4)."""

    code = 426
    problem = PROBLEM_BASE + "websocket-required"
    extra_headers = (("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"))


class TunnelsFull(GatewayError, ServiceUnavailable):
    """The route already has its ``max_tunnels`` open in this worker."""

    problem = PROBLEM_BASE + "tunnels-full"
    extra_headers = (("Retry-After", "5"),)


class TunnelUnsupported(GatewayError, NotImplemented):
    """The server running the app offers no client socket (only gunicorn's does): no tunnel can be made."""

    problem = PROBLEM_BASE + "tunnel-unsupported"


def problem_response(status: int, title: str, detail: str, problem: str = "about:blank",
                     headers: list[tuple[str, str]] | None = None,
                     members: Mapping[str, Any] | None = None) -> Response:
    """A problem+json response carrying the request id; ``members`` are extension members (RFC 9457)."""
    body: dict[str, Any] = {"type": problem, "title": title, "status": status, "detail": detail}
    request_id = current_request_id.get()
    if request_id:
        body["request_id"] = request_id
    body.update(members or {})
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in headers or ():
        if name.lower() not in _BODY_HEADERS:
            response.headers.add(name, value)
    return response


def _render_http_error(error: HTTPException) -> Response:
    status = error.code or 500
    detail = error.description or ""
    problem = getattr(error, "problem", "about:blank")
    # get_response() keeps what the exception adds (Allow on 405, Retry-After, WWW-Authenticate...).
    headers = list(error.get_response().headers)
    return problem_response(status, error.name, detail, problem, headers)


def _render_unexpected(error: Exception) -> Response:
    # The last resort: log everything, leak nothing.
    log.error("unhandled error", exc_info=error)
    return _render_http_error(InternalServerError("The gateway failed to handle this request."))


def _render_websocket_mismatch(error: WebsocketMismatch) -> Response:
    # Werkzeug's routing raises it when only a rule of the other kind (WebSocket or plain) matched.
    if "websocket" in request.environ.get("HTTP_UPGRADE", "").lower():
        return _render_http_error(HandshakeInvalid("This route does not take WebSocket connections."))
    return _render_http_error(WebSocketRequired("This route only takes WebSocket connections (a GET with "
                                                "Upgrade: websocket)."))


def register_error_handlers(app: Flask) -> None:
    """Render every HTTP error, and every unexpected exception, as problem+json."""
    app.register_error_handler(WebsocketMismatch, _render_websocket_mismatch)
    app.register_error_handler(HTTPException, _render_http_error)
    app.register_error_handler(Exception, _render_unexpected)
