"""The backends-for-frontends (blueprints/web.py, blueprints/mobile.py), tested with the testing kit."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from flask import Blueprint

from app.testing import ApiKeys, FakeUpstreams, GatewayUnderTest, Tokens, assert_problem
from blueprints import mobile, web

USER = {"id": "u-1", "name": "Ada Lovelace", "email": "ada@example.com", "created": "2024-05-01"}
ORDERS = {"count": 2, "orders": [
    {"id": "o-1", "status": "shipped", "total": 129.0, "items": [{"sku": "HP-2200", "qty": 1}]},
    {"id": "o-2", "status": "open", "total": 39.0, "items": [{"sku": "LP-0450", "qty": 1}]},
]}
BOTH = ("users:read", "orders:read")


@pytest.fixture
def gateway_blueprints() -> Iterable[Blueprint]:
    return (web.bp, mobile.bp)


def test_web_overview_is_everything_in_one_answer(gateway: GatewayUnderTest, upstream: FakeUpstreams,
                                                  token: Tokens) -> None:
    users, orders = upstream("users", json=USER), upstream("orders", json=ORDERS)
    response = gateway.get("/web/users/u-1/overview", headers=token(*BOTH))
    assert response.status_code == 200
    assert response.json == {"user": USER, "orders": ORDERS["orders"], "order_count": 2}
    assert "X-Frontdesk-Partial" not in response.headers
    users.assert_forwarded("GET", "/users/u-1", query="")
    orders.assert_forwarded("GET", "/orders", query="user=u-1")


def test_mobile_overview_is_trimmed_for_the_phone(gateway: GatewayUnderTest, upstream: FakeUpstreams,
                                                  token: Tokens) -> None:
    upstream("users", json=USER)
    upstream("orders", json=ORDERS)
    response = gateway.get("/mobile/users/u-1/overview", headers=token(*BOTH))
    assert response.status_code == 200
    assert response.json == {"id": "u-1", "name": "Ada Lovelace", "recent": [
        {"id": "o-1", "status": "shipped", "total": 129.0}, {"id": "o-2", "status": "open", "total": 39.0}]}


@pytest.mark.parametrize(("path", "empty"), [
    ("/web/users/u-1/overview", {"user": USER, "orders": [], "order_count": 0}),
    ("/mobile/users/u-1/overview", {"id": "u-1", "name": "Ada Lovelace", "recent": []}),
])
def test_without_orders_the_answer_is_partial(gateway: GatewayUnderTest, upstream: FakeUpstreams, api_key: ApiKeys,
                                              path: str, empty: dict[str, object]) -> None:
    upstream("users", json=USER)
    upstream("orders", 500, json={"error": "database down"})
    response = gateway.get(path, headers=api_key())
    assert response.status_code == 200
    assert response.headers["X-Frontdesk-Partial"] == "orders"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body is not None
    assert [problem["part"] for problem in body.pop("_problems")] == ["orders"]
    assert body == empty


def test_without_the_user_there_is_no_answer(gateway: GatewayUnderTest, upstream: FakeUpstreams,
                                             token: Tokens) -> None:
    upstream("users", 500)
    upstream("orders", json=ORDERS)
    response = gateway.get("/web/users/u-1/overview", headers=token(*BOTH))
    assert_problem(response, 502, "aggregate-part-failed", detail="The required part 'user' failed")


def test_the_user_id_is_encoded_into_both_calls(gateway: GatewayUnderTest, upstream: FakeUpstreams,
                                                token: Tokens) -> None:
    users, orders = upstream("users", json=USER), upstream("orders", json=ORDERS)
    assert gateway.get("/web/users/a%20b&c/overview", headers=token(*BOTH)).status_code == 200
    users.assert_forwarded(path="/users/a%20b%26c")
    orders.assert_forwarded(path="/orders", query="user=a%20b%26c")


@pytest.mark.parametrize("path", ["/web/users/u-1/overview", "/mobile/users/u-1/overview"])
def test_both_scopes_are_needed_and_nothing_is_called_without_them(
        gateway: GatewayUnderTest, upstream: FakeUpstreams, token: Tokens, path: str) -> None:
    users, orders = upstream("users", json=USER), upstream("orders", json=ORDERS)
    assert_problem(gateway.get(path), 401)
    assert_problem(gateway.get(path, headers=token("users:read")), 403, "insufficient-scope")
    assert users.requests == orders.requests == []
