"""Backend-for-frontend of the web app: a user's overview with everything a desktop page shows.

Same backends as blueprints/mobile.py, different shape: the pattern is one small blueprint per
client, each answering in one round trip what its screens need.
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, Response

from app import Upstream
from app.auth import require_auth
from app.compose import Call, parallel

bp = Blueprint("web", __name__, url_prefix="/web")
# Handles only to make start-up refuse a deployment without these upstreams.
Upstream("users", bp)
Upstream("orders", bp)


@bp.get("/users/<user_id>/overview")
@require_auth(scopes=("users:read", "orders:read"))
def overview(user_id: str) -> Response:
    """The user and all their orders, in full; the orders are optional (partial answer without them)."""
    user = quote(user_id, safe="")
    results = parallel(Call("users", f"/users/{user}", name="user"),
                       Call("orders", f"/orders?user={user}", name="orders", required=False),
                       deadline=2.0)
    orders = results.get("orders") or {}
    return results.response({"user": results["user"], "orders": orders.get("orders", []),
                             "order_count": orders.get("count", 0)})
