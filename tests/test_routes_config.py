"""Declared routes: [[routes]] checked against Flask's rules and the known upstreams, then registered."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Blueprint, Flask, url_for
from werkzeug.routing import Rule

from app import Upstream, create_app
from app.auth import public
from app.config import ConfigError
from app.proxy import ProxyResponse
from app.routes import RouteSettings, read_routes
from tests.conftest import AppFactory

METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
USERS = {"users": {"targets": ["http://127.0.0.1:9101"]}}


def routes(*entries: dict[str, Any], methods: list[str] | None = None,
           upstreams: tuple[str, ...] = ("users", "orders")) -> tuple[RouteSettings, ...]:
    """read_routes over these [[routes]] entries, with [route_defaults] as the settings class has it."""
    config = {"ROUTES": list(entries), "ROUTE_DEFAULTS": {"methods": methods or ["GET"]}}
    return read_routes(config, upstreams)


def refusal(*entries: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        routes(*entries, **kwargs)
    return str(caught.value)


def rule_of(app: Flask, path: str) -> Rule:
    [rule] = [rule for rule in app.url_map.iter_rules() if rule.rule == path]
    return rule


# --- read_routes ------------------------------------------------------------------------------


def test_a_full_route_is_read() -> None:
    [route] = routes({"path": "/api/users/<path:rest>", "methods": ["get", "Post"], "upstream": "users",
                      "upstream_path": "/v2/users/{rest}", "name": "users_any"})
    assert route.path == "/api/users/<path:rest>"
    assert route.methods == ("GET", "POST")
    assert route.upstream == "users"
    assert route.name == "users_any"
    assert route.upstream_path is not None and route.upstream_path.fields == ("rest",)
    assert route.upstream_path.render({"rest": "a/b"}) == "/v2/users/a/b"


def test_no_routes_is_fine() -> None:
    assert routes() == ()


def test_unknown_upstream_is_refused() -> None:
    message = refusal({"path": "/a", "upstream": "users"}, {"path": "/b", "upstream": "billing"})
    assert message == "routes[1].upstream = 'billing': expected the name of an [upstreams.NAME] table"


def test_upstream_names_are_case_sensitive() -> None:
    assert refusal({"path": "/a", "upstream": "Users"}).startswith("routes[0].upstream = 'Users': ")


@pytest.mark.parametrize(("path", "reason"), [
    ("/a/<id", "malformed url rule: '/a/<id'"),
    ("/a/<nope:id>", "the converter 'nope' does not exist"),
    ("/a/<Int:id>", "the converter 'Int' does not exist"),
    ("/a/<int(min=1:id>", "malformed url rule: '/a/<int(min=1:id>'"),
])
def test_bad_flask_rule_is_refused(path: str, reason: str) -> None:
    assert refusal({"path": path, "upstream": "users"}) == (
        f"routes[0].path = {path!r}: expected a valid Flask rule ({reason})"
    )


def test_rule_with_a_variable_used_twice_is_a_config_error() -> None:
    message = refusal({"path": "/a/<int:id>/<id>", "upstream": "users"})
    assert message.startswith("routes[0].path = '/a/<int:id>/<id>': expected a valid Flask rule")


def test_converter_argument_of_the_wrong_type_is_refused() -> None:
    message = refusal({"path": "/a/<int(min=x):id>", "upstream": "users"})
    assert message.startswith("routes[0].path = '/a/<int(min=x):id>': expected converter arguments of the right type")


@pytest.mark.parametrize("path", ["api/users", "", "<path:rest>", " /a"])
def test_path_not_starting_with_slash_is_refused(path: str) -> None:
    assert refusal({"path": path, "upstream": "users"}) == (
        f"routes[0].path = {path!r}: expected a Flask rule starting with /"
    )


@pytest.mark.parametrize("template", ["users/{rest}", "", "{rest}"])
def test_upstream_path_not_starting_with_slash_is_refused(template: str) -> None:
    message = refusal({"path": "/a/<path:rest>", "upstream": "users", "upstream_path": template})
    expected = "a string" if not template else "a path starting with / (the query string passes through as sent)"
    assert message == f"routes[0].upstream_path = {template!r}: expected {expected}"


@pytest.mark.parametrize("template", ["/users?x=1", "/users/{rest}?", "/users#top"])
def test_upstream_path_with_query_or_fragment_is_refused(template: str) -> None:
    assert refusal({"path": "/a/<path:rest>", "upstream": "users", "upstream_path": template}) == (
        f"routes[0].upstream_path = {template!r}: expected a path starting with / "
        "(the query string passes through as sent)"
    )


@pytest.mark.parametrize(("path", "template", "known", "unknown"), [
    ("/a/<int:id>/<path:rest>", "/u/{user}", "id, rest", "['user']"),
    ("/a/<id>", "/u/{id}/{rest}/{more}", "id", "['more', 'rest']"),
    ("/a", "/u/{id}", "none", "['id']"),
])
def test_upstream_path_field_must_be_a_rule_variable(path: str, template: str, known: str, unknown: str) -> None:
    assert refusal({"path": path, "upstream": "users", "upstream_path": template}) == (
        f"routes[0].upstream_path = {template!r}: expected fields among the rule's variables ({known}), not {unknown}"
    )


@pytest.mark.parametrize("template", ["/u/{id!x}", "/u/{id:d}", "/u/{id!r}", "/u/{}", "/u/{0}", "/u/{id.attr}",
                                      "/u/{id[0]}"])
def test_upstream_path_field_must_be_a_plain_name(template: str) -> None:
    message = refusal({"path": "/a/<id>", "upstream": "users", "upstream_path": template})
    assert message.startswith(f"routes[0].upstream_path = {template!r}: expected a template with {{name}} fields (")
    assert "must be a plain {name}" in message


def test_duplicate_path_and_method_is_refused() -> None:
    message = refusal({"path": "/a", "upstream": "users", "methods": ["GET", "POST"]},
                      {"path": "/b", "upstream": "users"},
                      {"path": "/a", "upstream": "orders", "methods": ["POST"]})
    assert message == "routes[2].path = '/a': expected a path and method (POST) not already served by routes[0]"


def test_duplicate_through_default_methods_is_refused() -> None:
    message = refusal({"path": "/a", "upstream": "users"}, {"path": "/a", "upstream": "orders"}, methods=["PUT"])
    assert message == "routes[1].path = '/a': expected a path and method (PUT) not already served by routes[0]"


def test_duplicate_method_in_one_route_is_refused() -> None:
    message = refusal({"path": "/a", "upstream": "users", "methods": ["GET", "get"]})
    assert message == "routes[0].methods = ['GET', 'GET']: expected each method once"


@pytest.mark.parametrize("template", ["/u/{id", "/u/}id{", "/u/{id}}"])
def test_malformed_upstream_path_template_is_refused(template: str) -> None:
    message = refusal({"path": "/a/<id>", "upstream": "users", "upstream_path": template})
    assert message.startswith(f"routes[0].upstream_path = {template!r}: expected a template with {{name}} fields (")


def test_same_rule_with_renamed_variable_is_a_duplicate() -> None:
    message = refusal({"path": "/a/<id>", "upstream": "users"}, {"path": "/a/<key>", "upstream": "orders"})
    assert message.startswith("routes[1].path = '/a/<key>': expected a path and method (GET) not already served by")


def test_head_route_after_a_get_route_on_the_same_path_is_a_duplicate() -> None:
    message = refusal({"path": "/a", "upstream": "users"}, {"path": "/a", "upstream": "orders", "methods": ["HEAD"]})
    assert message.startswith("routes[1].path = '/a': expected a path and method (HEAD) not already served by")


@pytest.mark.parametrize("method", ["FETCH", "CONNECT", "TRACE", "G ET", "GET,POST"])
def test_unknown_method_is_refused(method: str) -> None:
    assert refusal({"path": "/a", "upstream": "users", "methods": ["GET", method]}) == (
        f"routes[0].methods = {method!r}: expected one of {METHODS}"
    )


@pytest.mark.parametrize(("methods", "shown"), [
    ([], []), ("", []), ([""], [""]), (["GET", 1], ["GET", 1]), ({"GET": True}, {"GET": True}),
])
def test_methods_must_be_a_non_empty_list_of_strings(methods: object, shown: object) -> None:
    assert refusal({"path": "/a", "upstream": "users", "methods": methods}) == (
        f"routes[0].methods = {shown!r}: expected a list of strings, not empty"
    )


def test_methods_as_one_string_are_read_like_an_environment_list() -> None:
    [route] = routes({"path": "/a", "upstream": "users", "methods": "get, delete"})
    assert route.methods == ("GET", "DELETE")


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_every_known_method_is_accepted(method: str) -> None:
    [route] = routes({"path": "/a", "upstream": "users", "methods": [method.lower()]})
    assert route.methods == (method,)


def test_default_methods_are_get_only() -> None:
    config = {"ROUTES": [{"path": "/a", "upstream": "users"}], "ROUTE_DEFAULTS": create_app(
        "testing", blueprints=()).config["ROUTE_DEFAULTS"]}
    [route] = read_routes(config, {"users"})
    assert route.methods == ("GET",)


def test_route_defaults_give_methods_to_routes_without_their_own() -> None:
    bare, own = routes({"path": "/a", "upstream": "users"}, {"path": "/b", "upstream": "users", "methods": ["PUT"]},
                       methods=["get", "POST"])
    assert bare.methods == ("GET", "POST")
    assert own.methods == ("PUT",)


def test_bad_route_defaults_method_is_refused_even_without_routes() -> None:
    assert refusal(methods=["GET", "BREW"]) == f"route_defaults.methods = 'BREW': expected one of {METHODS}"


@pytest.mark.parametrize(("index", "path", "name"), [
    (0, "/api/orders/<path:rest>", "r0_api_orders_rest"),
    (3, "/api/orders", "r3_api_orders"),
    (1, "/", "r1_"),
    (2, "/v1/<int(min=1):id>/x-y.json", "r2_v1_id_x_y_json"),
    (0, "/a/<uuid:key>/<b>", "r0_a_key_b"),
])
def test_default_endpoint_name(index: int, path: str, name: str) -> None:
    entries = [{"path": f"/filler{i}", "upstream": "users"} for i in range(index)]
    entries.append({"path": path, "upstream": "users"})
    assert routes(*entries)[index].name == name


@pytest.mark.parametrize("name", ["list_users", "_private", "Users2"])
def test_explicit_endpoint_name(name: str) -> None:
    [route] = routes({"path": "/a", "upstream": "users", "name": name})
    assert route.name == name


@pytest.mark.parametrize("name", ["routes.x", "2fa", "my-route", "a b", ""])
def test_bad_endpoint_name_is_refused(name: str) -> None:
    assert refusal({"path": "/a", "upstream": "users", "name": name}) == (
        f"routes[0].name = {name!r}: expected a name of letters, digits and _"
    )


def test_duplicate_endpoint_name_is_a_config_error(make_app: AppFactory) -> None:
    with pytest.raises(ConfigError) as caught:
        make_app(UPSTREAMS=USERS, ROUTES=[{"path": "/a", "upstream": "users", "name": "same"},
                                          {"path": "/b", "upstream": "users", "name": "same"}])
    assert str(caught.value).startswith("routes[1].name = 'same': ")


# --- through create_app -----------------------------------------------------------------------


def test_declared_routes_show_in_url_map_with_their_methods(make_app: AppFactory) -> None:
    app = make_app(UPSTREAMS=USERS, ROUTES=[
        {"path": "/api/users/<int:id>", "upstream": "users", "methods": ["PUT", "DELETE"], "name": "user",
         "auth": "public"},
        {"path": "/api/users", "upstream": "users", "auth": "public"},
    ])
    written = rule_of(app, "/api/users/<int:id>")
    assert written.endpoint == "routes.user"
    assert written.methods == {"PUT", "DELETE", "OPTIONS"}
    read = rule_of(app, "/api/users")
    assert read.endpoint == "routes.r1_api_users"
    assert read.methods == {"GET", "HEAD", "OPTIONS"}
    with app.test_request_context():
        assert url_for("routes.user", id=7) == "/api/users/7"
        assert url_for("routes.r1_api_users") == "/api/users"


def test_undeclared_method_is_answered_405(make_app: AppFactory) -> None:
    app = make_app(UPSTREAMS=USERS, ROUTES=[{"path": "/api/users", "upstream": "users", "auth": "public"}])
    response = app.test_client().post("/api/users")
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_route_to_an_undeclared_upstream_stops_create_app(make_app: AppFactory) -> None:
    with pytest.raises(ConfigError, match=r"^routes\[0\]\.upstream = 'billing': expected the name of an "):
        make_app(ROUTES=[{"path": "/a", "upstream": "billing"}])


def forwarding_blueprint(upstream: str) -> Blueprint:
    bp = Blueprint("billing", __name__, url_prefix="/api/billing")
    billing = Upstream(upstream, bp)

    @bp.route("")
    @public
    def invoices() -> ProxyResponse:
        return billing.forward("/invoices")

    return bp


def test_blueprint_forwarding_to_a_missing_upstream_stops_create_app(make_app: AppFactory) -> None:
    with pytest.raises(ConfigError) as caught:
        make_app(UPSTREAMS=USERS, blueprints=(forwarding_blueprint("missing"),))
    assert caught.value.key == "upstreams.missing"
    assert str(caught.value) == (
        "upstreams.missing = None: expected an [upstreams.missing] table: blueprint 'billing' forwards to it"
    )


def test_blueprint_forwarding_to_a_configured_upstream_starts(make_app: AppFactory) -> None:
    app = make_app(UPSTREAMS={"missing": {"targets": ["http://127.0.0.1:9"]}},
                   blueprints=(forwarding_blueprint("missing"),))
    assert rule_of(app, "/api/billing").endpoint == "billing.invoices"


def test_a_configured_blueprint_needs_its_upstreams(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    with pytest.raises(ConfigError) as caught:
        create_app("production", GATEWAY={"blueprints": ["blueprints.users:bp"]})  # production declares none
    assert caught.value.key == "upstreams.users"
    assert "blueprint 'users' forwards to it" in str(caught.value)


def test_same_path_with_different_methods_is_accepted() -> None:
    read, write = routes(
        {"path": "/a", "upstream": "users"},
        {"path": "/a", "upstream": "orders", "methods": ["POST", "DELETE"]},
    )
    assert (read.methods, read.upstream) == (("GET",), "users")
    assert (write.methods, write.upstream) == (("POST", "DELETE"), "orders")
    assert read.name != write.name
