"""Example route family in code: the users service under /api/users.

Policies go between the route and the view, in this order everywhere: route, auth, limit,
cache, view (see docs/routes.md). Reads need ``users:read``, writes ``users:write``, by bearer
token or API key.
"""

from __future__ import annotations

from flask import Blueprint

from app import Upstream
from app.auth import require_auth
from app.proxy import ProxyResponse

bp = Blueprint("users", __name__, url_prefix="/api/users")
#: Passing the blueprint makes start-up refuse a deployment without a "users" upstream.
users = Upstream("users", bp)


@bp.get("")
@require_auth(scopes=("users:read",))
def collection() -> ProxyResponse:
    """List users (the query string passes through)."""
    return users.forward("/users")


@bp.post("")
@require_auth(scopes=("users:write",))
def create() -> ProxyResponse:
    """Create a user."""
    return users.forward("/users")


@bp.get("/<user_id>")
@require_auth(scopes=("users:read",))
def item(user_id: str) -> ProxyResponse:
    """Read one user."""
    return users.forward(f"/users/{user_id}")


@bp.route("/<user_id>", methods=["PUT", "DELETE"])
@require_auth(scopes=("users:write",))
def change(user_id: str) -> ProxyResponse:
    """Replace or delete one user."""
    return users.forward(f"/users/{user_id}")
