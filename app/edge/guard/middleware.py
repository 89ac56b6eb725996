"""The edge guard: a WSGI layer that turns clients away before Flask, auth, limits or upstreams see them.

It sits inside ProxyFix (REMOTE_ADDR is the client the trusted hops report) and inside the
request log (refusals are logged, with the request id), and runs in this order:
client screening (address, user agent) → CORS preflight, or a WebSocket handshake's Origin → body size →
the app → response headers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import IO, TYPE_CHECKING, Any

from flask import Flask
from werkzeug.exceptions import Forbidden, HTTPException, RequestEntityTooLarge

from app.errors import GatewayError, PROBLEM_BASE, problem_response
from app.proxy import is_upgrade
from app.edge.guard.cors import actual_headers, is_preflight, preflight_headers
from app.edge.guard.settings import EdgePolicy, GuardSettings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["BodyTooLarge", "ClientRefused", "EdgeGuard", "OriginRefused", "POLICIES"]

#: app.extensions key: endpoint → EdgePolicy for the routes with their own `edge` settings.
POLICIES = "frontdesk.edge_policies"


class ClientRefused(GatewayError, Forbidden):
    """The client's address or user agent is refused on this route."""

    problem = PROBLEM_BASE + "client-refused"


class OriginRefused(GatewayError, Forbidden):
    """A WebSocket handshake from a browser page whose origin the route's CORS rules do not allow."""

    problem = PROBLEM_BASE + "origin-refused"


class BodyTooLarge(GatewayError, RequestEntityTooLarge):
    """The request body is larger than the route accepts."""

    problem = PROBLEM_BASE + "body-too-large"


class EdgeGuard:
    """Screen, answer preflights, cap bodies, and set the response headers every answer gets."""

    def __init__(self, app: Flask, settings: GuardSettings) -> None:
        self.flask = app
        self.wsgi_app: WSGIApplication = app.wsgi_app
        self.settings = settings

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request through the protections."""
        preflight = is_preflight(environ)
        policy = self._policy(environ, preflight)
        if policy.screens_clients and not _client_allowed(environ, policy):
            return self._refuse(environ, start_response, ClientRefused("The gateway refuses this client."))
        if preflight and policy.cors is not None:
            # Answered here: never forwarded, never counted by a limit, never asked for a credential.
            headers = [("Content-Length", "0"), *preflight_headers(environ, policy.cors)]
            start_response("204 No Content", self._finish(environ, headers, None))
            return []
        if policy.cors is not None and "HTTP_ORIGIN" in environ and is_upgrade(environ) and \
                not policy.cors.allows(environ["HTTP_ORIGIN"]):
            # Browsers send no preflight before a WebSocket and enforce nothing on its answers: the
            # allowed origins are checked here (cross-site WebSocket hijacking), before auth sees a cookie.
            return self._refuse(environ, start_response, OriginRefused("The page's origin may not open this "
                                                                       "WebSocket."))
        limit = policy.max_body_bytes
        if limit:
            length = _content_length(environ)
            if length is not None and length > limit:
                return self._refuse(environ, start_response, BodyTooLarge(f"The body may be at most {limit} bytes."))
            if "HTTP_TRANSFER_ENCODING" in environ:
                environ["wsgi.input"] = _CappedInput(environ["wsgi.input"], limit)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, self._finish(environ, headers, policy), exc_info)

        return self.wsgi_app(environ, start)

    def _policy(self, environ: WSGIEnvironment, preflight: bool) -> EdgePolicy:
        policies: Mapping[str, EdgePolicy] | None = self.flask.extensions.get(POLICIES)
        if not policies:
            return self.settings.defaults  # no route has its own: no routing needed
        # The method a preflight asks about picks the route, not OPTIONS.
        method = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD", "GET") if preflight else None
        url_map = self.flask.url_map
        try:
            adapter = url_map.bind_to_environ(environ, subdomain=url_map.default_subdomain or None)
            endpoint, _ = adapter.match(method=method)
        except HTTPException:  # no route (404, 405, redirect): the app-wide policy, Flask answers
            return self.settings.defaults
        return policies.get(str(endpoint), self.settings.defaults)

    def _refuse(self, environ: WSGIEnvironment, start_response: StartResponse,
                error: GatewayError) -> Iterable[bytes]:
        response = problem_response(error.code or 400, error.name, error.description or "", error.problem)
        headers = self._finish(environ, list(response.headers.items()), None)
        start_response(f"{response.status_code} {error.name}", headers)
        return [response.get_data()]

    def _finish(self, environ: WSGIEnvironment, headers: list[tuple[str, str]],
                policy: EdgePolicy | None) -> list[tuple[str, str]]:
        """The response headers: upstream leaks removed, CORS and security headers added."""
        settings = self.settings
        strip = settings.strip_upstream_headers
        if strip:
            headers = [(name, value) for name, value in headers if name.lower() not in strip]
        if policy is not None and policy.cors is not None:
            headers = actual_headers(environ, policy.cors, headers)
        if settings.security_headers:
            present = {name.lower() for name, _ in headers}
            if "x-content-type-options" not in present:
                headers.append(("X-Content-Type-Options", "nosniff"))
            if "referrer-policy" not in present:
                headers.append(("Referrer-Policy", settings.referrer_policy))
            # Only over TLS as the trusted hops report it: browsers ignore it over plain HTTP anyway.
            if environ.get("wsgi.url_scheme") == "https" and settings.hsts_max_age and \
                    "strict-transport-security" not in present:
                headers.append(("Strict-Transport-Security", f"max-age={settings.hsts_max_age}"))
        return headers


def _client_allowed(environ: WSGIEnvironment, policy: EdgePolicy) -> bool:
    if policy.allow_ips or policy.deny_ips:
        try:
            address = ipaddress.ip_address(environ.get("REMOTE_ADDR", ""))
        except ValueError:
            return False  # an address we cannot read cannot be shown to be allowed
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:203.0.113.9 is 203.0.113.9 for the rules
        if any(address in network for network in policy.deny_ips):
            return False
        if policy.allow_ips and not any(address in network for network in policy.allow_ips):
            return False
    if policy.deny_user_agents:
        agent = environ.get("HTTP_USER_AGENT", "")
        if any(pattern.search(agent) for pattern in policy.deny_user_agents):
            return False
    return True


def _content_length(environ: WSGIEnvironment) -> int | None:
    value = environ.get("CONTENT_LENGTH")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None  # the server refuses malformed lengths before the app runs


class _CappedInput:
    """A chunked body that raises 413 once more than ``limit`` bytes have been read.

    Raising (rather than ending the stream early) is what keeps a partial body from looking
    complete: the transport abandons the upstream call and closes its connection mid-body.
    """

    __slots__ = ("stream", "limit", "count")

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.count = 0

    def _counted(self, data: bytes) -> bytes:
        self.count += len(data)
        if self.count > self.limit:
            raise BodyTooLarge(f"The body may be at most {self.limit} bytes.")
        return data

    def read(self, size: int = -1) -> bytes:
        # Never ask for more than one byte past the limit: an unbounded read must not buffer a huge body.
        room = self.limit - self.count + 1
        return self._counted(self.stream.read(room if size is None or size < 0 or size > room else size))

    def readline(self, size: int = -1) -> bytes:
        room = self.limit - self.count + 1
        return self._counted(self.stream.readline(room if size is None or size < 0 or size > room else size))
