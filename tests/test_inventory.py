"""The route inventory: what the CLI, the OpenAPI document and the status page read."""

from __future__ import annotations

from flask import Blueprint

from app import Upstream
from app.auth import public, require_auth
from app.caching import cache_response
from app.operators.inventory import LimitInfo, inventory
from app.ratelimit import by_consumer, by_header, limiter
from tests.conftest import AppFactory

RATELIMIT = {"default": ["100/second"], "plans": {"free": ["1000/day"]}, "default_plan": "free"}


def _team_blueprint() -> Blueprint:
    bp = Blueprint("team", __name__, url_prefix="/team")
    Upstream("users", bp)
    Upstream("orders", bp)

    @bp.get("/things/<thing_id>")
    @require_auth(scopes=("users:read",))
    @limiter.limit("5/minute", key_func=by_consumer)
    @cache_response(ttl=30, vary=("Accept",), scope="consumer")
    def thing(thing_id: str) -> str:
        """Read one thing."""
        return thing_id

    @bp.route("/open", methods=["POST", "PUT"])
    @public
    @limiter.limit("2/second", key_func=by_header("X-Tenant"))
    def open_door() -> str:
        """Anyone may knock."""
        return "ok"

    return bp


def test_a_code_blueprint_is_listed_with_its_policies(make_app: AppFactory) -> None:
    app = make_app(blueprints=[_team_blueprint()], RATELIMIT=RATELIMIT)
    routes = {route.endpoint: route for route in inventory(app)}

    thing = routes["team.thing"]
    assert (thing.rule, thing.methods, thing.kind) == ("/team/things/<thing_id>", ("GET",), "code")
    assert thing.blueprint == "team"
    assert thing.upstreams == ("users", "orders")
    assert thing.auth is not None and thing.auth.scopes == ("users:read",) and not thing.auth.public
    assert thing.limits == (LimitInfo("5 per 1 minute", "consumer", "route"),
                            LimitInfo("100 per 1 second", "client address", "app-wide"))
    assert thing.cache is not None and (thing.cache.ttl, thing.cache.vary, thing.cache.scope) == (30, ("accept",),
                                                                                                  "consumer")
    assert thing.summary == "Read one thing."

    door = routes["team.open_door"]
    assert door.methods == ("POST", "PUT") and door.auth is not None and door.auth.public
    assert LimitInfo("2 per 1 second", "header x-tenant", "route") in door.limits
    assert door.cache is None


def test_declared_routes_carry_their_settings(make_app: AppFactory) -> None:
    app = make_app(RATELIMIT=RATELIMIT, ROUTES=[
        {"name": "orders", "path": "/orders/<order_id>", "upstream": "orders", "auth": {"scopes": ["orders:read"]},
         "limits": ["3/second"], "cache": {"ttl": 5}},
        {"name": "catalog", "path": "/catalog", "upstream": "orders", "auth": "public",
         "cache": {"ttl": 60, "freshness": "upstream", "stale_while_revalidate": 10, "stale_if_error": 300,
                   "ignore_client_no_cache": True}},
        {"name": "board", "path": "/board/<user_id>", "auth": "public", "aggregate": {"calls": [
            {"name": "user", "upstream": "users", "path": "/users/{user_id}"},
            {"name": "orders", "upstream": "orders", "path": "/orders?user={user_id}", "required": False}]}},
    ])
    routes = {route.endpoint: route for route in inventory(app)}

    orders = routes["routes.orders"]
    assert (orders.kind, orders.upstreams, orders.methods) == ("declared", ("orders",), ("GET",))
    # An authenticated route spends the caller's plan quota too, named rather than evaluated.
    assert orders.limits == (LimitInfo("plan", "consumer", "shared:plan"),
                             LimitInfo("3 per 1 second", "consumer", "route"),
                             LimitInfo("100 per 1 second", "client address", "app-wide"))
    assert orders.cache is not None and orders.cache.ttl == 5
    # Every cache option is described, for machines and for people.
    catalog = routes["routes.catalog"]
    assert catalog.as_dict()["cache"] == {"ttl": 60, "vary": [], "scope": "public", "freshness": "upstream",
                                          "stale_while_revalidate": 10, "stale_if_error": 300,
                                          "ignore_client_no_cache": True}
    assert catalog.cache is not None and catalog.cache.summary() == (
        "ttl 60 s, public, freshness upstream, stale-while-revalidate 10 s, stale-if-error 300 s, "
        "ignores client no-cache")
    assert orders.cache.summary() == "ttl 5 s, public"

    board = routes["routes.board"]
    assert (board.kind, board.upstreams) == ("aggregate", ("users", "orders"))
    assert board.aggregate is not None
    assert [(part.name, part.required) for part in board.aggregate.parts] == [("user", True), ("orders", False)]
    described = board.as_dict()
    assert described["aggregate"]["parts"][1] == {"name": "orders", "upstream": "orders",
                                                  "path": "/orders?user={user_id}", "required": False}


def test_gateway_endpoints_are_listed_and_exempt(make_app: AppFactory) -> None:
    app = make_app(RATELIMIT=RATELIMIT)
    routes = {route.endpoint: route for route in inventory(app)}
    assert routes["health.ready"].kind == "gateway"
    assert routes["health.ready"].limits == ()  # never rate limited
    assert routes["health.ready"].auth is not None and routes["health.ready"].auth.public


def test_no_plan_quota_is_listed_without_plans(make_app: AppFactory) -> None:
    app = make_app(ROUTES=[{"name": "orders", "path": "/orders", "upstream": "orders",
                            "auth": {"scopes": ["orders:read"]}}])
    (orders,) = [route for route in inventory(app) if route.endpoint == "routes.orders"]
    assert orders.limits == ()


def test_edge_overrides_and_retry_any_method_are_listed(make_app: AppFactory) -> None:
    app = make_app(ROUTES=[
        {"name": "pay", "path": "/pay", "upstream": "orders", "methods": ["POST"], "auth": "public",
         "retry_any_method": True, "edge": {"max_body_bytes": 512, "deny_ips": ["10.0.0.0/8"]}},
        {"name": "plain", "path": "/plain", "upstream": "orders", "auth": "public"},
    ])
    routes = {route.endpoint: route for route in inventory(app)}
    pay, plain = routes["routes.pay"], routes["routes.plain"]
    assert pay.retry_any_method and not plain.retry_any_method
    assert pay.edge is not None and dict(pay.edge.raw) == {"max_body_bytes": 512, "deny_ips": ["10.0.0.0/8"]}
    assert plain.edge is None
    assert pay.as_dict()["edge"] == {"max_body_bytes": 512, "deny_ips": ["10.0.0.0/8"]}
    assert (plain.as_dict()["edge"], plain.as_dict()["retry_any_method"]) == (None, False)
