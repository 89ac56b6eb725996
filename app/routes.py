"""Declared routes: the [[routes]] tables compiled into one blueprint of ordinary views."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response
from werkzeug.routing import Map, Rule, ValidationError

from app.compose.aggregate import AggregateSettings, read_aggregate, run_aggregate
from app.auth import AuthPolicy, apply_policy, read_route_policy
from app.caching import RouteCache, apply_cache, read_route_cache
from app.config import ConfigError, Problems, Section
from app.edge.guard import EdgeOverride, apply_edge, read_edge_override
from app.openapi import RouteSchema, apply_schema, read_route_schema
from app.proxy import ProxyResponse, TunnelLimits, Upstream, UpstreamPath, read_tunnel_limits
from app.ratelimit import check_limits, limit_declared_route
from app.internals import switch

__all__ = ["DECLARED", "RouteSettings", "build_routes_blueprint", "read_routes"]

_CONVERTERS = switch("werkzeug-rule-converters")

#: Where ``create_app`` keeps the declared routes in ``app.extensions``, for the inventory.
DECLARED = "frontdesk.routes"

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# <converter(args):name> -> <converter(args)>: the rule's shape without its variable names.
_VARIABLE_NAME = re.compile(r"<(?:([^:>]+):)?[^:>]+>")
_builds = itertools.count(1)


@dataclass(frozen=True)
class RouteSettings:
    """One declared route: a Flask rule forwarded to an upstream, or answered by an aggregate."""

    name: str  # the endpoint name, "routes.<name>" in url_for
    path: str
    methods: tuple[str, ...]
    upstream: str | None  # None: an aggregate route (its calls name their upstreams)
    upstream_path: UpstreamPath | None
    auth: AuthPolicy | None  # None: start-up refuses the route (no route is public by accident)
    retry_any_method: bool = False  # the upstream's retry policy covers POST/PATCH here too
    limits: tuple[str, ...] = ()  # per consumer when authenticated, per client address otherwise
    cache: RouteCache | None = None  # None: never cached
    edge: EdgeOverride | None = None  # None: the app-wide [edge] protections
    aggregate: AggregateSettings | None = None
    schema: RouteSchema | None = None  # request/response JSON Schemas; validated when schema.validate
    websocket: TunnelLimits | None = None  # a WebSocket-only route: handshakes tunnelled, with these limits


def read_routes(config: Mapping[str, Any], upstream_names: Collection[str],
                problems: Problems | None = None) -> tuple[RouteSettings, ...]:
    """Read and check every [[routes]] entry against the rules Flask accepts and the known upstreams.

    Each entry is read on its own: a bad one goes to ``problems`` and is left out.
    """
    problems = problems or Problems()
    raw_routes = config["ROUTES"]
    if not isinstance(raw_routes, list):
        raise ConfigError("routes", raw_routes, "an array of tables ([[routes]])")
    defaults = Section("route_defaults", config["ROUTE_DEFAULTS"])
    default_methods = _methods(defaults)
    default_auth = read_route_policy(defaults.key("auth"), defaults.raw("auth")) if defaults.has("auth") else None
    defaults.done()
    routes: list[RouteSettings] = []
    seen: dict[tuple[str, str], int] = {}
    names: dict[str, int] = {}
    for index, raw in enumerate(raw_routes):
        try:
            route = _read_route(Section(f"routes[{index}]", raw), default_methods, default_auth, upstream_names,
                                index)
            _check_unique(route, index, names, seen)
        except ConfigError as error:
            problems.report(error)
            continue
        routes.append(route)
    return tuple(routes)


def _check_unique(route: RouteSettings, index: int, names: dict[str, int], seen: dict[tuple[str, str], int]) -> None:
    """Refuse a name or a path and method an earlier route has; note this route's."""
    if route.name in names:
        raise ConfigError(f"routes[{index}].name", route.name, f"a name not used by routes[{names[route.name]}]")
    # Rules that differ only in variable names match the same requests, and Flask answers
    # HEAD on every GET rule: either way the later route would never be reached.
    shape = _VARIABLE_NAME.sub(r"<\1>", route.path)
    methods = {*route.methods, "HEAD"} if "GET" in route.methods else set(route.methods)
    for method in sorted(methods):
        if (shape, method) in seen:
            raise ConfigError(f"routes[{index}].path", route.path,
                              f"a path and method ({method}) not already served by routes[{seen[shape, method]}]")
    names[route.name] = index
    seen.update(((shape, method), index) for method in methods)


def _methods(section: Section) -> tuple[str, ...]:
    methods = tuple(method.upper() for method in section.strings("methods", allow_empty=False))
    if len(set(methods)) != len(methods):
        raise ConfigError(section.key("methods"), list(methods), "each method once")
    for method in methods:
        if method not in _METHODS:
            raise ConfigError(section.key("methods"), method, "one of " + ", ".join(_METHODS))
    return methods


def _read_route(section: Section, default_methods: tuple[str, ...], default_auth: AuthPolicy | None,
                upstream_names: Collection[str], index: int) -> RouteSettings:
    path = section.string("path", expected="a Flask rule starting with /")
    variables = _rule_variables(section.key("path"), path)
    methods = _methods(section) if section.has("methods") else default_methods
    name = section.string("name", _endpoint_name(path, index), pattern=r"[A-Za-z_][A-Za-z0-9_]*",
                          expected="a name of letters, digits and _")
    auth = read_route_policy(section.key("auth"), section.raw("auth")) if section.has("auth") else default_auth
    aggregate = _aggregate(section, methods, variables, upstream_names, auth)
    upstream = None if aggregate else section.string("upstream")
    if upstream is not None and upstream not in upstream_names:
        raise ConfigError(section.key("upstream"), upstream, "the name of an [upstreams.NAME] table")
    template = section.optional_string("upstream_path")
    upstream_path = None
    if template is not None:
        upstream_path = _upstream_path(section.key("upstream_path"), template, variables)
    retry_any_method = section.boolean("retry_any_method", False)
    limits = check_limits(section.key("limits"), section.raw("limits", []))
    cache = read_route_cache(section.key("cache"), section.raw("cache")) if section.has("cache") else None
    edge = read_edge_override(section.key("edge"), section.raw("edge")) if section.has("edge") else None
    schema = read_route_schema(section, methods)
    websocket = _websocket(section, methods, aggregate is not None, cache is not None, schema is not None)
    section.done()
    return RouteSettings(name=name, path=path, methods=methods, upstream=upstream, upstream_path=upstream_path,
                         auth=auth, retry_any_method=retry_any_method, limits=limits, cache=cache, edge=edge,
                         aggregate=aggregate, schema=schema, websocket=websocket)


def _websocket(section: Section, methods: tuple[str, ...], aggregate: bool, cache: bool,
               schema: bool) -> TunnelLimits | None:
    """The route's ``websocket`` limits; a WebSocket route answers GET handshakes only and is never cached."""
    if not section.has("websocket") or section.raw("websocket") is False:
        return None
    limits = read_tunnel_limits(section.key("websocket"), section.raw("websocket"))
    for present, key, why in ((aggregate, "aggregate", "a tunnel goes to one upstream"),
                              (cache, "cache", "a tunnel is never cached"),
                              (schema, "schema", "a tunnel's messages are not JSON bodies"),
                              (section.raw("retry_any_method"), "retry_any_method", "a handshake is never retried")):
        if present:
            raise ConfigError(section.key(key), section.raw(key), f"no such key on a websocket route ({why})")
    if methods != ("GET",):
        raise ConfigError(section.key("methods"), list(methods), '["GET"] on a websocket route (a handshake is a GET)')
    return limits


def _aggregate(section: Section, methods: tuple[str, ...], variables: frozenset[str],
               upstream_names: Collection[str], auth: AuthPolicy | None) -> AggregateSettings | None:
    """The route's [routes.aggregate], which excludes forwarding keys and answers GET only."""
    if not section.has("aggregate"):
        return None
    for key in ("upstream", "upstream_path", "retry_any_method"):
        if section.has(key):
            raise ConfigError(section.key(key), section.raw(key), "no such key on an aggregate route "
                              "(its calls name their upstreams)")
    if methods != ("GET",):
        raise ConfigError(section.key("methods"), list(methods), '["GET"] on an aggregate route')
    return read_aggregate(section.key("aggregate"), section.raw("aggregate"), variables, upstream_names,
                          public=auth is None or auth.public)


def _rule_variables(key: str, path: str) -> frozenset[str]:
    if not path.startswith("/"):
        raise ConfigError(key, path, "a Flask rule starting with /")
    rule = Rule(path)
    try:
        Map([rule])  # binding compiles the rule and resolves its converters
    except (ValueError, LookupError, SyntaxError) as error:  # SyntaxError: a variable used twice
        raise ConfigError(key, path, f"a valid Flask rule ({error})") from None
    # Converter arguments are only used when a request matches (<int(min=x):id> fails every
    # request with a TypeError); try each converter once now. A sample that merely does not
    # fit (ValidationError, ValueError) is fine.
    for converter in rule._converters.values() if _CONVERTERS.on else ():  # app/internals.py
        try:
            converter.to_python("1")
        except (ValidationError, ValueError):
            pass
        except TypeError as error:
            raise ConfigError(key, path, f"converter arguments of the right type ({error})") from None
    return frozenset(rule.arguments)


def _upstream_path(key: str, template: str, variables: frozenset[str]) -> UpstreamPath:
    if not template.startswith("/") or "?" in template or "#" in template:
        raise ConfigError(key, template, "a path starting with / (the query string passes through as sent)")
    try:
        upstream_path = UpstreamPath(template)
    except ValueError as error:
        raise ConfigError(key, template, f"a template with {{name}} fields ({error})") from None
    unknown = set(upstream_path.fields) - variables
    if unknown:
        known = ", ".join(sorted(variables)) or "none"
        raise ConfigError(key, template, f"fields among the rule's variables ({known}), not {sorted(unknown)}")
    return upstream_path


def _endpoint_name(path: str, index: int) -> str:
    without_converters = re.sub(r"<(?:[^:>]*:)?([^>]+)>", r"\1", path)
    return f"r{index}_" + re.sub(r"[^A-Za-z0-9]+", "_", without_converters).strip("_")


def build_routes_blueprint(routes: tuple[RouteSettings, ...], *, plans: bool) -> Blueprint:
    """The built-in blueprint: one view per declared route, made with the same decorators as a hand-written one.

    ``plans``: [ratelimit.plans] names a plan, so authenticated routes carry the plan quota.
    """
    blueprint = Blueprint("routes", __name__)
    for route in routes:
        # The same policy decorators as a code route: each records its layer, and the view runs them in
        # the house order (auth, limit, schema, cache; app/policies.py) whatever order they are applied in.
        if route.aggregate:
            view = _aggregate_view(route)
        elif route.websocket:
            view = _tunnel_view(route, blueprint)
        else:
            view = _forwarding_view(route, blueprint)
        # Fresh views per app, and Flask-Limiter keeps the plan quota by the view's qualified name:
        # each build's name must not meet an earlier app's.
        view.__qualname__ = f"{view.__qualname__}#{next(_builds)}"
        if route.auth is not None:
            view = apply_policy(route.auth)(view)
        # The plan quota only exists with plans: without them it would cost every request a pass
        # through Flask-Limiter (~100 µs) to count nothing.
        plan = plans and route.auth is not None and not route.auth.public
        if route.limits or plan:  # before the cache: a cache hit still counts against the quota
            view = limit_declared_route(route.limits, plan=plan)(view)
        if route.schema is not None:  # after the limit: a refused body still counts against the quota
            view = apply_schema(route.schema)(view)
        if route.cache is not None:
            view = apply_cache(route.cache)(view)
        if route.edge is not None:  # enforced at the WSGI edge, before every hook
            view = apply_edge(route.edge)(view)
        # A WebSocket rule matches handshakes only; a plain request to it is answered 426 (app/errors.py).
        blueprint.add_url_rule(route.path, endpoint=route.name, view_func=view, methods=list(route.methods),
                               websocket=route.websocket is not None)
    return blueprint


def _aggregate_view(route: RouteSettings) -> Callable[..., Response]:
    aggregate = route.aggregate
    assert aggregate is not None

    def combine(**values: object) -> Response:
        return run_aggregate(aggregate, values)

    combine.__name__ = route.name
    combine.__doc__ = f"Answer {route.path} from {len(aggregate.parts)} upstream calls."
    return combine


def _tunnel_view(route: RouteSettings, blueprint: Blueprint) -> Callable[..., Response]:
    assert route.upstream is not None and route.websocket is not None
    upstream = Upstream(route.upstream, blueprint)
    template = route.upstream_path
    limits = route.websocket

    def tunnel(**values: object) -> Response:
        return upstream.tunnel(template.render(values) if template else None, limits=limits)

    tunnel.__name__ = route.name
    tunnel.__doc__ = f"Tunnel WebSocket connections on {route.path} to the {route.upstream} upstream."
    return tunnel


def _forwarding_view(route: RouteSettings, blueprint: Blueprint) -> Callable[..., ProxyResponse]:
    assert route.upstream is not None
    upstream = Upstream(route.upstream, blueprint)
    template = route.upstream_path
    retry_any_method = route.retry_any_method

    def forward(**values: object) -> ProxyResponse:
        return upstream.forward(template.render(values) if template else None, retry_any_method=retry_any_method)

    forward.__name__ = route.name
    forward.__doc__ = f"Forward {route.path} to the {route.upstream} upstream."
    return forward
