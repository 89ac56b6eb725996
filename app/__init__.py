"""Frontdesk: an API gateway built as a Flask application.

``create_app`` only assembles, in the order a request meets the layers: settings, the WSGI
edge, extensions, error handlers, blueprints.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Flask

from app.auth import auth
from app.caching import cache
from app.config import ConfigError, load_config
from app.edge import read_edge_settings, wrap_wsgi
from app.errors import register_error_handlers
from app.guard import EdgeGuard, compile_route_policies
from app.health import health
from app.hooks import install_hooks
from app.logs import configure_logging, read_log_settings
from app.metrics import configure as configure_metrics
from app.metrics_endpoint import build_metrics_blueprint, read_metrics_settings
from app.proxy import Upstream, upstreams
from app.ratelimit import limiter
from app.routes import DECLARED, build_routes_blueprint, read_routes
from app.status import build_status_blueprint, read_status_settings
from app.tracing import build_tracer, read_tracing_settings

__all__ = ["ConfigError", "Upstream", "create_app", "create_app_or_exit", "upstreams"]


def create_app(
    env: str | None = None,
    *,
    config_file: str | None = None,
    blueprints: Iterable[Blueprint] | None = None,
    **overrides: Any,
) -> Flask:
    """Build the gateway: ``env`` picks the settings class, ``overrides`` win over every source.

    ``blueprints`` replaces the project's list (``blueprints.BLUEPRINTS``), for tests.
    """
    env_name, config = load_config(env, config_file, overrides)
    app = Flask(__name__, static_folder=None)
    app.config.update(config, GATEWAY_ENV=env_name)
    configure_logging(read_log_settings(config))
    metrics_settings = read_metrics_settings(config)
    status_settings = read_status_settings(config)
    configure_metrics(metrics_settings.enabled)
    tracer = build_tracer(read_tracing_settings(config))

    edge = read_edge_settings(config)
    app.wsgi_app = wrap_wsgi(EdgeGuard(app, edge.guard), edge, tracer)  # type: ignore[method-assign,assignment]
    upstreams.init_app(app)
    auth.init_app(app)
    # The gateway's own hooks first (cheap: note the route for the access log, move credentials
    # off the headers), then the limiter's, so even an app-wide 429 is logged with its route.
    install_hooks(app)
    limiter.init_app(app)  # the app-wide limit per client address, before any view's policy
    cache.init_app(app)
    register_error_handlers(app)

    routes = read_routes(config, upstreams.settings(app))
    app.extensions[DECLARED] = routes
    if blueprints is None:
        from blueprints import BLUEPRINTS  # here, not at the top: blueprints import app

        blueprints = BLUEPRINTS
    gateway_endpoints: tuple[Blueprint, ...] = (health,)
    if metrics_settings.enabled:
        scrape = build_metrics_blueprint(metrics_settings)
        limiter.exempt(scrape)  # like health: never rate limited
        gateway_endpoints += (scrape,)
    if status_settings.enabled:
        page = build_status_blueprint(status_settings, metrics_enabled=metrics_settings.enabled)
        limiter.exempt(page)  # like health and metrics: never rate limited; its own access control
        gateway_endpoints += (page,)
    for blueprint in (*gateway_endpoints, build_routes_blueprint(routes), *cache.blueprints(app), *blueprints):
        app.register_blueprint(blueprint)
    auth.check(app)  # every route registered by now must carry an auth policy
    compile_route_policies(app, edge.guard)  # per-route edge settings, checked at start
    return app


def create_app_or_exit() -> Flask:
    """``create_app()`` for servers: a bad setting prints one line and exits (gunicorn: boot error)."""
    try:
        return create_app()
    except ConfigError as error:
        print(f"frontdesk: configuration error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None  # gunicorn's WORKER_BOOT_ERROR: the master stops too
