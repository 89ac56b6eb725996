"""The OpenAPI 3.1 document of a built app, read off the route inventory (never from settings again)."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from flask import Flask
from werkzeug.routing import Rule
from werkzeug.routing.converters import (
    AnyConverter,
    BaseConverter,
    FloatConverter,
    IntegerConverter,
    PathConverter,
    UnicodeConverter,
    UUIDConverter,
)

from app.auth import auth
from app.operators.inventory import RouteInfo, inventory
from app.operators.openapi.components import API_KEY, BEARER, components, header_refs, problem_ref, rate_limit_headers
from app.openapi.schemas import BODY_METHODS, schema_of
from app.openapi.settings import OpenApiSettings, read_openapi_settings
from app.ratelimit import limiter
from app.internals import switch

__all__ = ["EXCLUDED_BLUEPRINTS", "build_document", "path_template"]

_CONVERTERS = switch("werkzeug-rule-converters")

#: Gateway endpoints left out: operators' tools with their own access control, not the API.
EXCLUDED_BLUEPRINTS = frozenset({"metrics", "cache"})
_VARIABLE = re.compile(r"<(?:[^>]*:)?([^:>]+)>")
_LENGTHS = re.compile(r"\{(\d+)(,?)(\d*)\}$")


def path_template(rule: str) -> str:
    """The OpenAPI path of a Flask rule: ``/api/orders/<int:order_id>`` -> ``/api/orders/{order_id}``."""
    return _VARIABLE.sub(r"{\1}", rule)


def build_document(app: Flask, settings: OpenApiSettings | None = None) -> dict[str, Any]:
    """The whole document: every route of ``app`` but the operators' endpoints, with its policies."""
    settings = settings or read_openapi_settings(app.config)
    auth_settings = auth.runtime(app).settings
    limits = limiter.runtime(app).settings
    rules = {(rule.rule, rule.endpoint): rule for rule in app.url_map.iter_rules()}
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, None] = {}
    for route in inventory(app):
        if route.blueprint in EXCLUDED_BLUEPRINTS:
            continue
        item = paths.setdefault(path_template(route.rule), {})
        for method in route.methods:
            if method.lower() in item:  # the same path and method under another rule: Flask serves the first
                continue
            operation = _operation(route, method, rules[route.rule, route.endpoint], limits.headers,
                                   limits.on_storage_error == "closed", auth_settings.jwt is not None,
                                   auth_settings.api_keys is not None)
            item[method.lower()] = operation
            tags.update(dict.fromkeys(operation["tags"]))
    info: dict[str, Any] = {"title": settings.title, "version": settings.version}
    if settings.description:
        info["description"] = settings.description
    return {
        "openapi": "3.1.0",
        "info": info,
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": components(auth_settings, limits.headers),
    }


def _operation(route: RouteInfo, method: str, rule: Rule, rate_limit_mode: str, limits_may_close: bool,
               has_jwt: bool, has_api_keys: bool) -> dict[str, Any]:
    schema = schema_of(route.view)
    operation: dict[str, Any] = {
        "operationId": f"{route.endpoint}.{method.lower()}",
        "tags": [route.blueprint or route.kind],
    }
    if route.summary:
        operation["summary"] = route.summary
    doc = (route.view.__doc__ or "").strip().split("\n", 1)
    if len(doc) > 1 and doc[1].strip():
        operation["description"] = _dedent(doc[1])
    converters = rule._converters if _CONVERTERS.on else {}  # app/internals.py: werkzeug-rule-converters
    parameters = [_parameter(name, converters.get(name)) for name in sorted(rule.arguments)]
    if parameters:
        operation["parameters"] = parameters
    if schema is not None and schema.request is not None and method in BODY_METHODS:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema.request}}}
    operation["security"] = _security(route, has_jwt, has_api_keys)
    operation["responses"] = _responses(route, method, rate_limit_mode, limits_may_close, has_jwt)
    operation["x-frontdesk"] = {
        "kind": route.kind, "upstreams": list(route.upstreams),
        "limits": [f"{limit.rate} per {limit.per} ({limit.scope})" for limit in route.limits],
        "cache": None if route.cache is None else route.cache.as_dict(),
        "validates": bool(schema and schema.validate),
        "websocket": route.websocket,
    }
    return operation


def _responses(route: RouteInfo, method: str, rate_limit_mode: str, limits_may_close: bool,
               has_jwt: bool) -> dict[str, Any]:
    schema = schema_of(route.view)
    headers = ("X-Request-ID", *(rate_limit_headers(rate_limit_mode) if route.limits else ()),
               *(("Cache-Status", "Age") if route.cache is not None else ()))
    responses: dict[str, Any] = {}
    for status, body in sorted((schema.responses if schema else {}).items()):
        responses[str(status)] = {"description": HTTPStatus(status).phrase, "headers": header_refs(headers),
                                  "content": {"application/json": {"schema": body}}}
    forwards = bool(route.upstreams)
    if route.websocket:
        responses["101"] = {"description": "Switching Protocols: a WebSocket tunnel to the upstream, relayed until "
                                           "either side closes (docs/websocket.md).", "headers": header_refs(headers)}
    if not responses:
        responses["200"] = {"description": "The upstream's answer." if forwards else "The answer.",
                            "headers": header_refs(headers)}
    validates = bool(schema and schema.validate and method in BODY_METHODS)
    authenticated = route.auth is not None and not route.auth.public
    problems = {
        400: forwards or validates, 401: authenticated, 403: authenticated, 404: bool(route_arguments(route)),
        415: validates, 426: route.websocket, 429: bool(route.limits), 502: forwards, 504: forwards,
        503: forwards or (authenticated and has_jwt) or (bool(route.limits) and limits_may_close),
    }
    for status, applies in sorted(problems.items()):
        if applies and str(status) not in responses:
            responses[str(status)] = problem_ref(status)
    if forwards:
        responses["default"] = {"description": "Any other answer of the upstream, passed through untouched "
                                               "(its own status, headers and body).", "headers": header_refs(headers)}
    return responses


def route_arguments(route: RouteInfo) -> list[str]:
    """The variable names in a route's rule."""
    return _VARIABLE.findall(route.rule)


def _security(route: RouteInfo, has_jwt: bool, has_api_keys: bool) -> list[dict[str, list[str]]]:
    policy = route.auth
    if policy is None or policy.public:
        return []  # explicitly open: no credential asked for
    accepted = policy.schemes or ("jwt", "api_key")
    requirements = []
    if "jwt" in accepted and has_jwt:
        requirements.append({BEARER: list(policy.scopes)})
    if "api_key" in accepted and has_api_keys:
        requirements.append({API_KEY: list(policy.scopes)})
    return requirements  # alternatives: any one of them, with every listed scope


def _parameter(name: str, converter: BaseConverter | None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": converter_schema(converter)}


def converter_schema(converter: BaseConverter | None) -> dict[str, Any]:
    """The JSON Schema of the values a Werkzeug converter accepts."""
    if isinstance(converter, (IntegerConverter, FloatConverter)):
        schema: dict[str, Any] = {"type": "integer" if isinstance(converter, IntegerConverter) else "number"}
        low = converter.min if converter.min is not None else None if converter.signed else 0
        if low is not None:
            schema["minimum"] = low
        if converter.max is not None:
            schema["maximum"] = converter.max
        return schema
    if isinstance(converter, UUIDConverter):
        return {"type": "string", "format": "uuid"}
    if isinstance(converter, AnyConverter):
        return {"type": "string", "enum": sorted(converter.items)}
    if isinstance(converter, PathConverter):
        return {"type": "string", "description": "May contain /."}
    schema = {"type": "string", "pattern": "^[^/]+$"}
    lengths = _LENGTHS.search(converter.regex) if isinstance(converter, UnicodeConverter) else None
    if lengths is not None:
        low_text, comma, high_text = lengths.groups()
        schema["minLength"] = int(low_text)
        if not comma or high_text:
            schema["maxLength"] = int(high_text or low_text)
    return schema


def _dedent(text: str) -> str:
    lines = text.splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents, default=0)
    return "\n".join(line[cut:] for line in lines).strip()
