"""Liveness and readiness: public by design, and never behind auth or limits."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from app.auth import public
from app.proxy import upstreams

__all__ = ["LIVE_PATH", "READY_PATH", "health"]

LIVE_PATH = "/livez"
READY_PATH = "/readyz"

#: The health endpoints' blueprint; registered first, with no policy decorators.
health = Blueprint("health", __name__)


@health.get(LIVE_PATH)
@public
def live() -> Response:
    """The worker's event loop answers: restart it if this ever times out."""
    return jsonify(status="live")


@health.get(READY_PATH)
@public
def ready() -> Response:
    """The worker has its settings, pools and routes, and every critical upstream a usable target."""
    down = upstreams.unavailable_critical()
    if down:
        response = jsonify(status="not ready", unavailable=down)
        response.status_code = 503
        return response
    return jsonify(status="ready")
