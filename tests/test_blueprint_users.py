"""The users route family (blueprints/users.py), tested the way a team tests its own: with the testing kit."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from flask import Blueprint

from app.testing import ApiKeys, FakeUpstreams, GatewayUnderTest, Tokens, assert_problem
from blueprints.users import bp


@pytest.fixture
def gateway_blueprints() -> Iterable[Blueprint]:
    return (bp,)


def test_list_users(gateway: GatewayUnderTest, upstream: FakeUpstreams, token: Tokens) -> None:
    users = upstream("users", json=[{"id": 1}])
    response = gateway.get("/api/users?page=2&sort=name", headers=token("users:read"))
    assert response.status_code == 200
    assert response.json == [{"id": 1}]
    users.assert_forwarded("GET", "/users", query="page=2&sort=name")


def test_read_one_user_forwards_the_id_and_the_caller(gateway: GatewayUnderTest, upstream: FakeUpstreams,
                                                      token: Tokens) -> None:
    users = upstream("users", json={"id": "u-7", "name": "Ada"})
    response = gateway.get("/api/users/u-7", headers=token("users:read", sub="ada"))
    assert response.json == {"id": "u-7", "name": "Ada"}
    seen = users.assert_forwarded("GET", "/users/u-7", query="",
                                  headers={"X-Auth-Subject": "ada", "X-Auth-Scheme": "jwt", "Authorization": None})
    assert seen.header("Via") == "1.1 frontdesk"


def test_create_sends_the_body_as_sent(gateway: GatewayUnderTest, upstream: FakeUpstreams, token: Tokens) -> None:
    users = upstream("users", 201, json={"id": "u-8"}, headers={"Location": "/users/u-8"})
    response = gateway.post("/api/users", json={"name": "Grace"}, headers=token("users:write"))
    assert response.status_code == 201
    assert response.headers["Location"] == "/users/u-8"
    users.assert_forwarded("POST", "/users", json={"name": "Grace"}, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_change_needs_the_write_scope(gateway: GatewayUnderTest, upstream: FakeUpstreams, token: Tokens,
                                      method: str) -> None:
    users = upstream("users", 204)
    refused = gateway.open("/api/users/u-7", method=method, headers=token("users:read"))
    assert_problem(refused, 403, "insufficient-scope")
    assert refused.headers["WWW-Authenticate"].endswith('scope="users:write"')
    assert users.requests == []

    allowed = gateway.open("/api/users/u-7", method=method, data=b"{}", headers=token("users:write"))
    assert allowed.status_code == 204
    users.assert_forwarded(method, "/users/u-7")


def test_no_credential_is_refused_before_the_upstream(gateway: GatewayUnderTest, upstream: FakeUpstreams) -> None:
    users = upstream("users")
    assert_problem(gateway.get("/api/users"), 401, "unauthorized")
    assert users.requests == []


def test_a_machine_client_with_an_api_key(gateway: GatewayUnderTest, upstream: FakeUpstreams,
                                          api_key: ApiKeys) -> None:
    users = upstream("users")
    response = gateway.get("/api/users/u-1", headers=api_key("users:read", consumer="crm-sync", plan="gold"))
    assert response.status_code == 200
    users.assert_forwarded(headers={"X-Auth-Consumer": "crm-sync", "X-Auth-Plan": "gold", "X-API-Key": None})


def test_the_services_own_errors_pass_through(gateway: GatewayUnderTest, upstream: FakeUpstreams,
                                              token: Tokens) -> None:
    upstream("users", 404, json={"error": "no such user"}, headers={"X-Users-Trace": "t-1"})
    response = gateway.get("/api/users/u-404", headers=token("users:read"))
    assert response.status_code == 404
    assert response.json == {"error": "no such user"}
    assert response.headers["X-Users-Trace"] == "t-1"


def test_an_unreachable_service_is_a_502(gateway: GatewayUnderTest, upstream: FakeUpstreams, token: Tokens) -> None:
    upstream("users").stop()
    assert_problem(gateway.get("/api/users", headers=token("users:read")), 502, "upstream-unreachable")
