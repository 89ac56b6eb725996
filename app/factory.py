"""The app factory: ``create_app`` builds the gateway; nothing else in the package does.

``create_app`` only assembles, in the order a request meets the layers: settings, the WSGI
edge, extensions, error handlers, blueprints. Given a collecting ``Problems``, it goes on past
bad settings to find them all (``flask gateway check``); without one, the first stops it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Blueprint, Flask

from app.application import Gateway
from app.auth import auth
from app.caching import cache
from app.operators.check import ERROR_PREFIX, REFUSED
from app.operators.cli import gateway
from app.config import PROBLEMS, ConfigError, Problems, load_config
from app.edge import read_edge_settings, wrap_wsgi
from app.errors import register_error_handlers
from app.families import load_blueprints, read_gateway_settings
from app.edge.guard import EdgeGuard, compile_route_policies
from app.health import health
from app.hooks import install_hooks
from app.internals import check_internals
from app.observability.logs import configure_logging, read_log_settings
from app.observability.metrics import configure as configure_metrics
from app.operators.metrics_endpoint import build_metrics_blueprint, read_metrics_settings
from app.operators.openapi.endpoint import openapi
from app.policies import check_order
from app.proxy import upstreams
from app.ratelimit import limiter
from app.routes import DECLARED, build_routes_blueprint, read_routes
from app.operators.status import build_status_blueprint, read_status_settings
from app.observability.tracing import build_tracer, read_tracing_settings

__all__ = ["create_app", "create_app_or_exit"]

T = TypeVar("T")


def create_app(
    env: str | None = None,
    *,
    config_file: str | None = None,
    blueprints: Iterable[Blueprint] | None = None,
    problems: Problems | None = None,
    **overrides: Any,
) -> Flask:
    """Build the gateway: ``env`` picks the settings class, ``overrides`` win over every source.

    ``blueprints`` replaces the configured list (``[gateway] blueprints``), for tests.
    ``problems`` collects every bad setting instead of raising the first (app/operators/check.py).
    """
    problems = problems or Problems()
    env_name, config = load_config(env, config_file, overrides, problems=problems)
    check_internals("app")  # library internals written for other versions fall back (app/internals.py)
    app = Gateway("app", static_folder=None)  # the package's name: its root path, its logger
    app.config.update(config, GATEWAY_ENV=env_name)
    app.extensions[PROBLEMS] = problems
    config = app.config  # a section found bad while checking is put back to its defaults here

    def read(sections: str | tuple[str, ...], read: Callable[[], T]) -> T:
        return problems.read(config, env_name, (sections,) if isinstance(sections, str) else sections, read)

    configure_logging(read("LOG", lambda: read_log_settings(config)))
    metrics_settings = read("METRICS", lambda: read_metrics_settings(config))
    status_settings = read("STATUS", lambda: read_status_settings(config))
    configure_metrics(metrics_settings.enabled)
    tracer = build_tracer(read("TRACING", lambda: read_tracing_settings(config)))

    edge = read("EDGE", lambda: read_edge_settings(config))
    app.wsgi_app = wrap_wsgi(EdgeGuard(app, edge.guard), edge, tracer)  # type: ignore[method-assign,assignment]
    read(("UPSTREAM_DEFAULTS", "UPSTREAMS"), lambda: upstreams.init_app(app))
    read("AUTH", lambda: auth.init_app(app))
    # The gateway's own hooks first (cheap: note the route for the access log, move credentials
    # off the headers), then the limiter's, so even an app-wide 429 is logged with its route.
    install_hooks(app)
    read("RATELIMIT", lambda: limiter.init_app(app))  # the app-wide limit per client address, before any view's
    read("CACHE", lambda: cache.init_app(app))
    read("OPENAPI", lambda: openapi.init_app(app))
    register_error_handlers(app)

    # An upstream that was declared but refused is still a name routes may use: one problem, not two.
    declared = config["UPSTREAMS"] if isinstance(config["UPSTREAMS"], dict) else {}
    names = {*upstreams.settings(app), *declared}
    routes = read(("ROUTE_DEFAULTS", "ROUTES"), lambda: read_routes(config, names, problems))
    app.extensions[DECLARED] = routes
    if blueprints is None:  # the ones [gateway] names, imported now: blueprints import app
        gateway_settings = read("GATEWAY", lambda: read_gateway_settings(config))
        blueprints = read("GATEWAY", lambda: load_blueprints(gateway_settings))
    limiter.exempt(health)  # probes are never rate limited
    gateway_endpoints: tuple[Blueprint, ...] = (health, *openapi.blueprints(app))
    if metrics_settings.enabled:
        scrape = build_metrics_blueprint(metrics_settings)
        limiter.exempt(scrape)  # like health: never rate limited
        gateway_endpoints += (scrape,)
    if status_settings.enabled:
        page = build_status_blueprint(status_settings, metrics_enabled=metrics_settings.enabled)
        limiter.exempt(page)  # like health and metrics: never rate limited; its own access control
        gateway_endpoints += (page,)
    for blueprint in (*gateway_endpoints, build_routes_blueprint(routes, plans=limiter.has_plans(app)),
                      *cache.blueprints(app), *blueprints):
        app.register_blueprint(blueprint)
    check_order(app)  # no route's policies split by another decorator into a different order
    auth.check(app)  # every route registered by now must carry an auth policy
    limiter.check(app)  # exact counts asked for, with a limit to count
    compile_route_policies(app, edge.guard)  # per-route edge settings, checked at start
    app.cli.add_command(gateway)  # flask gateway routes / check (app/operators/cli.py)
    return app


def create_app_or_exit() -> Flask:
    """``create_app()`` for servers: a bad setting prints one line and exits (gunicorn: boot error)."""
    try:
        return create_app()
    except ConfigError as error:
        print(f"{ERROR_PREFIX} {error}", file=sys.stderr, flush=True)
        raise SystemExit(REFUSED) from None  # gunicorn's WORKER_BOOT_ERROR: the master stops too
