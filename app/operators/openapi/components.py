"""The reusable parts of the OpenAPI document: the Problem schema, problem responses, headers, security schemes."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from app.auth import AuthSettings
from app.errors import PROBLEM_JSON

__all__ = ["API_KEY", "BEARER", "components", "problem_ref", "rate_limit_headers", "security_schemes"]

#: The security scheme names in ``components.securitySchemes``.
BEARER = "bearerAuth"
API_KEY = "apiKeyAuth"

#: RFC 9457 problem details, as app/errors.py writes them (``errors`` only on a schema violation).
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Problem details (RFC 9457): every error the gateway itself answers with.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri-reference", "description": "The problem type; about:blank or "
                 "https://frontdesk.dev/problems/..."},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "format": "uri-reference"},
        "request_id": {"type": "string", "description": "The request id, as in X-Request-ID and the logs."},
        "errors": {
            "type": "array", "description": "On a body that breaks the route's schema: each field at fault.",
            "items": {"type": "object", "required": ["pointer", "detail"], "properties": {
                "pointer": {"type": "string", "description": "JSON Pointer (RFC 6901) into the request body."},
                "detail": {"type": "string"}}},
        },
    },
}

_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {"description": "The request id (the client's own when well formed), as in the logs.",
                     "schema": {"type": "string"}},
    "RateLimit-Policy": {"description": 'The limits this request counted against (draft-ietf-httpapi-ratelimit-'
                         'headers): "route";q=20;w=1, one list member per limit.', "schema": {"type": "string"}},
    "RateLimit": {"description": 'What is left of each limit: "route";r=19;t=1 (remaining, seconds to reset).',
                  "schema": {"type": "string"}},
    "X-RateLimit-Limit": {"description": "The tightest limit's quota.", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "What is left of it.", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "When it resets (epoch seconds).", "schema": {"type": "integer"}},
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}},
    "WWW-Authenticate": {"description": "The challenges (RFC 6750; ApiKey with the header name).",
                         "schema": {"type": "string"}},
    "Cache-Status": {"description": "What the gateway's cache did (RFC 9211): hit, or fwd=... and stored.",
                     "schema": {"type": "string"}},
    "Age": {"description": "Seconds the answer has been cached (RFC 9111).", "schema": {"type": "integer"}},
    "Upgrade": {"description": "The protocol the route takes: websocket.", "schema": {"type": "string"}},
    "Sec-WebSocket-Version": {"description": "The WebSocket version spoken: 13.", "schema": {"type": "string"}},
}

# Status -> (component name, when the gateway answers it, extra headers).
PROBLEMS: dict[int, tuple[str, str, tuple[str, ...]]] = {
    400: ("BadRequest", "The gateway refused the request: a path that climbs out of the route, or (on routes "
          "that validate) a body that is missing, not JSON, or breaks the schema (see errors), or a WebSocket "
          "handshake that breaks RFC 6455.", ()),
    401: ("Unauthorized", "No credential, or one that is malformed, expired or unknown.", ("WWW-Authenticate",)),
    403: ("Forbidden", "The credential is valid but lacks a scope this route needs.", ("WWW-Authenticate",)),
    404: ("NotFound", "No route matches: a path parameter of the wrong shape.", ()),
    415: ("UnsupportedMediaType", "The route takes JSON, and the body is something else or content-coded.", ()),
    426: ("UpgradeRequired", "A WebSocket route: the request is not a WebSocket handshake, or asks for a version "
          "other than 13.", ("Upgrade", "Sec-WebSocket-Version")),
    429: ("TooManyRequests", "A rate limit or plan quota is spent.", ("Retry-After",)),
    502: ("BadGateway", "The upstream refused or reset the connection, or answered with broken HTTP.", ()),
    503: ("ServiceUnavailable", "No upstream target can take the call, the upstream is at max_in_flight, the "
          "identity provider's keys are unavailable, (closed) the rate-limit storage is unreachable, or a WebSocket "
          "route has its max_tunnels open.",
          ("Retry-After",)),
    504: ("GatewayTimeout", "The upstream did not answer within the route's timeouts.", ()),
}


def problem_ref(status: int) -> dict[str, str]:
    """A reference to the shared problem response for ``status``."""
    return {"$ref": f"#/components/responses/{PROBLEMS[status][0]}"}


def rate_limit_headers(mode: str) -> tuple[str, ...]:
    """The rate limit header names the gateway writes under ``[ratelimit] headers = mode``."""
    ietf = ("RateLimit-Policy", "RateLimit")
    legacy = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
    return {"ietf": ietf, "legacy": legacy, "both": ietf + legacy}.get(mode, ())


def header_refs(names: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """References to the shared headers, by name."""
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def security_schemes(settings: AuthSettings) -> dict[str, Any]:
    """One scheme per configured credential: bearer JWT, and the API key header."""
    schemes: dict[str, Any] = {}
    if settings.jwt is not None:
        schemes[BEARER] = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                           "description": f"A JWT from {settings.jwt.issuer}; a route's scopes are listed in its "
                                          f"security requirement ({settings.jwt.scope_claim} claim)."}
    if settings.api_keys is not None:
        schemes[API_KEY] = {"type": "apiKey", "in": "header", "name": settings.api_keys.header,
                            "description": "An API key issued to a consumer; a route's scopes are listed in its "
                                           "security requirement."}
    return schemes


def components(auth: AuthSettings, rate_limit_mode: str) -> dict[str, Any]:
    """The document's ``components``: Problem, one response per problem status, headers, security schemes."""
    responses = {}
    for status, (name, description, extra) in PROBLEMS.items():
        headers = ("X-Request-ID", *extra, *(rate_limit_headers(rate_limit_mode) if status == 429 else ()))
        responses[name] = {
            "description": f"{HTTPStatus(status).phrase}: {description}",
            "headers": header_refs(headers),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    built: dict[str, Any] = {"schemas": {"Problem": PROBLEM_SCHEMA}, "responses": responses, "headers": _HEADERS}
    schemes = security_schemes(auth)
    if schemes:
        built["securitySchemes"] = schemes
    return built
