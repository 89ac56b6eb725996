"""Example route family in code: the users service under /api/users.

Policies go between the route and the view, in this order everywhere: route, auth, limit,
cache, view (see the README). The demo needs none yet, so none is applied.
"""

from __future__ import annotations

from flask import Blueprint

from app import Upstream
from app.proxy import ProxyResponse

bp = Blueprint("users", __name__, url_prefix="/api/users")
#: Passing the blueprint makes start-up refuse a deployment without a "users" upstream.
users = Upstream("users", bp)


@bp.route("", methods=["GET", "POST"])
def collection() -> ProxyResponse:
    """List users (the query string passes through) or create one."""
    return users.forward("/users")


@bp.route("/<user_id>", methods=["GET", "PUT", "DELETE"])
def item(user_id: str) -> ProxyResponse:
    """One user: read, replace or delete."""
    return users.forward(f"/users/{user_id}")
