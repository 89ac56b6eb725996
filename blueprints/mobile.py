"""Backend-for-frontend of the mobile app: the same overview as blueprints/web.py, trimmed for a phone.

Only the fields the app's screen shows, a shorter deadline (a phone on a bad network gives up
sooner), and orders reduced to their id, status and total.
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, Response

from app import Upstream
from app.auth import require_auth
from app.compose import Call, parallel
from app.compose.shaping import Shape, dot_path

bp = Blueprint("mobile", __name__, url_prefix="/mobile")
Upstream("users", bp)
Upstream("orders", bp)

_USER = Shape(allow=(dot_path("id"), dot_path("name")))
_ORDERS = Shape(allow=tuple(dot_path(path) for path in ("orders.id", "orders.status", "orders.total")),
                rename={dot_path("orders"): "recent"})


@bp.get("/users/<user_id>/overview")
@require_auth(scopes=("users:read", "orders:read"))
def overview(user_id: str) -> Response:
    """The user's id and name, and their orders reduced to id, status and total (optional)."""
    user = quote(user_id, safe="")
    results = parallel(Call("users", f"/users/{user}", name="user", transform=_USER.apply),
                       Call("orders", f"/orders?user={user}", name="orders", required=False,
                            transform=_ORDERS.apply),
                       deadline=1.0)
    return results.response({**results["user"], **(results.get("orders") or {"recent": []})})
