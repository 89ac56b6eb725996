"""``flask gateway ...``: the operators' commands (routes, check, openapi), one click group.

Flask finds the group through the ``flask.commands`` entry point in setup.cfg, so
``flask --app wsgi gateway check`` runs without importing wsgi.py: a broken configuration
cannot stop the command meant to report it. ``create_app`` also adds it to ``app.cli``
(``app.test_cli_runner()``, and a checkout that is not pip-installed).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from app.operators.inventory import LimitInfo, RouteInfo, inventory
from app.operators.openapi.cli import openapi_command

__all__ = ["check_command", "format_routes", "gateway", "routes_command"]

#: The group; commands that need the built app use ``with_appcontext`` (``check`` builds its own).
gateway = AppGroup("gateway", help="Frontdesk: what the gateway serves, and whether its configuration is sound.")

_COLUMNS = ("RULE", "METHODS", "ENDPOINT", "KIND", "UPSTREAMS", "AUTH", "LIMITS", "CACHE", "AGGREGATE", "EDGE")


@click.command("routes")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (RouteInfo.as_dict) instead of a table.")
@with_appcontext
def routes_command(as_json: bool) -> None:
    """Every route, code or declared, with its methods, upstreams and policies."""
    routes = inventory(current_app)
    if as_json:
        click.echo(json.dumps([route.as_dict() for route in routes], indent=2))
    else:
        click.echo(format_routes(routes))


@click.command("check")
@click.option("--config", "config_file", metavar="FILE", help="The TOML file to check (default: $GATEWAY_CONFIG).")
def check_command(config_file: str | None) -> None:
    """Validate the settings and the config file without serving: every problem, non-zero exit on any."""
    from app.operators.check import run_check  # here, not at the top: it builds the app, which imports this module

    click.get_current_context().exit(run_check(config_file))


# More gateway commands (the OpenAPI export...): a click command in its own module, listed here, so
# the entry point finds it without building the app. Use with_appcontext when it needs the app.
for _command in (routes_command, check_command, openapi_command):
    gateway.add_command(_command)


def format_routes(routes: Iterable[RouteInfo]) -> str:
    """The routes as an aligned table, one line each ("-" where a policy is absent)."""
    rows = [_COLUMNS, *(_row(route) for route in routes)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _row(route: RouteInfo) -> tuple[str, ...]:
    upstream = ", ".join(route.upstreams) or "-"
    if route.retry_any_method:
        upstream += " (retries any method)"
    if route.websocket:
        upstream += " (websocket)"
    return (route.rule, ",".join(route.methods), route.endpoint, route.kind, upstream, _auth(route),
            _joined(_limit(limit) for limit in route.limits), _cache(route), _aggregate(route),
            ", ".join(sorted(route.edge.raw)) if route.edge is not None else "-")


def _auth(route: RouteInfo) -> str:
    if route.auth is None:
        return "NONE (refused at start)"
    if route.auth.public:
        return "public"
    schemes = "|".join(route.auth.schemes) if route.auth.schemes else "any scheme"
    return " ".join((schemes, *route.auth.scopes))


def _limit(limit: LimitInfo) -> str:
    rate = {"plan": "plan quota", "per request": "computed limit"}.get(limit.rate, limit.rate)
    scope = "" if limit.scope == "route" else f" ({limit.scope.replace(':', ' ')})"
    return f"{rate} by {limit.per}{scope}"


def _cache(route: RouteInfo) -> str:
    return "-" if route.cache is None else route.cache.summary()


def _aggregate(route: RouteInfo) -> str:
    if route.aggregate is None:
        return "-"
    # "?" marks an optional part: its failure gives a partial answer, not an error.
    return ", ".join(part.name + ("" if part.required else "?") for part in route.aggregate.parts)


def _joined(items: Iterable[str]) -> str:
    return "; ".join(items) or "-"
