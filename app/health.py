"""Liveness and readiness: public by design, and never behind auth or limits."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from app.auth import public
from app.environ import DRAINING_ENVIRON
from app.proxy import upstreams

__all__ = ["LIVE_PATH", "READY_PATH", "health"]

LIVE_PATH = "/livez"
READY_PATH = "/readyz"
#: Set by the gunicorn worker (worker.py) on every request once it has been told to stop.

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
    """The worker has its settings, pools and routes, every critical upstream a usable target, and is not draining."""
    if request.environ.get(DRAINING_ENVIRON):
        # Stopping: a load balancer should send no more; what is in flight still completes.
        response = jsonify(status="not ready", draining=True)
        response.status_code = 503
        return response
    down = upstreams.unavailable_critical()
    if down:
        response = jsonify(status="not ready", unavailable=down)
        response.status_code = 503
        return response
    return jsonify(status="ready")
