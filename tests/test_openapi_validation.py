"""Request validation against a route's schema: 400/415 problem+json, the upstream never called, valid bodies intact."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from flask import Blueprint, Flask

from app import ConfigError, Upstream
from app.auth import require_auth
from app.openapi import declare_schema, schema_of
from app.proxy import ProxyResponse
from app.ratelimit import by_consumer, limiter
from tests.conftest import AppFactory
from tests.fakes.backend import Backend

KEY = {"X-API-Key": "frontdesk-test-key-0000000000000000"}
JSON = {"Content-Type": "application/json", **KEY}
ORDER = {
    "type": "object", "required": ["sku", "qty"], "additionalProperties": False,
    "properties": {
        "sku": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{4}$"},
        "qty": {"type": "integer", "minimum": 1},
        "lines": {"type": "array",
                  "items": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}},
    },
}


def _route(**extra: Any) -> dict[str, Any]:
    return {"name": "orders", "path": "/api/orders", "methods": ["GET", "POST", "PUT"], "upstream": "orders",
            "upstream_path": "/orders", "auth": {"scopes": ["orders:read"]}, "request_schema": ORDER,
            "validate": True, **extra}


def _app(make_app: AppFactory, backend: Backend, **extra: Any) -> Flask:
    return make_app(UPSTREAMS={"orders": {"targets": [backend.url]}}, ROUTES=[_route(**extra)])


def _code_app(make_app: AppFactory, backend: Backend) -> Flask:
    bp = Blueprint("shop", __name__, url_prefix="/shop")
    orders = Upstream("orders", bp)

    @bp.post("/orders")
    @require_auth(scopes=("orders:read",))
    @limiter.limit("100/minute", key_func=by_consumer)
    @declare_schema(request=ORDER, validate=True)
    def place() -> ProxyResponse:
        """Place an order."""
        return orders.forward("/orders")

    return make_app(blueprints=[bp], UPSTREAMS={"orders": {"targets": [backend.url]}})


@pytest.mark.parametrize("kind", ["declared", "code"])
def test_a_body_that_breaks_the_schema_gets_400_naming_the_field(
        make_app: AppFactory, backend: Backend, kind: str) -> None:
    app = _app(make_app, backend) if kind == "declared" else _code_app(make_app, backend)
    path = "/api/orders" if kind == "declared" else "/shop/orders"
    response = app.test_client().post(path, data=b'{"sku": "KB-3300", "qty": 0}', headers=JSON)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    problem = response.json
    assert problem is not None
    assert problem["type"] == "https://frontdesk.dev/problems/invalid-body" and problem["status"] == 400
    assert problem["errors"] == [{"pointer": "/qty", "detail": "0 is less than the minimum of 1"}]
    assert "/qty" in problem["detail"] and problem["request_id"] == response.headers["X-Request-ID"]
    assert backend.received == []  # the upstream never saw it


def test_every_field_at_fault_is_named_by_json_pointer(make_app: AppFactory, backend: Backend) -> None:
    body = b'{"sku": "nope", "lines": [{"n": 1}, {"n": "two"}, {}], "colour": "red"}'
    response = _app(make_app, backend).test_client().post("/api/orders", data=body, headers=JSON)
    assert response.status_code == 400 and response.json is not None
    pointers = {error["pointer"]: error["detail"] for error in response.json["errors"]}
    assert pointers["/qty"] == "a required member is missing"
    assert pointers["/lines/1/n"] == "'two' is not of type 'integer'"
    assert pointers["/lines/2/n"] == "a required member is missing"
    assert "does not match" in pointers["/sku"]
    assert "colour" in pointers[""]  # additionalProperties names the unexpected member at the root
    assert backend.received == []


def test_a_valid_body_is_forwarded_byte_for_byte(make_app: AppFactory, backend: Backend) -> None:
    # Odd spacing and non-ASCII text: nothing is re-encoded on the way through.
    body_bytes = '{ "sku":"KB-3300",\n  "qty": 2, "lines": [{"n": 1, "label": "café ☕"}] }'.encode()
    response = _app(make_app, backend).test_client().post("/api/orders?dry=1", data=body_bytes, headers=JSON)
    assert response.status_code == 200
    [seen] = backend.wait_for(1)
    assert (seen.method, seen.target, seen.body) == ("POST", "/orders?dry=1", body_bytes)
    assert seen.header("Content-Length") == str(len(body_bytes))
    assert seen.header("Content-Type") == "application/json"


@pytest.mark.parametrize(("body", "headers", "status", "problem"), [
    (b"sku=KB-3300&qty=2", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported-media-type"),
    (b'{"sku": "KB-3300", "qty": 2}', {"Content-Type": "text/plain"}, 415, "unsupported-media-type"),
    (b'{"sku": "KB-3300", "qty": 2}', {}, 415, "unsupported-media-type"),
    (b'{"sku": "KB-3300", "qty": 2}', {"Content-Type": "application/json", "Content-Encoding": "gzip"}, 415,
     "unsupported-media-type"),
    (b'{"sku": "KB-3300", "qty": ', {"Content-Type": "application/json"}, 400, "invalid-body"),
    (b'{"sku": "KB-3300", "qty": NaN}', {"Content-Type": "application/json"}, 400, "invalid-body"),
    (b"", {"Content-Type": "application/json"}, 400, "invalid-body"),
])
def test_bodies_that_are_not_json_are_refused(make_app: AppFactory, backend: Backend, body: bytes,
                                              headers: dict[str, str], status: int, problem: str) -> None:
    response = _app(make_app, backend).test_client().put("/api/orders", data=body, headers={**KEY, **headers})
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert response.json is not None and response.json["type"] == f"https://frontdesk.dev/problems/{problem}"
    assert backend.received == []


def test_a_json_media_type_with_a_suffix_is_json(make_app: AppFactory, backend: Backend) -> None:
    response = _app(make_app, backend).test_client().post(
        "/api/orders", data=b'{"sku": "KB-3300", "qty": 1}',
        headers={**KEY, "Content-Type": "application/merge-patch+json; charset=utf-8"})
    assert response.status_code == 200 and len(backend.wait_for(1)) == 1


def test_an_anonymous_caller_learns_nothing_about_the_schema(make_app: AppFactory, backend: Backend) -> None:
    response = _app(make_app, backend).test_client().post("/api/orders", data=b"{}",
                                                          headers={"Content-Type": "application/json"})
    assert response.status_code == 401  # auth runs first
    assert b"qty" not in response.get_data()
    assert backend.received == []


def test_a_refused_body_still_counts_against_the_limit(make_app: AppFactory, backend: Backend) -> None:
    client = _app(make_app, backend, limits=["2/minute"]).test_client()
    statuses = [client.post("/api/orders", data=b"{}", headers=JSON).status_code for _ in range(3)]
    assert statuses == [400, 400, 429]  # limit before validation: a flood of bad bodies is limited too
    assert backend.received == []


def test_reads_are_not_validated(make_app: AppFactory, backend: Backend) -> None:
    response = _app(make_app, backend).test_client().get("/api/orders", headers=KEY)
    assert response.status_code == 200
    [seen] = backend.wait_for(1)
    assert seen.method == "GET"


def test_a_documented_schema_is_not_enforced_without_validate(make_app: AppFactory, backend: Backend) -> None:
    response = _app(make_app, backend, validate=False).test_client().post("/api/orders", data=b"anything",
                                                                          headers=KEY)
    assert response.status_code == 200
    [seen] = backend.wait_for(1)
    assert seen.body == b"anything"


@pytest.mark.parametrize(("extra", "key"), [
    ({"request_schema": {"type": "objekt"}}, "routes[0].request_schema.type"),
    ({"request_schema": {"properties": {"qty": {"minimum": "one"}}}},
     "routes[0].request_schema.properties.qty.minimum"),
    ({"request_schema": ["not", "a", "table"]}, "routes[0].request_schema"),
    ({"request_schema": {"$ref": "https://schemas.example/order.json"}}, "routes[0].request_schema.$ref"),
    ({"request_schema": {"properties": {"a": {"$ref": "#/$defs/a"}}}}, "routes[0].request_schema.properties.a.$ref"),
    ({"request_schema": {"$schema": "http://json-schema.org/draft-07/schema#"}}, "routes[0].request_schema.$schema"),
    ({"request_schema": {"const": datetime.date(2026, 1, 1)}}, "routes[0].request_schema"),
    ({"request_schema": None, "validate": True}, "routes[0].validate"),
    ({"validate": "yes"}, "routes[0].validate"),
    ({"methods": ["GET"]}, "routes[0].request_schema"),
    ({"response_schema": {"200": {"type": "objekt"}}}, "routes[0].response_schema.200.type"),
    ({"response_schema": {"99": {"type": "object"}}}, "routes[0].response_schema"),
    ({"response_schema": "object"}, "routes[0].response_schema"),
    ({"request_schemas": {}}, "routes[0].request_schemas"),
])
def test_bad_schema_keys_stop_the_start_naming_the_key(make_app: AppFactory, backend: Backend,
                                                       extra: dict[str, Any], key: str) -> None:
    route = _route(**extra)
    if route["request_schema"] is None:
        del route["request_schema"]
    with pytest.raises(ConfigError) as raised:
        make_app(UPSTREAMS={"orders": {"targets": [backend.url]}}, ROUTES=[route])
    assert raised.value.key == key


def test_a_bad_schema_on_a_code_route_names_the_view() -> None:
    with pytest.raises(ConfigError) as raised:
        @declare_schema(request={"type": "objekt"}, validate=True)
        def place() -> str:
            """Place an order."""
            return "ok"
    assert raised.value.key == (f"declare_schema of {__name__}.test_a_bad_schema_on_a_code_route_names_the_view."
                                "<locals>.place.request.type")


def test_the_validator_is_compiled_once_per_route(make_app: AppFactory, backend: Backend) -> None:
    app = _app(make_app, backend)
    schema = schema_of(app.view_functions["routes.orders"])
    assert schema is not None and schema.validate and schema.validator is not None
    assert schema.validator.schema == ORDER
