"""Demo orders service: in-memory orders plus a deliberately slow endpoint for gateway timeout demos."""

from __future__ import annotations

import copy
import itertools
import math
from decimal import Decimal
from typing import Any

import gevent
from flask import Flask, Response, request

from examples.demo.common import JSONObject, install_common, json_object_body, json_response, problem

SEED_ORDERS: tuple[JSONObject, ...] = (
    {
        "id": "o-5001",
        "user_id": "u-1001",
        "items": [
            {"sku": "BK-1042", "qty": 1, "price": 34.9},
            {"sku": "MG-0007", "qty": 2, "price": 12.5},
        ],
        "total": 59.9,
        "status": "delivered",
    },
    {
        "id": "o-5002",
        "user_id": "u-1002",
        "items": [{"sku": "HP-2200", "qty": 1, "price": 129.0}],
        "total": 129.0,
        "status": "shipped",
    },
    {
        "id": "o-5003",
        "user_id": "u-1001",
        "items": [{"sku": "KB-3300", "qty": 1, "price": 89.99}],
        "total": 89.99,
        "status": "pending",
    },
    {
        "id": "o-5004",
        "user_id": "u-1004",
        "items": [
            {"sku": "MG-0007", "qty": 4, "price": 12.5},
            {"sku": "BK-1042", "qty": 1, "price": 34.9},
        ],
        "total": 84.9,
        "status": "paid",
    },
)

FIRST_NEW_ID = 5005
DEFAULT_SLOW_SECONDS = 2.0
# A cap keeps a typo like ?seconds=3600 from pinning a demo greenlet for an hour.
MAX_SLOW_SECONDS = 60.0


def _order_total(items: list[JSONObject]) -> float:
    """Sum qty * price without float drift (0.1 + 0.2 style) leaking into totals."""
    total = sum((Decimal(str(item["price"])) * item["qty"] for item in items), Decimal(0))
    return float(round(total, 2))


def _parse_item(raw: Any) -> JSONObject | None:
    """Return a clean {sku, qty, price} item, or None if `raw` is not a valid one."""
    if not isinstance(raw, dict):
        return None
    sku, qty, price = raw.get("sku"), raw.get("qty"), raw.get("price")
    if not isinstance(sku, str) or not sku.strip():
        return None
    # bool is an int subclass; `"qty": true` is a client bug, not a quantity of one.
    if not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
        return None
    if not isinstance(price, (int, float)) or isinstance(price, bool):
        return None
    if not math.isfinite(price) or price < 0:
        return None
    return {"sku": sku.strip(), "qty": qty, "price": float(price)}


def _read_new_order() -> JSONObject | Response:
    """Return user_id and items from the request body, or a 422 problem if it is unusable."""
    body = json_object_body()
    if body is None:
        return problem(422, "invalid order", "the body must be a JSON object")
    user_id = body.get("user_id")
    if not isinstance(user_id, str) or not user_id.strip():
        return problem(422, "invalid order", "user_id is required")
    raw_items = body.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        return problem(422, "invalid order", "items must be a non-empty list")
    items: list[JSONObject] = []
    for index, raw in enumerate(raw_items):
        item = _parse_item(raw)
        if item is None:
            detail = f"items[{index}] needs sku (string), qty (int >= 1) and price (number >= 0)"
            return problem(422, "invalid order", detail)
        items.append(item)
    return {"user_id": user_id.strip(), "items": items}


def create_orders_app() -> Flask:
    """Build the orders service with its own copy of the seed orders."""
    app = Flask("demo-orders")
    orders: dict[str, JSONObject] = {order["id"]: copy.deepcopy(order) for order in SEED_ORDERS}
    new_ids = itertools.count(FIRST_NEW_ID)

    install_common(app)

    def not_found(order_id: str) -> Response:
        """Answer the problem for an unknown order id."""
        return problem(404, "order not found", f"no order with id {order_id!r}")

    @app.get("/orders")
    def list_orders() -> Response:
        """List orders, optionally only those of `?user=`."""
        user_id = request.args.get("user", "").strip()
        found = [order for order in orders.values() if not user_id or order["user_id"] == user_id]
        return json_response({"orders": found, "count": len(found)})

    @app.get("/orders/<order_id>")
    def get_order(order_id: str) -> Response:
        """Answer one order by id."""
        order = orders.get(order_id)
        return json_response(order) if order is not None else not_found(order_id)

    @app.post("/orders")
    def create_order() -> Response:
        """Create a pending order from user_id and items; the total is computed here."""
        new = _read_new_order()
        if isinstance(new, Response):
            return new
        order_id = f"o-{next(new_ids)}"
        order = {"id": order_id, **new, "total": _order_total(new["items"]), "status": "pending"}
        orders[order_id] = order
        return json_response(order, 201, {"Location": f"/orders/{order_id}"})

    @app.get("/orders/<order_id>/slow")
    def get_order_slowly(order_id: str) -> Response:
        """Answer one order after `?seconds=` (default 2) of delay, to trip gateway timeouts."""
        try:
            seconds = float(request.args.get("seconds", DEFAULT_SLOW_SECONDS))
        except ValueError:
            return problem(422, "invalid delay", "seconds must be a number")
        if not math.isfinite(seconds) or seconds < 0:
            return problem(422, "invalid delay", "seconds must be a finite number >= 0")
        # Fail fast on unknown ids: a timeout demo should never be waiting just to say 404.
        if order_id not in orders:
            return not_found(order_id)
        # gevent.sleep yields to the hub, so other requests keep flowing while this one waits.
        gevent.sleep(min(seconds, MAX_SLOW_SECONDS))
        return json_response(orders[order_id])

    return app
