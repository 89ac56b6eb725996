"""Configuration: the four layers and their precedence, coercion of environment strings, refusals."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.config import ConfigError, Section, load_config
from app.edge import read_edge_settings
from app.observability.logs import read_log_settings
from app.proxy.settings import read_upstreams
from app.routes import read_routes
from settings import ENVIRONMENTS, Base
from settings.development import Development
from settings.testing import Testing
from tests.conftest import AppFactory

KNOWN_SECTIONS = ("auth, cache, edge, gateway, log, metrics, openapi, ratelimit, route_defaults, routes, status, "
                  "tracing, upstream_defaults, upstreams")
TARGET_EXPECTED = "an http:// or https:// URL with a host and no path, query or credentials"


@pytest.fixture(autouse=True)
def no_gateway_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """create_app reads os.environ: a GATEWAY_* variable of the shell running the tests must not leak in."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return str(path)


def class_attributes() -> dict[str, dict[str, Any]]:
    """A deep snapshot of every settings class's own upper-case attributes."""
    classes: list[type[Base]] = [Base, *ENVIRONMENTS.values()]
    return {
        cls.__name__: copy.deepcopy({key: getattr(cls, key) for key in dir(cls) if key.isupper()})
        for cls in classes
    }


# --- environments -----------------------------------------------------------------------------


def test_default_environment_is_production() -> None:
    name, config = load_config(environ={})
    assert name == "production"
    assert config["LOG"] == {"level": "INFO", "format": "json"}
    assert config["UPSTREAMS"] == {}


def test_gateway_env_picks_the_settings_class() -> None:
    name, config = load_config(environ={"GATEWAY_ENV": "development"})
    assert name == "development"
    assert config["LOG"] == {"level": "DEBUG", "format": "human"}
    assert set(config["UPSTREAMS"]) == {"users", "orders", "catalog"}


def test_env_argument_wins_over_gateway_env() -> None:
    name, config = load_config("testing", environ={"GATEWAY_ENV": "development"})
    assert name == "testing"
    assert config["TESTING"] is True


@pytest.mark.parametrize("name", ["staging", "Testing", "prod", " testing"])
def test_unknown_gateway_env_is_refused(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"GATEWAY_ENV": name})
    assert str(caught.value) == f"GATEWAY_ENV = {name!r}: expected one of development, production, testing"
    assert caught.value.key == "GATEWAY_ENV"


def test_unknown_env_argument_is_refused() -> None:
    with pytest.raises(ConfigError, match="GATEWAY_ENV = 'nope': expected one of development"):
        load_config("nope", environ={})


# --- precedence -------------------------------------------------------------------------------


def test_each_layer_wins_over_the_one_before(tmp_path: Path) -> None:
    path = write_toml(tmp_path, """
        [upstream_defaults]
        read_timeout = 2.0
        timeout = 3.0
        pool_size = 3
    """)
    environ = {
        "GATEWAY_CONFIG": path,
        "GATEWAY_UPSTREAM_DEFAULTS__TIMEOUT": "4",
        "GATEWAY_UPSTREAM_DEFAULTS__POOL_SIZE": "4",
    }
    _, config = load_config("testing", overrides={"UPSTREAM_DEFAULTS": {"pool_size": 5}}, environ=environ)
    defaults = config["UPSTREAM_DEFAULTS"]
    assert defaults["connect_timeout"] == 0.5  # the settings class
    assert defaults["read_timeout"] == 2.0  # the file
    assert defaults["timeout"] == "4"  # the environment, a string until a Section reads it
    assert defaults["pool_size"] == 5  # create_app
    assert defaults["max_in_flight"] == 500  # the settings class again


def test_config_file_argument_wins_over_gateway_config(tmp_path: Path) -> None:
    ignored = tmp_path / "ignored.toml"
    ignored.write_text('[log]\nlevel = "DEBUG"\n')
    used = write_toml(tmp_path, '[log]\nlevel = "ERROR"\n')
    _, config = load_config("testing", config_file=used, environ={"GATEWAY_CONFIG": str(ignored)})
    assert config["LOG"]["level"] == "ERROR"


def test_create_app_applies_every_layer_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, """
        [log]
        level = "DEBUG"
        format = "human"

        [edge]
        trusted_proxies = 1

        [upstreams.users]
        targets = ["http://127.0.0.1:9101"]
        timeout = 2.0
        read_timeout = 1.0
    """)
    monkeypatch.setenv("GATEWAY_CONFIG", path)
    monkeypatch.setenv("GATEWAY_LOG__LEVEL", "ERROR")
    monkeypatch.setenv("GATEWAY_EDGE__TRUSTED_PROXIES", "2")
    monkeypatch.setenv("GATEWAY_UPSTREAMS__USERS__TIMEOUT", "3")
    app = create_app("testing", blueprints=(), EDGE={"trusted_proxies": 3})

    assert app.config["GATEWAY_ENV"] == "testing"
    assert app.config["LOG"] == {"level": "ERROR", "format": "human"}
    assert app.config["EDGE"] == {**Base.EDGE, "trusted_proxies": 3}  # the other [edge] keys keep their defaults
    assert read_log_settings(app.config).level == "ERROR"
    users = read_upstreams(app.config)["users"]
    assert (users.timeout, users.read_timeout, users.connect_timeout) == (3.0, 1.0, 0.5)


def test_gateway_env_from_the_environment_reaches_create_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ENV", "development")
    app = create_app(blueprints=())
    assert app.config["GATEWAY_ENV"] == "development"
    assert "routes.r0_api_orders_rest" in {rule.endpoint for rule in app.url_map.iter_rules()}


# --- merging ----------------------------------------------------------------------------------


def test_file_tables_merge_key_by_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[upstreams.orders]\ntimeout = 2.5\n\n[log]\nlevel = 'ERROR'\n")
    _, config = load_config("development", config_file=path, environ={})
    assert config["UPSTREAMS"]["orders"] == {"targets": ["http://127.0.0.1:9201"], "timeout": 2.5}
    assert set(config["UPSTREAMS"]) == {"users", "orders", "catalog"}
    assert config["LOG"] == {"level": "ERROR", "format": "human"}


def test_arrays_are_replaced_not_merged(tmp_path: Path) -> None:
    path = write_toml(tmp_path, """
        [upstreams.users]
        targets = ["http://10.0.0.1:8000"]

        [[routes]]
        path = "/only"
        upstream = "users"
    """)
    _, config = load_config("development", config_file=path, environ={})
    assert config["UPSTREAMS"]["users"]["targets"] == ["http://10.0.0.1:8000"]
    assert config["ROUTES"] == [{"path": "/only", "upstream": "users"}]


def test_environment_override_merges_into_a_nested_table() -> None:
    _, config = load_config("development", environ={"GATEWAY_UPSTREAMS__ORDERS__READ_TIMEOUT": "0.25"})
    assert config["UPSTREAMS"]["orders"] == {"targets": ["http://127.0.0.1:9201"], "timeout": 1.0,
                                             "read_timeout": "0.25"}
    assert read_upstreams(config)["orders"].read_timeout == 0.25


def test_create_app_overrides_merge_tables_and_replace_arrays() -> None:
    app = create_app("development", blueprints=(),
                     UPSTREAMS={"orders": {"timeout": 4.0}, "users": {"targets": ["http://10.0.0.9:1"]}},
                     ROUTE_DEFAULTS={"methods": ["GET", "POST"]})
    assert app.config["UPSTREAMS"]["orders"] == {"targets": ["http://127.0.0.1:9201"], "timeout": 4.0}
    assert app.config["UPSTREAMS"]["users"] == {"targets": ["http://10.0.0.9:1"]}
    assert app.config["ROUTE_DEFAULTS"] == {"methods": ["GET", "POST"]}


def test_settings_classes_are_not_changed_by_building_apps() -> None:
    before = class_attributes()
    first = create_app("development", blueprints=(), LOG={"level": "ERROR"},
                       UPSTREAMS={"orders": {"timeout": 4.0}, "extra": {"targets": ["http://10.0.0.1"]}},
                       ROUTE_DEFAULTS={"methods": ["POST"]})
    second = create_app("development", blueprints=(), LOG={"format": "json"},
                        UPSTREAMS={"users": {"pool_size": 7}})
    assert class_attributes() == before
    assert first.config["LOG"] == {"level": "ERROR", "format": "human"}
    assert second.config["LOG"] == {"level": "DEBUG", "format": "json"}
    assert "extra" not in second.config["UPSTREAMS"]
    assert second.config["UPSTREAMS"]["orders"] == {"targets": ["http://127.0.0.1:9201"], "timeout": 1.0}
    assert "pool_size" not in first.config["UPSTREAMS"]["users"]


def test_changing_one_apps_tables_leaves_the_class_and_other_apps_alone() -> None:
    before = class_attributes()
    first = create_app("development", blueprints=())
    first.config["UPSTREAMS"]["orders"]["timeout"] = 9.0
    first.config["LOG"]["level"] = "ERROR"
    second = create_app("development", blueprints=())
    assert class_attributes() == before
    assert second.config["UPSTREAMS"]["orders"]["timeout"] == 1.0
    assert second.config["LOG"]["level"] == "DEBUG"


def test_changing_one_apps_arrays_leaves_the_class_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # Copies the test may spoil: monkeypatch puts the real attributes back afterwards.
    monkeypatch.setattr(Development, "ROUTES", copy.deepcopy(Development.ROUTES))
    monkeypatch.setattr(Development, "UPSTREAMS", copy.deepcopy(Development.UPSTREAMS))
    monkeypatch.setattr(Base, "ROUTE_DEFAULTS", copy.deepcopy(Base.ROUTE_DEFAULTS))
    before = class_attributes()
    _, config = load_config("development", environ={})
    config["ROUTES"].append({"path": "/leak", "upstream": "users"})
    config["UPSTREAMS"]["users"]["targets"].append("http://10.0.0.1")
    config["ROUTE_DEFAULTS"]["methods"].append("DELETE")
    assert class_attributes() == before


# --- reading files ----------------------------------------------------------------------------


def test_missing_file_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.toml")
    with pytest.raises(ConfigError) as caught:
        load_config("testing", environ={"GATEWAY_CONFIG": path})
    assert str(caught.value) == f"GATEWAY_CONFIG = {path!r}: expected a readable TOML file (No such file or directory)"


def test_directory_instead_of_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"expected a readable TOML file \(Is a directory\)"):
        load_config("testing", config_file=str(tmp_path), environ={})


@pytest.mark.parametrize("text", [
    "[log\nlevel = 'INFO'\n",
    "[log]\nlevel = INFO\n",
    "[log]\nlevel = 'INFO'\nlevel = 'DEBUG'\n",
    "upstreams = [1, 'a'",
])
def test_invalid_toml_is_refused(tmp_path: Path, text: str) -> None:
    path = write_toml(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config("testing", config_file=path, environ={})
    assert str(caught.value).startswith(f"GATEWAY_CONFIG = {path!r}: expected valid TOML (")
    assert caught.value.key == "GATEWAY_CONFIG"


@pytest.mark.parametrize(("text", "section", "value"), [
    ("[nope]\nx = 1\n", "nope", {"x": 1}),
    ("[upstream]\ntimeout = 1\n", "upstream", {"timeout": 1}),
    ("[LOG]\nlevel = 'INFO'\n", "LOG", {"level": "INFO"}),
    ("route = []\n", "route", []),
])
def test_unknown_section_in_file_is_refused(tmp_path: Path, text: str, section: str, value: object) -> None:
    path = write_toml(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config("testing", config_file=path, environ={})
    assert str(caught.value) == (
        f"GATEWAY_CONFIG {path}: [{section}] = {value!r}: expected a known section ({KNOWN_SECTIONS})"
    )


@pytest.mark.parametrize("variable", [
    "GATEWAY_NOPE__LEVEL",
    "GATEWAY_UPSTREAM__USERS__TIMEOUT",
    "GATEWAY_LOG__",
    "GATEWAY_UPSTREAMS____TIMEOUT",
])
def test_unknown_section_in_environment_is_refused(variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("testing", environ={variable: "1"})
    assert str(caught.value) == f"{variable} = '1': expected GATEWAY_<SECTION>__<KEY> naming a known section and key"
    assert caught.value.key == variable


def test_gateway_variables_without_double_underscore_are_not_overrides() -> None:
    _, config = load_config("testing", environ={"GATEWAY_WORKERS": "4", "GATEWAY_LOG": "x", "OTHER__LOG": "y"})
    assert config["LOG"] == {"level": "WARNING", "format": "json"}


@pytest.mark.parametrize("section", ["NOPE", "log", "Upstreams"])
def test_unknown_section_in_create_app_overrides_is_refused(make_app: AppFactory, section: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_app(**{section: {}})
    assert str(caught.value) == f"create_app: [{section}] = {{}}: expected a known section ({KNOWN_SECTIONS})"


# --- environment strings coerced to the expected type -----------------------------------------


def upstream_from_environment(**variables: str) -> dict[str, Any]:
    environ = {"GATEWAY_UPSTREAMS__USERS__TARGETS": "http://127.0.0.1:9101", **variables}
    _, config = load_config("testing", environ=environ)
    return config


def test_integer_from_environment() -> None:
    config = upstream_from_environment(GATEWAY_UPSTREAMS__USERS__MAX_IN_FLIGHT=" 7 ",
                                       GATEWAY_UPSTREAM_DEFAULTS__POOL_SIZE="12")
    users = read_upstreams(config)["users"]
    assert users.max_in_flight == 7 and isinstance(users.max_in_flight, int)
    assert users.pool_size == 12


@pytest.mark.parametrize(("text", "seconds"), [("2.5", 2.5), ("3", 3.0), (" 0.01 ", 0.01), ("1e1", 10.0)])
def test_seconds_from_environment(text: str, seconds: float) -> None:
    users = read_upstreams(upstream_from_environment(GATEWAY_UPSTREAMS__USERS__CONNECT_TIMEOUT=text))["users"]
    assert users.connect_timeout == seconds and isinstance(users.connect_timeout, float)


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("On", True), (" yes ", True),
    ("false", False), ("False", False), ("0", False), ("no", False), ("OFF", False),
])
def test_boolean_words_from_environment(text: str, value: bool) -> None:
    users = read_upstreams(upstream_from_environment(GATEWAY_UPSTREAMS__USERS__PRESERVE_HOST=text))["users"]
    assert users.preserve_host is value


@pytest.mark.parametrize("text", [
    '["http://127.0.0.1:9101", "http://127.0.0.1:9102"]',
    "http://127.0.0.1:9101,http://127.0.0.1:9102",
    " http://127.0.0.1:9101 , http://127.0.0.1:9102 ,",
])
def test_list_from_environment(text: str) -> None:
    users = read_upstreams(upstream_from_environment(GATEWAY_UPSTREAMS__USERS__TARGETS=text))["users"]
    assert [target.url for target in users.targets] == ["http://127.0.0.1:9101", "http://127.0.0.1:9102"]


def test_methods_list_from_environment() -> None:
    _, config = load_config("testing", environ={
        "GATEWAY_UPSTREAMS__USERS__TARGETS": "http://127.0.0.1:9101",
        "GATEWAY_ROUTE_DEFAULTS__METHODS": "get, POST",
    })
    config["ROUTES"] = [{"path": "/u", "upstream": "users"}]
    [route] = read_routes(config, {"users"})
    assert route.methods == ("GET", "POST")


def test_edge_and_log_from_environment() -> None:
    _, config = load_config("testing", environ={"GATEWAY_EDGE__TRUSTED_PROXIES": "2", "GATEWAY_LOG__LEVEL": "debug"})
    assert read_edge_settings(config).trusted_proxies == 2
    assert read_log_settings(config).level == "DEBUG"


@pytest.mark.parametrize(("variable", "text", "message"), [
    ("GATEWAY_EDGE__TRUSTED_PROXIES", "two", "edge.trusted_proxies = 'two': expected a whole number >= 0"),
    ("GATEWAY_EDGE__TRUSTED_PROXIES", "1.5", "edge.trusted_proxies = '1.5': expected a whole number >= 0"),
    ("GATEWAY_EDGE__TRUSTED_PROXIES", "-1", "edge.trusted_proxies = -1: expected a whole number >= 0"),
    ("GATEWAY_UPSTREAMS__USERS__TIMEOUT", "soon",
     "upstreams.users.timeout = 'soon': expected a number of seconds > 0 and < 86400"),
    ("GATEWAY_UPSTREAMS__USERS__TIMEOUT", "nan",
     "upstreams.users.timeout = nan: expected a number of seconds > 0 and < 86400"),
    ("GATEWAY_UPSTREAMS__USERS__PRESERVE_HOST", "maybe",
     "upstreams.users.preserve_host = 'maybe': expected true or false"),
    ("GATEWAY_UPSTREAMS__USERS__PRESERVE_HOST", "", "upstreams.users.preserve_host = '': expected true or false"),
    ("GATEWAY_UPSTREAMS__USERS__TARGETS", "", "upstreams.users.targets = []: expected a list of strings, not empty"),
    ("GATEWAY_UPSTREAMS__USERS__TARGETS", '["http://a", 1]',
     "upstreams.users.targets = ['http://a', 1]: expected a list of strings, not empty"),
    ("GATEWAY_UPSTREAMS__USERS__TARGETS", '["http://a"',
     "upstreams.users.targets = '[\"http://a\"': expected a list of strings, not empty"),
    ("GATEWAY_UPSTREAMS__USERS__POOL_SIZE", "0", "upstreams.users.pool_size = 0: expected a whole number >= 1"),
])
def test_bad_environment_strings_are_refused(variable: str, text: str, message: str) -> None:
    config = upstream_from_environment(**{variable: text})
    with pytest.raises(ConfigError) as caught:
        read_edge_settings(config)
        read_upstreams(config)
    assert str(caught.value) == message


# --- bad values: the message names the full key, the value and what was expected --------------

USERS = {"targets": ["http://127.0.0.1:9101"]}
LEVELS = "DEBUG, INFO, WARNING, ERROR, debug, info, warning, error"
METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

BAD_VALUES: list[tuple[dict[str, Any], str, object, str]] = [
    ({"LOG": {"level": "LOUD"}}, "log.level", "LOUD", f"one of {LEVELS}"),
    ({"LOG": {"level": "Info"}}, "log.level", "Info", f"one of {LEVELS}"),
    ({"LOG": {"level": 10}}, "log.level", 10, f"one of {LEVELS}"),
    ({"LOG": {"format": "xml"}}, "log.format", "xml", "one of json, human"),
    ({"LOG": "debug"}, "log", "debug", "a table"),
    ({"EDGE": {"trusted_proxies": -1}}, "edge.trusted_proxies", -1, "a whole number >= 0"),
    ({"EDGE": {"trusted_proxies": True}}, "edge.trusted_proxies", True, "a whole number >= 0"),
    ({"EDGE": {"trusted_proxies": 1.0}}, "edge.trusted_proxies", 1.0, "a whole number >= 0"),
    ({"UPSTREAM_DEFAULTS": {"connect_timeout": 0}}, "upstream_defaults.connect_timeout", 0,
     "a number of seconds > 0 and < 86400"),
    ({"UPSTREAM_DEFAULTS": {"read_timeout": -2.5}}, "upstream_defaults.read_timeout", -2.5,
     "a number of seconds > 0 and < 86400"),
    ({"UPSTREAM_DEFAULTS": {"timeout": False}}, "upstream_defaults.timeout", False,
     "a number of seconds > 0 and < 86400"),
    ({"UPSTREAM_DEFAULTS": {"max_in_flight": 0}}, "upstream_defaults.max_in_flight", 0, "a whole number >= 1"),
    ({"UPSTREAM_DEFAULTS": {"pool_size": "many"}}, "upstream_defaults.pool_size", "many", "a whole number >= 1"),
    ({"UPSTREAM_DEFAULTS": {"preserve_host": 1}}, "upstream_defaults.preserve_host", 1, "true or false"),
    ({"UPSTREAMS": {"users": {**USERS, "connect_timeout": "soon"}}}, "upstreams.users.connect_timeout", "soon",
     "a number of seconds > 0 and < 86400"),
    ({"UPSTREAMS": {"users": {**USERS, "connect_timeout": float("inf")}}}, "upstreams.users.connect_timeout",
     float("inf"), "a number of seconds > 0 and < 86400"),
    ({"UPSTREAMS": {"users": {**USERS, "read_timeout": 0.0}}}, "upstreams.users.read_timeout", 0.0,
     "a number of seconds > 0 and < 86400"),
    ({"UPSTREAMS": {"users": {**USERS, "max_in_flight": 2.5}}}, "upstreams.users.max_in_flight", 2.5,
     "a whole number >= 1"),
    ({"UPSTREAMS": {"users": {**USERS, "preserve_host": "perhaps"}}}, "upstreams.users.preserve_host", "perhaps",
     "true or false"),
    ({"UPSTREAMS": {"billing": {}}}, "upstreams.billing.targets", [], "a list of strings, not empty"),
    ({"UPSTREAMS": {"users": {"targets": [""]}}}, "upstreams.users.targets", [""], "a list of strings, not empty"),
    ({"UPSTREAMS": {"users": {"targets": {"a": "http://h"}}}}, "upstreams.users.targets", {"a": "http://h"},
     "a list of strings, not empty"),
    ({"UPSTREAMS": {"users": "http://127.0.0.1:9101"}}, "upstreams.users", "http://127.0.0.1:9101", "a table"),
    ({"UPSTREAMS": ["users"]}, "upstreams", ["users"], "a table"),
    ({"ROUTE_DEFAULTS": {"methods": []}}, "route_defaults.methods", [], "a list of strings, not empty"),
    ({"ROUTE_DEFAULTS": {"methods": ["FETCH"]}}, "route_defaults.methods", "FETCH", f"one of {METHODS}"),
    ({"ROUTES": {"path": "/x"}}, "routes", {"path": "/x"}, "an array of tables ([[routes]])"),
    ({"ROUTES": ["/x"]}, "routes[0]", "/x", "a table"),
    ({"UPSTREAMS": {"users": USERS}, "ROUTES": [{"path": "x", "upstream": "users"}]}, "routes[0].path", "x",
     "a Flask rule starting with /"),
    ({"UPSTREAMS": {"users": USERS}, "ROUTES": [{"upstream": "users"}]}, "routes[0].path", None,
     "a Flask rule starting with /"),
    ({"UPSTREAMS": {"users": USERS}, "ROUTES": [{"path": "/x"}]}, "routes[0].upstream", None, "a string"),
    ({"UPSTREAMS": {"users": USERS}, "ROUTES": [{"path": "/x", "upstream": "users", "methods": "GET;POST"}]},
     "routes[0].methods", "GET;POST", f"one of {METHODS}"),
    ({"UPSTREAMS": {"users": USERS}, "ROUTES": [{"path": "/x", "upstream": "users", "name": "my-route"}]},
     "routes[0].name", "my-route", "a name of letters, digits and _"),
]


@pytest.mark.parametrize(("overrides", "key", "value", "expected"), BAD_VALUES,
                         ids=[f"{case[1]}={case[2]!r}" for case in BAD_VALUES])
def test_bad_value_names_key_value_and_expectation(make_app: AppFactory, overrides: dict[str, Any], key: str,
                                                   value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_app(**overrides)
    assert str(caught.value) == f"{key} = {value!r}: expected {expected}"
    assert caught.value.key == key


@pytest.mark.parametrize("seconds", [86400, 100000.0])
def test_too_many_seconds_message_states_the_upper_bound(make_app: AppFactory, seconds: float) -> None:
    with pytest.raises(ConfigError) as caught:
        make_app(UPSTREAM_DEFAULTS={"timeout": seconds})
    assert caught.value.key == "upstream_defaults.timeout"
    expected = str(caught.value).split(": expected ", 1)[1]
    assert "86400" in expected


def test_largest_accepted_seconds_value(make_app: AppFactory) -> None:
    app = make_app(UPSTREAM_DEFAULTS={"timeout": 86399.5})
    assert app.config["UPSTREAM_DEFAULTS"]["timeout"] == 86399.5


# --- misspelt keys are refused in every section -----------------------------------------------

MISSPELT: list[tuple[str, str, object]] = [
    ("[log]\nlevle = 'INFO'\n", "log.levle", "INFO"),
    ("[edge]\ntrusted_proxy = 1\n", "edge.trusted_proxy", 1),
    ("[upstream_defaults]\nconect_timeout = 1.0\n", "upstream_defaults.conect_timeout", 1.0),
    ("[upstreams.users]\ntargets = ['http://127.0.0.1:9101']\ntimout = 2.0\n", "upstreams.users.timout", 2.0),
    ("[upstreams.users]\ntarget = ['http://127.0.0.1:9101']\ntargets = ['http://127.0.0.1:9101']\n",
     "upstreams.users.target", ["http://127.0.0.1:9101"]),
    ("[upstreams.users]\ntargets = ['http://127.0.0.1:9101']\n[[routes]]\npath = '/u'\nupstream = 'users'\n"
     "method = ['POST']\n", "routes[0].method", ["POST"]),
    ("[upstreams.users]\ntargets = ['http://127.0.0.1:9101']\n[[routes]]\npath = '/u'\nupstream = 'users'\n"
     "[[routes]]\npath = '/v'\nupstream = 'users'\nupstream_pth = '/w'\n", "routes[1].upstream_pth", "/w"),
    ("[route_defaults]\nupstream = 'users'\n", "route_defaults.upstream", "users"),
]


@pytest.mark.parametrize(("text", "key", "value"), MISSPELT, ids=[case[1] for case in MISSPELT])
def test_misspelt_key_is_refused(tmp_path: Path, text: str, key: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app("testing", config_file=write_toml(tmp_path, text), blueprints=())
    assert str(caught.value) == f"{key} = {value!r}: expected no such key (misspelt?)"


def test_misspelt_key_from_environment_is_refused() -> None:
    _, config = load_config("testing", environ={"GATEWAY_LOG__FROMAT": "human"})
    with pytest.raises(ConfigError, match=r"^log\.fromat = 'human': expected no such key \(misspelt\?\)$"):
        read_log_settings(config)


def test_section_done_passes_when_every_key_was_read() -> None:
    section = Section("log", {"level": "INFO", "format": "json"})
    section.string("level")
    with pytest.raises(ConfigError, match="log.format"):
        section.done()
    section.string("format")
    section.done()


# --- upstream targets -------------------------------------------------------------------------


def read_target_config(*targets: str) -> dict[str, Any]:
    return {"UPSTREAM_DEFAULTS": Testing.UPSTREAM_DEFAULTS, "UPSTREAMS": {"svc": {"targets": list(targets)}}}


@pytest.mark.parametrize(("url", "normal", "host", "port", "netloc"), [
    ("http://backend", "http://backend:80", "backend", 80, "backend"),
    ("http://backend/", "http://backend:80", "backend", 80, "backend"),
    ("https://backend", "https://backend:443", "backend", 443, "backend"),
    ("https://backend:443", "https://backend:443", "backend", 443, "backend"),
    ("http://backend:8080", "http://backend:8080", "backend", 8080, "backend:8080"),
    ("https://backend:80", "https://backend:80", "backend", 80, "backend:80"),
    ("HTTP://Backend.Example:65535", "http://backend.example:65535", "backend.example", 65535,
     "backend.example:65535"),
    ("http://10.0.0.1:1", "http://10.0.0.1:1", "10.0.0.1", 1, "10.0.0.1:1"),
    ("http://[::1]:8080", "http://[::1]:8080", "::1", 8080, "[::1]:8080"),
    ("https://[2001:db8::1]", "https://[2001:db8::1]:443", "2001:db8::1", 443, "[2001:db8::1]"),
])
def test_target_url_accepted(url: str, normal: str, host: str, port: int, netloc: str) -> None:
    [target] = read_upstreams(read_target_config(url))["svc"].targets
    assert (target.url, target.host, target.port, target.netloc) == (normal, host, port, netloc)
    assert target.scheme == normal.split(":")[0]


@pytest.mark.parametrize("url", [
    "ftp://backend",
    "ws://backend",
    "backend:8080",
    "//backend",
    "http://",
    "http:///users",
    "http://:8080",
    "http://backend/api",
    "http://backend//",
    "http://backend?x=1",
    "http://backend#top",
    "http://user:secret@backend",
    "http://user@backend",
    "http://:secret@backend",
    "http://backend:99999",
    "http://backend:65536",
    "http://backend:-1",
    "http://backend:http",
    "http://[::1",
    "http://::1:8080",
    "http://backend:0",
    "http://back end",
])
def test_target_url_refused(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_upstreams(read_target_config("http://good:1", url))
    assert str(caught.value) == f"upstreams.svc.targets = {url!r}: expected {TARGET_EXPECTED}"


# --- upstream names ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["users", "a", "order-service", "svc_2", "a" * 63, "x-_-9"])
def test_upstream_name_accepted(name: str) -> None:
    config = {"UPSTREAM_DEFAULTS": Testing.UPSTREAM_DEFAULTS, "UPSTREAMS": {name: {"targets": ["http://h"]}}}
    assert read_upstreams(config)[name].name == name


@pytest.mark.parametrize("name", ["Users", "2fa", "-users", "_users", "a.b", "", "my svc", "usérs", "a" * 64])
def test_upstream_name_refused(name: str) -> None:
    config = {"UPSTREAM_DEFAULTS": Testing.UPSTREAM_DEFAULTS, "UPSTREAMS": {name: {"targets": ["http://h"]}}}
    with pytest.raises(ConfigError) as caught:
        read_upstreams(config)
    assert str(caught.value) == (
        f"upstreams.{name} = {name!r}: expected an upstream name of lower-case letters, digits, - and _"
    )


def test_upstream_options_fall_back_to_defaults() -> None:
    _, config = load_config("testing", environ={}, overrides={
        "UPSTREAM_DEFAULTS": {"timeout": 7.0, "preserve_host": True},
        "UPSTREAMS": {"a": {"targets": ["http://h"], "timeout": 2}, "b": {"targets": ["http://h"]}},
    })
    upstreams = read_upstreams(config)
    assert (upstreams["a"].timeout, upstreams["b"].timeout) == (2.0, 7.0)
    assert upstreams["a"].preserve_host is upstreams["b"].preserve_host is True
    assert upstreams["a"].pool_size == Base.UPSTREAM_DEFAULTS["pool_size"]


def test_development_settings_are_valid() -> None:
    app = create_app("development", blueprints=())
    assert set(read_upstreams(app.config)) == {"users", "orders", "catalog"}
    assert [target.netloc for target in read_upstreams(app.config)["users"].targets] == [
        "127.0.0.1:9101", "127.0.0.1:9102"]
    assert Development.LOG == {"level": "DEBUG", "format": "human"}
