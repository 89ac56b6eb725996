"""The status page's blueprint: one GET, its own access check, HTML rendered on the server."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone

from flask import Blueprint, Response, current_app, render_template, request

from app.observability import metrics
from app.auth import public
from app.operators.inventory import RouteInfo, inventory
from app.operators.status.access import Gate
from app.operators.status.charts import duration
from app.operators.status.recent import RecentErrors
from app.operators.status.series import RateSeries
from app.operators.status.settings import StatusSettings
from app.operators.status.traffic import Traffic, read_traffic
from app.operators.status.view import build_page

__all__ = ["build_status_blueprint"]


def build_status_blueprint(settings: StatusSettings, *, metrics_enabled: bool = True,
                           clock: Callable[[], float] = time.monotonic) -> Blueprint:
    """The page's blueprint, with no policy decorators: registered beside the health and metrics endpoints.

    It also installs, app-wide, the after-request hook that remembers this worker's recent errors.
    """
    blueprint = Blueprint("status", __name__, template_folder="templates")
    gate = Gate(settings, clock)
    series = RateSeries(clock)
    recent = RecentErrors(settings.recent_errors)
    routes: list[tuple[RouteInfo, ...]] = []  # the inventory, read at the first view (routes never change after)
    if settings.recent_errors:
        blueprint.after_app_request(recent.record)

    def page() -> Response:
        """The gateway's routes, upstreams, traffic and recent errors, for people."""
        # REMOTE_ADDR is the client as the edge trusts it (ProxyFix applied trusted hops only).
        gate.check(request.remote_addr, request.headers.get("Authorization"))
        if not routes:
            routes.append(inventory(current_app))
        traffic = read_traffic(metrics.families()) if metrics_enabled else Traffic()
        series.record(traffic)
        refresh = settings.refresh if request.args.get("refresh") != "off" else 0
        content = build_page(routes[0], traffic, series, recent.newest_first(), errors_kept=settings.recent_errors,
                             refresh=refresh, metrics_enabled=metrics_enabled)
        nonce = secrets.token_urlsafe(16)
        html = render_template("status/page.html", page=content, nonce=nonce, path=settings.path,
                               duration=duration, utc=_utc, number=_number, percent=_percent)
        response = Response(html, mimetype="text/html")
        response.headers["Cache-Control"] = "no-store"
        # Nothing but this page's own nonce-marked style block runs: no script, no frame, no form, no fetch.
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; style-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")
        response.headers["X-Frame-Options"] = "DENY"
        return response

    # Public to the auth layer: the page has its own access control (the gate above).
    blueprint.add_url_rule(settings.path, endpoint="page", view_func=public(page), methods=["GET"])
    return blueprint


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}g}" if value != int(value) else f"{int(value):,}"


def _percent(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 100:.1f} %"
