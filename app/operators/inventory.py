"""The route inventory: every route the app serves, code or declared, with the policies it carries.

One reading of the built app serves the CLI (``flask gateway routes``), the OpenAPI document and
the status page, so the three can never disagree about what a route does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask
from flask_limiter.util import get_qualified_name
from werkzeug.routing import Rule

from app.compose.aggregate import AggregateSettings
from app.auth import AuthPolicy, policy_of
from app.caching import RouteCache, cache_policy_of
from app.edge.guard import EdgeOverride, edge_override_of
from app.internals import switch
from app.proxy import upstreams
from app.ratelimit import by_client_address, by_consumer, limiter, route_limits_of
from app.routes import DECLARED, RouteSettings

if TYPE_CHECKING:  # the type route_limits_of returns; Flask-Limiter's private name is imported in one place
    from app.ratelimit.layer import RuntimeLimit

_DECORATED = switch("limiter-before-request")

__all__ = ["LimitInfo", "RouteInfo", "inventory"]

# Flask adds these to every rule; listing them would say nothing about the route.
_IMPLICIT = frozenset({"HEAD", "OPTIONS"})


@dataclass(frozen=True)
class LimitInfo:
    """One rate limit a route meets: its rate and whose counter it spends."""

    rate: str  # "100 per 1 minute", or "plan" for the caller's plan quota
    per: str  # "consumer", "client address", ...
    scope: str  # "route", "shared:<name>", "app-wide"


@dataclass(frozen=True)
class RouteInfo:
    """What one route is: where it answers, who may call it, and the policies on its way."""

    endpoint: str
    rule: str
    methods: tuple[str, ...]
    kind: str  # "declared", "aggregate", "code" or "gateway" (health, metrics, cache admin, openapi, status page)
    blueprint: str | None
    upstreams: tuple[str, ...]  # where it forwards; a code route: its blueprint's upstreams
    auth: AuthPolicy | None
    limits: tuple[LimitInfo, ...]
    cache: RouteCache | None
    aggregate: AggregateSettings | None
    summary: str  # the view's docstring, first line
    view: Callable[..., Any]
    edge: EdgeOverride | None = None  # the route's own [edge] settings, over the app-wide ones
    retry_any_method: bool = False  # a declared route whose upstream may retry POST/PATCH too
    websocket: bool = False  # the rule takes WebSocket handshakes only (docs/websocket.md)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description (``gateway routes --json``)."""
        auth: dict[str, Any] | None = None
        if self.auth is not None:
            auth = {"public": self.auth.public, "schemes": list(self.auth.schemes) if self.auth.schemes else None,
                    "scopes": list(self.auth.scopes)}
        return {
            "endpoint": self.endpoint, "rule": self.rule, "methods": list(self.methods), "kind": self.kind,
            "blueprint": self.blueprint, "upstreams": list(self.upstreams), "auth": auth,
            "limits": [{"rate": limit.rate, "per": limit.per, "scope": limit.scope} for limit in self.limits],
            "cache": None if self.cache is None else self.cache.as_dict(),
            "aggregate": None if self.aggregate is None else {
                "timeout": self.aggregate.timeout, "concurrency": self.aggregate.concurrency,
                "parts": [{"name": part.name, "upstream": part.upstream, "path": part.template,
                           "required": part.required} for part in self.aggregate.parts]},
            "edge": None if self.edge is None else dict(self.edge.raw),
            "retry_any_method": self.retry_any_method,
            "websocket": self.websocket,
            "summary": self.summary,
        }


def inventory(app: Flask) -> tuple[RouteInfo, ...]:
    """Every route of ``app`` in rule order, with its policies as the app will apply them."""
    declared: Mapping[str, RouteSettings] = {f"routes.{route.name}": route for route in app.extensions[DECLARED]}
    routes = []
    with app.test_request_context():  # limits may be written as callables reading the request
        for rule in sorted(app.url_map.iter_rules(), key=lambda rule: (rule.rule, rule.endpoint)):
            view = app.view_functions[rule.endpoint]
            routes.append(_describe(app, rule, view, declared.get(rule.endpoint)))
    return tuple(routes)


def _describe(app: Flask, rule: Rule, view: Callable[..., Any], route: RouteSettings | None) -> RouteInfo:
    blueprint = rule.endpoint.rpartition(".")[0] or None
    if route is not None:
        kind = "aggregate" if route.aggregate else "declared"
        targets = (route.upstream,) if route.upstream else tuple(
            dict.fromkeys(part.upstream for part in route.aggregate.parts)) if route.aggregate else ()
    else:
        kind = "gateway" if blueprint in _GATEWAY_BLUEPRINTS else "code"
        targets = upstreams.of_blueprint(blueprint, app) if blueprint else ()
    doc = (view.__doc__ or "").strip()
    methods = tuple(sorted(set(rule.methods or ()) - _IMPLICIT)) or ("OPTIONS",)  # an OPTIONS-only rule stays
    return RouteInfo(
        endpoint=rule.endpoint, rule=rule.rule, methods=methods,
        kind=kind, blueprint=blueprint, upstreams=targets, auth=policy_of(view), limits=_limits(app, rule),
        cache=cache_policy_of(view), aggregate=route.aggregate if route else None,
        summary=doc.splitlines()[0] if doc else "", view=view, edge=edge_override_of(view),
        retry_any_method=route.retry_any_method if route else False, websocket=rule.websocket)


_GATEWAY_BLUEPRINTS = frozenset({"health", "metrics", "cache", "openapi", "status"})
_KEY_NAMES: Mapping[Callable[[], str], str] = {by_client_address: "client address", by_consumer: "consumer"}


def _limits(app: Flask, rule: Rule) -> tuple[LimitInfo, ...]:
    blueprint = rule.endpoint.rpartition(".")[0]
    manager = limiter.limit_manager
    if manager.exemption_scope(app, rule.endpoint, blueprint):
        return ()
    found: list[LimitInfo] = []
    # A limit written as a callable (the plan quota) only has a rate inside a caller's request:
    # name it rather than evaluate it for nobody. Flask-Limiter keeps them by the view's name.
    view_name = get_qualified_name(app.view_functions[rule.endpoint])
    plans = limiter.runtime(app).settings.plans
    by_view = manager._decorated_limits if _DECORATED.on else {}  # app/internals.py: limiter-before-request
    for group in by_view.get(view_name, ()):
        if callable(group.limit_provider) and (plans or group.scope != "plan"):
            per = _key_name(group.key_function) if group.key_function else "client address"
            found.append(LimitInfo("plan" if group.scope == "plan" else "per request", per,
                                   f"shared:{group.scope}" if group.shared else "route"))
    _, decorated = manager.resolve_limits(app, rule.endpoint, blueprint)
    found += [_limit_info(limit) for limit in (*decorated, *route_limits_of(app.view_functions[rule.endpoint]))]
    found += [LimitInfo(str(limit.limit), _key_name(limit.key_func), "app-wide")
              for limit in manager.application_limits]
    return tuple(dict.fromkeys(found))


def _limit_info(limit: RuntimeLimit) -> LimitInfo:
    scope = f"shared:{limit.scope}" if limit.shared and isinstance(limit.scope, str) else "route"
    return LimitInfo(str(limit.limit), _key_name(limit.key_func), scope)


def _key_name(key_func: Callable[[], str]) -> str:
    name = _KEY_NAMES.get(key_func)
    if name is not None:
        return name
    function = getattr(key_func, "__name__", "")
    if function.startswith("by_header_"):  # by_header() names its key function after the header
        return "header " + function.removeprefix("by_header_").replace("_", "-")
    return function or "custom key"
