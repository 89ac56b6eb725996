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
from app.health import health
from app.hooks import install_hooks
from app.logs import configure_logging, read_log_settings
from app.proxy import Upstream, upstreams
from app.routes import build_routes_blueprint, read_routes

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

    app.wsgi_app = wrap_wsgi(app.wsgi_app, read_edge_settings(config))  # type: ignore[method-assign,assignment]
    upstreams.init_app(app)
    auth.init_app(app)
    cache.init_app(app)
    install_hooks(app)
    register_error_handlers(app)

    routes = read_routes(config, upstreams.settings(app))
    if blueprints is None:
        from blueprints import BLUEPRINTS  # here, not at the top: blueprints import app

        blueprints = BLUEPRINTS
    for blueprint in (health, build_routes_blueprint(routes), *cache.blueprints(app), *blueprints):
        app.register_blueprint(blueprint)
    auth.check(app)  # every route registered by now must carry an auth policy
    return app


def create_app_or_exit() -> Flask:
    """``create_app()`` for servers: a bad setting prints one line and exits (gunicorn: boot error)."""
    try:
        return create_app()
    except ConfigError as error:
        print(f"frontdesk: configuration error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None  # gunicorn's WORKER_BOOT_ERROR: the master stops too
