"""Declared aggregates: [routes.aggregate] checked at start-up, variables, steps, shaping, partial answers."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from werkzeug.test import TestResponse

from app.config import ConfigError
from tests.conftest import AppFactory
from tests.fakes.backend import Backend
from tests.fakes.idp import AUDIENCE, ISSUER, claims
from tests.test_compose import scripted

SECRET = "aggregate-test-secret-of-forty-bytes-012"
API_KEY = "aggregate-test-key-0123456789abcdef0123"


def document(response: TestResponse) -> Any:
    """The response's JSON body (any JSON value)."""
    return response.get_json()


def token(**overrides: Any) -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode(claims(scope="profile", **overrides), SECRET, algorithm="HS256")}


def aggregate_app(make_app: AppFactory, backend: Backend, calls: list[dict[str, Any]], *,
                  path: str = "/dashboard", auth: object = None, **aggregate: Any) -> Flask:
    """A gateway with one aggregate route over upstreams users, orders and legacy (all at ``backend``)."""
    route: dict[str, Any] = {"path": path, "auth": auth or {"scopes": ["profile"]},
                             "aggregate": {"calls": calls, **aggregate}}
    return make_app(
        UPSTREAMS={name: {"targets": [backend.url]} for name in ("users", "orders", "legacy")},
        AUTH={"jwt": {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["HS256"], "secret": SECRET},
              "api_keys": {"consumers": {"mobile-app": {
                  "key_sha256": hashlib.sha256(API_KEY.encode()).hexdigest(), "scopes": ["profile"]}}}},
        ROUTES=[route],
    )


ORDERS = {"items": [{"id": 7, "total": 12.5, "internal": "x"}, {"id": 8, "total": 3.0, "internal": "y"}]}


def test_the_issue_example_with_identity_variables(make_app: AppFactory, backend: Backend) -> None:
    app = aggregate_app(make_app, backend, [
        {"name": "user", "upstream": "users", "path": "/users/{sub}", "required": True},
        {"name": "orders", "upstream": "orders", "path": scripted(ORDERS) + "&user={sub}", "required": False,
         "allow": ["items.id", "items.total"], "rename": {"items": "recent_orders"}},
    ], timeout=1.5)
    response = app.test_client().get("/dashboard", headers=token(sub="alice/../x y"))
    assert response.status_code == 200, response.text
    body = document(response)
    assert body["user"]["target"] == "/users/alice%2F..%2Fx%20y"  # a value never climbs out of its segment
    assert body["orders"] == {"recent_orders": [{"id": 7, "total": 12.5}, {"id": 8, "total": 3.0}]}
    orders_call = next(r for r in backend.wait_for(2) if r.target.startswith("/_/respond"))
    assert orders_call.target.endswith("&user=alice%2F..%2Fx%20y")
    assert orders_call.header("X-Auth-Subject") == "alice/../x y"  # identity headers go with every call


def test_consumer_and_query_and_rule_variables(make_app: AppFactory, backend: Backend) -> None:
    app = aggregate_app(make_app, backend, [
        {"name": "a", "upstream": "users", "path": "/c/{consumer}/r/{id}?page={query.page}"},
    ], path="/dash/<int:id>")
    client = app.test_client()
    response = client.get("/dash/42?page=2%263", headers={"X-API-Key": API_KEY})
    assert document(response)["a"]["target"] == "/c/mobile-app/r/42?page=2%263"
    missing = client.get("/dash/42", headers={"X-API-Key": API_KEY})
    assert missing.status_code == 400 and missing.mimetype == "application/problem+json"
    assert "'page'" in document(missing)["detail"]


def test_an_api_key_has_no_subject_for_sub(make_app: AppFactory, backend: Backend) -> None:
    app = aggregate_app(make_app, backend, [{"name": "a", "upstream": "users", "path": "/users/{sub}"}])
    response = app.test_client().get("/dashboard", headers={"X-API-Key": API_KEY})
    assert response.status_code == 403 and response.mimetype == "application/problem+json"
    time.sleep(0.1)
    assert backend.received == []  # refused before any call


def test_a_call_using_an_earlier_answer_runs_after_it(make_app: AppFactory, backend: Backend) -> None:
    app = aggregate_app(make_app, backend, [
        {"name": "user", "upstream": "users", "path": scripted({"id": 5, "team": {"id": "t 1"}}, delay=0.1),
         "merge": True},
        {"name": "team", "upstream": "orders", "path": "/teams/{user.team.id}"},
        {"name": "badges", "upstream": "legacy", "path": "/badges/{user.id}", "allow": ["target"]},
        {"name": "other", "upstream": "legacy", "path": scripted([1, 2], delay=0.1)},
    ])
    started = time.perf_counter()
    response = app.test_client().get("/dashboard", headers=token())
    assert time.perf_counter() - started < 0.35  # step one (user, other) in parallel, then step two
    body = document(response)
    assert body["id"] == 5 and body["team"] != {"id": "t 1"}  # merged, then the later part "team" wins
    assert body["team"]["target"] == "/teams/t%201"
    assert body["badges"] == {"target": "/badges/5"}
    assert body["other"] == [1, 2]
    assert list(body) == ["id", "team", "badges", "other"]


def test_a_missing_optional_part_makes_its_dependents_missing(make_app: AppFactory, backend: Backend) -> None:
    app = aggregate_app(make_app, backend, [
        {"name": "main", "upstream": "users", "path": "/main"},
        {"name": "user", "upstream": "users", "path": "/_/status/500", "required": False},
        {"name": "team", "upstream": "orders", "path": "/teams/{user.team}", "required": False},
    ])
    response = app.test_client().get("/dashboard", headers=token())
    assert response.status_code == 200
    assert response.headers["X-Frontdesk-Partial"] == "user, team"
    assert [(p["part"], p["type"].rsplit("/", 1)[1]) for p in document(response)["_problems"]] == [
        ("user", "part-status"), ("team", "part-dependency")]
    assert all(not r.target.startswith("/teams") for r in backend.wait_for(2))


def test_a_required_part_missing_a_field_fails_the_answer(make_app: AppFactory, backend: Backend) -> None:
    app = aggregate_app(make_app, backend, [
        {"name": "user", "upstream": "users", "path": scripted({"id": None})},
        {"name": "team", "upstream": "orders", "path": "/teams/{user.id}"},
    ])
    response = app.test_client().get("/dashboard", headers=token())
    assert response.status_code == 502
    assert "'team'" in document(response)["detail"]


def test_partial_answers_are_never_cached(make_app: AppFactory, backend: Backend, tmp_path: Path) -> None:
    route = {"path": "/dash", "auth": "public", "cache": {"ttl": 60}, "aggregate": {"calls": [
        {"name": "a", "upstream": "users", "path": "/a"},
        {"name": "b", "upstream": "users", "path": "/_/status/503", "required": False}]}}
    app = make_app(UPSTREAMS={"users": {"targets": [backend.url]}}, ROUTES=[route],
                   CACHE={"journal": str(tmp_path / "journal")})
    client = app.test_client()
    for _ in range(2):
        response = client.get("/dash")
        assert response.status_code == 200 and "X-Frontdesk-Partial" in response.headers
    assert len(backend.wait_for(4)) == 4  # both requests reached the backend: nothing was stored


def test_whole_answers_are_cached_like_any_route(make_app: AppFactory, backend: Backend, tmp_path: Path) -> None:
    route = {"path": "/dash", "auth": "public", "cache": {"ttl": 60}, "aggregate": {"calls": [
        {"name": "a", "upstream": "users", "path": "/a"}]}}
    app = make_app(UPSTREAMS={"users": {"targets": [backend.url]}}, ROUTES=[route],
                   CACHE={"journal": str(tmp_path / "journal")})
    client = app.test_client()
    assert client.get("/dash").json == client.get("/dash").json
    time.sleep(0.2)
    assert len(backend.wait_for(1)) == 1


def test_xml_parts_are_declared_per_call(make_app: AppFactory, backend: Backend) -> None:
    xml = "<user><name>Ann</name><role>admin</role><role>dev</role></user>"
    app = aggregate_app(make_app, backend, [
        {"name": "legacy", "upstream": "legacy", "path": scripted(xml, content_type="text/xml"), "format": "xml",
         "allow": ["user.role"], "merge": True}])
    assert app.test_client().get("/dashboard", headers=token()).json == {"user": {"role": ["admin", "dev"]}}


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "no calls": ({"calls": []}, r"calls = \[\]"),
    "unknown key": ({"calls": [{"name": "a", "upstream": "users", "path": "/"}], "tmeout": 1},
                    r"tmeout"),
    "bad timeout": ({"timeout": 0, "calls": [{"name": "a", "upstream": "users", "path": "/"}]}, r"timeout"),
    "unknown upstream": ({"calls": [{"name": "a", "upstream": "nope", "path": "/"}]}, r"calls\[0\]\.upstream"),
    "duplicate name": ({"calls": [{"name": "a", "upstream": "users", "path": "/"},
                                  {"name": "a", "upstream": "users", "path": "/"}]}, r"calls\[1\]\.name"),
    "reserved name": ({"calls": [{"name": "query", "upstream": "users", "path": "/"}]}, r"calls\[0\]\.name"),
    "unknown variable": ({"calls": [{"name": "a", "upstream": "users", "path": "/{nope}"}]}, r"calls\[0\]\.path"),
    "later call": ({"calls": [{"name": "a", "upstream": "users", "path": "/{b.id}"},
                              {"name": "b", "upstream": "users", "path": "/"}]}, r"calls\[0\]\.path"),
    "own field": ({"calls": [{"name": "a", "upstream": "users", "path": "/{a.id}"}]}, r"calls\[0\]\.path"),
    "format spec": ({"calls": [{"name": "a", "upstream": "users", "path": "/{sub!r}"}]}, r"calls\[0\]\.path"),
    "relative path": ({"calls": [{"name": "a", "upstream": "users", "path": "users"}]}, r"calls\[0\]\.path"),
    "bad format": ({"calls": [{"name": "a", "upstream": "users", "path": "/", "format": "yaml"}]},
                   r"calls\[0\]\.format"),
    "bad allow": ({"calls": [{"name": "a", "upstream": "users", "path": "/", "allow": ["a..b"]}]},
                  r"calls\[0\]\.allow"),
    "bad rename": ({"calls": [{"name": "a", "upstream": "users", "path": "/", "rename": {"a": "b.c"}}]},
                   r"calls\[0\]\.rename\.a"),
    "call typo": ({"calls": [{"name": "a", "upstream": "users", "path": "/", "requried": False}]},
                  r"calls\[0\]\.requried"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_aggregates_stop_the_start_naming_the_key(make_app: AppFactory, case: str) -> None:
    aggregate, key = BAD[case]
    with pytest.raises(ConfigError, match=r"^routes\[0\]\.aggregate\." + key):
        make_app(UPSTREAMS={"users": {"targets": ["http://127.0.0.1:9"]}},
                 ROUTES=[{"path": "/d", "auth": {"scopes": []}, "aggregate": aggregate}])


@pytest.mark.parametrize(("route", "key"), [
    ({"upstream": "users"}, r"routes\[0\]\.upstream"),
    ({"methods": ["GET", "POST"]}, r"routes\[0\]\.methods"),
    ({"auth": "public", "aggregate": {"calls": [{"name": "a", "upstream": "users", "path": "/{sub}"}]}},
     r"routes\[0\]\.aggregate\.calls\[0\]\.path"),
    ({"path": "/d/<sub>"}, r"routes\[0\]\.aggregate = \['sub'\]"),
])
def test_aggregate_routes_refuse_forwarding_keys(make_app: AppFactory, route: dict[str, Any], key: str) -> None:
    declared = {"path": "/d", "auth": {"scopes": []},
                "aggregate": {"calls": [{"name": "a", "upstream": "users", "path": "/"}]}, **route}
    with pytest.raises(ConfigError, match="^" + key):
        make_app(UPSTREAMS={"users": {"targets": ["http://127.0.0.1:9"]}}, ROUTES=[declared])
