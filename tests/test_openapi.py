"""The OpenAPI document: valid OpenAPI 3.1, and true to the routes, their parameters, security and policies."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from app import ConfigError, Upstream
from app.auth import public, require_api_key, require_auth, require_jwt
from app.caching import cache_response
from app.openapi import declare_schema
from app.operators.openapi.cli import openapi_command
from app.operators.openapi.document import build_document
from app.operators.openapi.endpoint import openapi
from app.ratelimit import by_consumer, limiter
from blueprints import mobile, users, web
from tests.conftest import AppFactory

JWT = {"issuer": "https://idp.test/", "audience": "frontdesk", "algorithms": ["HS256"],
       "secret": "test-secret-of-forty-bytes-0123456789abc"}
ORDER = {"type": "object", "required": ["sku", "qty"],
         "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}}


def _team() -> Blueprint:
    bp = Blueprint("team", __name__, url_prefix="/team")
    Upstream("users", bp)

    @bp.get("/items/<int:item_id>/<uuid:ref>")
    @require_jwt(scopes=("users:read",))
    @limiter.limit("5/minute", key_func=by_consumer)
    @cache_response(ttl=30)
    def item(item_id: int, ref: uuid.UUID) -> str:
        """Read one item.

        The item comes from the users service.
        """
        return str(item_id)

    @bp.get("/files/<path:name>")
    @require_api_key(scopes=("users:read",))
    def file(name: str) -> str:
        """One file."""
        return name

    @bp.post("/orders")
    @require_auth(scopes=("users:write",))
    @declare_schema(request=ORDER, responses={201: {"type": "object"}}, validate=True)
    def order() -> str:
        """Place an order."""
        return "ok"

    return bp


def _open() -> Blueprint:
    bp = Blueprint("open", __name__, url_prefix="/open")  # no upstream: answers itself

    @bp.get("/<any(red, blue):colour>/<string(length=2):lang>/<float(signed=True):x>/<int(min=3, max=9):n>")
    @public
    def shapes(colour: str, lang: str, x: float, n: int) -> str:
        """Converters of every kind."""
        return colour

    return bp


def _app(make_app: AppFactory, **overrides: Any) -> Flask:
    overrides.setdefault("AUTH", {"jwt": JWT})
    # The sample families too (the testing settings point their upstreams nowhere: nothing is called).
    return make_app(blueprints=[_team(), _open(), users.bp, web.bp, mobile.bp], **overrides)


def _operation(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = document["paths"][path][method]
    return operation


def test_the_document_is_valid_openapi_3_1(make_app: AppFactory) -> None:
    app = _app(make_app, ROUTES=[
        {"name": "orders", "path": "/api/orders", "methods": ["GET", "POST"], "upstream": "orders",
         "auth": {"scopes": ["orders:read"]}, "limits": ["3/second"], "cache": {"ttl": 5},
         "request_schema": ORDER, "response_schema": {"200": {"type": "array"}, "201": ORDER}, "validate": True},
        {"name": "board", "path": "/board/<user_id>", "auth": "public", "aggregate": {"calls": [
            {"name": "user", "upstream": "users", "path": "/users/{user_id}"}]}},
    ], RATELIMIT={"default": ["100/second"], "headers": "both"})
    document = build_document(app)
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "Frontdesk"


def test_the_validator_does_catch_a_broken_document(make_app: AppFactory) -> None:
    document = build_document(_app(make_app))
    document["paths"]["/team/orders"]["post"]["responses"]["201"].pop("description")
    with pytest.raises(OpenAPIValidationError):
        validate(document)


def test_every_route_is_listed_with_its_path_template_and_methods(make_app: AppFactory) -> None:
    app = _app(make_app)
    paths = build_document(app)["paths"]
    listed = {(path, method.upper()) for path, item in paths.items() for method in item}
    assert ("/team/items/{item_id}/{ref}", "GET") in listed
    assert ("/api/users/{user_id}", "PUT") in listed and ("/api/users/{user_id}", "DELETE") in listed
    assert ("/livez", "GET") in listed and ("/openapi.json", "GET") in listed
    # Every served rule and method but the operators' /metrics, and nothing else.
    served = {(re.sub(r"<(?:[^>]*:)?([^>]+)>", r"{\1}", rule.rule), method)
              for rule in app.url_map.iter_rules() if rule.rule != "/metrics"
              for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}
    assert listed == served


def test_cache_admin_endpoints_are_left_out(make_app: AppFactory) -> None:
    app = make_app(CACHE={"purge_token": "purge-token-0123456789abcdef0123456789"})
    assert any(rule.rule.startswith("/_frontdesk/cache") for rule in app.url_map.iter_rules())
    assert not any(path.startswith("/_frontdesk") for path in build_document(app)["paths"])


def test_converters_become_parameter_schemas(make_app: AppFactory) -> None:
    document = build_document(_app(make_app))
    item = _operation(document, "/team/items/{item_id}/{ref}", "get")
    assert item["parameters"] == [
        {"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}},
        {"name": "ref", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}},
    ]
    shapes = _operation(document, "/open/{colour}/{lang}/{x}/{n}", "get")
    by_name = {parameter["name"]: parameter["schema"] for parameter in shapes["parameters"]}
    assert by_name == {
        "colour": {"type": "string", "enum": ["blue", "red"]},
        "lang": {"type": "string", "pattern": "^[^/]+$", "minLength": 2, "maxLength": 2},
        "x": {"type": "number"},
        "n": {"type": "integer", "minimum": 3, "maximum": 9},
    }
    files = _operation(document, "/team/files/{name}", "get")
    assert files["parameters"][0]["schema"]["type"] == "string"
    users = _operation(document, "/api/users/{user_id}", "get")
    assert users["parameters"][0]["schema"] == {"type": "string", "pattern": "^[^/]+$", "minLength": 1}


def test_summaries_and_descriptions_come_from_docstrings(make_app: AppFactory) -> None:
    item = _operation(build_document(_app(make_app)), "/team/items/{item_id}/{ref}", "get")
    assert item["summary"] == "Read one item."
    assert item["description"] == "The item comes from the users service."
    assert item["operationId"] == "team.item.get" and item["tags"] == ["team"]


def test_security_follows_each_route_policy(make_app: AppFactory) -> None:
    app = _app(make_app, AUTH={"jwt": JWT, "api_keys": {"header": "X-Team-Key"}})
    document = build_document(app)
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                     "description": schemes["bearerAuth"]["description"]}
    assert (schemes["apiKeyAuth"]["type"], schemes["apiKeyAuth"]["in"], schemes["apiKeyAuth"]["name"]) == (
        "apiKey", "header", "X-Team-Key")
    assert _operation(document, "/team/items/{item_id}/{ref}", "get")["security"] == [{"bearerAuth": ["users:read"]}]
    assert _operation(document, "/team/files/{name}", "get")["security"] == [{"apiKeyAuth": ["users:read"]}]
    assert _operation(document, "/team/orders", "post")["security"] == [
        {"bearerAuth": ["users:write"]}, {"apiKeyAuth": ["users:write"]}]
    assert _operation(document, "/livez", "get")["security"] == []


def test_only_configured_schemes_are_offered(make_app: AppFactory) -> None:
    document = build_document(make_app())  # testing settings: API keys only
    assert set(document["components"]["securitySchemes"]) == {"apiKeyAuth"}
    assert document["components"]["securitySchemes"]["apiKeyAuth"]["name"] == "X-API-Key"


def test_problem_responses_follow_what_the_gateway_can_answer(make_app: AppFactory) -> None:
    document = build_document(_app(make_app))
    item = _operation(document, "/team/items/{item_id}/{ref}", "get")["responses"]
    assert set(item) == {"200", "400", "401", "403", "404", "429", "502", "503", "504", "default"}
    assert item["401"] == {"$ref": "#/components/responses/Unauthorized"}
    shapes = _operation(document, "/open/{colour}/{lang}/{x}/{n}", "get")["responses"]
    assert set(shapes) == {"200", "404"}  # public, no upstream, no limit: only a parameter of the wrong shape
    livez = _operation(document, "/livez", "get")["responses"]
    assert set(livez) == {"200"}
    order = _operation(document, "/team/orders", "post")["responses"]
    assert {"201", "400", "415", "401", "403", "502"} <= set(order) and "200" not in order

    problems = document["components"]["responses"]
    for status, name in (("401", "Unauthorized"), ("429", "TooManyRequests"), ("503", "ServiceUnavailable")):
        response = problems[name]
        assert response["content"] == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert "WWW-Authenticate" in problems["Unauthorized"]["headers"]
    assert {"Retry-After", "RateLimit", "RateLimit-Policy"} <= set(problems["TooManyRequests"]["headers"])
    assert document["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status"]


def test_rate_limit_and_cache_headers_are_on_the_routes_that_have_them(make_app: AppFactory) -> None:
    document = build_document(_app(make_app))
    limited = _operation(document, "/team/items/{item_id}/{ref}", "get")["responses"]["200"]["headers"]
    assert set(limited) == {"X-Request-ID", "RateLimit-Policy", "RateLimit", "Cache-Status", "Age"}
    unlimited = _operation(document, "/team/files/{name}", "get")["responses"]["200"]["headers"]
    assert set(unlimited) == {"X-Request-ID"}

    legacy = build_document(_app(make_app, RATELIMIT={"headers": "legacy"}))
    headers = _operation(legacy, "/team/items/{item_id}/{ref}", "get")["responses"]["200"]["headers"]
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(headers)
    assert "RateLimit" not in headers


def test_an_app_wide_limit_puts_429_on_every_counted_route(make_app: AppFactory) -> None:
    document = build_document(_app(make_app, RATELIMIT={"default": ["100/second"]}))
    assert "429" in _operation(document, "/team/files/{name}", "get")["responses"]
    assert "429" not in _operation(document, "/livez", "get")["responses"]  # health is never counted


def test_schemas_of_code_and_declared_routes_are_in_the_document(make_app: AppFactory) -> None:
    app = _app(make_app, ROUTES=[
        {"name": "orders", "path": "/api/orders", "methods": ["GET", "POST"], "upstream": "orders",
         "auth": {"scopes": ["orders:read"]}, "request_schema": ORDER, "response_schema": ORDER},
    ])
    document = build_document(app)
    code = _operation(document, "/team/orders", "post")
    assert code["requestBody"] == {"required": True, "content": {"application/json": {"schema": ORDER}}}
    assert code["responses"]["201"]["content"] == {"application/json": {"schema": {"type": "object"}}}
    declared_post = _operation(document, "/api/orders", "post")
    assert declared_post["requestBody"]["content"]["application/json"]["schema"] == ORDER
    assert declared_post["responses"]["200"]["content"]["application/json"]["schema"] == ORDER
    assert "415" not in declared_post["responses"]  # documented only: not validated
    assert "requestBody" not in _operation(document, "/api/orders", "get")


def test_the_document_is_served_once_built_with_an_etag(make_app: AppFactory) -> None:
    app = _app(make_app)
    client = app.test_client()
    first = client.get("/openapi.json")
    assert first.status_code == 200 and first.mimetype == "application/json"
    assert json.loads(first.get_data()) == build_document(app)
    body = openapi.runtime(app).body
    assert body is not None
    second = client.get("/openapi.json")
    assert second.get_data() == first.get_data() and openapi.runtime(app).body is body  # from memory
    etag = first.headers["ETag"]
    revalidated = client.get("/openapi.json", headers={"If-None-Match": etag})
    assert revalidated.status_code == 304 and revalidated.get_data() == b""


def test_the_path_is_configurable_and_the_endpoint_can_be_turned_off(make_app: AppFactory) -> None:
    moved = make_app(OPENAPI={"path": "/api/spec.json", "title": "Shop API", "version": "2.1"})
    response = moved.test_client().get("/api/spec.json")
    assert response.status_code == 200
    assert response.json is not None and response.json["info"] == {"title": "Shop API", "version": "2.1"}
    assert "/api/spec.json" in response.json["paths"] and "/openapi.json" not in response.json["paths"]

    off = make_app(OPENAPI={"enabled": False})
    assert off.test_client().get("/openapi.json").status_code == 404
    assert "/openapi.json" not in build_document(off)["paths"]


@pytest.mark.parametrize(("section", "key"), [
    ({"path": "openapi.json"}, "openapi.path"),
    ({"path": "/docs/<name>"}, "openapi.path"),
    ({"enabled": "sometimes"}, "openapi.enabled"),
    ({"title": ""}, "openapi.title"),
    ({"description": 3}, "openapi.description"),
    ({"servers": []}, "openapi.servers"),
])
def test_bad_openapi_settings_stop_the_start(make_app: AppFactory, section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make_app(OPENAPI=section)
    assert raised.value.key == key


def test_the_cli_exports_the_document(make_app: AppFactory, tmp_path: Path) -> None:
    app = _app(make_app)
    target = tmp_path / "openapi.json"
    result = app.test_cli_runner().invoke(openapi_command, ["--output", str(target)])
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text()) == build_document(app)

    printed = app.test_cli_runner().invoke(openapi_command, ["--indent", "0"])
    assert printed.exit_code == 0 and printed.output.count("\n") == 1
    assert json.loads(printed.output) == build_document(app)
