"""The resilience keys of [upstreams.NAME]: defaults, values and errors naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import ConfigError, load_config
from app.proxy import read_upstreams
from app.proxy.policy import BreakerPolicy, EjectPolicy, HealthPolicy, RetryPolicy


def read(**upstream: Any) -> Any:
    _, config = load_config("testing", overrides={"UPSTREAMS": {"orders": {
        "targets": ["http://10.0.0.11:8000"], **upstream}}})
    return read_upstreams(config)["orders"]


def test_nothing_configured_adds_nothing() -> None:
    resilience = read().resilience
    assert resilience.balance == "round_robin"
    assert (resilience.health, resilience.eject, resilience.retries, resilience.breaker) == (None,) * 4
    assert resilience.critical is False


def test_the_documented_example_reads() -> None:
    orders = read(
        targets=["http://10.0.0.11:8000", "http://10.0.0.12:8000", {"url": "http://10.0.0.13:8000", "weight": 3}],
        balance="least_in_flight",
        health={"path": "/health", "interval": 5, "timeout": 1, "healthy_after": 2, "unhealthy_after": 3},
        eject={"failures": 5, "seconds": 30},
        retries={"attempts": 2, "on": ["connect", "503"], "methods": ["GET", "HEAD", "PUT", "DELETE"],
                 "backoff": 0.05},
        breaker={"failure_ratio": 0.5, "min_requests": 20, "window": 10, "open_for": 15},
        critical=True,
    )
    assert [(t.url, t.weight) for t in orders.targets] == [
        ("http://10.0.0.11:8000", 1), ("http://10.0.0.12:8000", 1), ("http://10.0.0.13:8000", 3)]
    resilience = orders.resilience
    assert resilience.balance == "least_in_flight" and resilience.critical
    assert resilience.health == HealthPolicy("/health", 5.0, 1.0, 2, 3)
    assert resilience.eject == EjectPolicy(5, 30.0)
    assert resilience.retries == RetryPolicy(2, frozenset({"connect"}), frozenset({503}),
                                             frozenset({"GET", "HEAD", "PUT", "DELETE"}), 0.05)
    assert resilience.breaker == BreakerPolicy(0.5, 20, 10.0, 15.0)


def test_hash_on_a_header() -> None:
    resilience = read(balance="hash", hash_on="header:X-Consumer").resilience
    assert (resilience.balance, resilience.hash_on) == ("hash", "header:X-Consumer")


def test_tables_from_the_environment_are_coerced() -> None:
    _, config = load_config("testing", environ={
        "GATEWAY_UPSTREAMS__ORDERS__TARGETS": "http://10.0.0.11:8000",
        "GATEWAY_UPSTREAMS__ORDERS__RETRIES__ATTEMPTS": "3",
        "GATEWAY_UPSTREAMS__ORDERS__RETRIES__ON": "connect,timeout,502",
        "GATEWAY_UPSTREAMS__ORDERS__BREAKER__FAILURE_RATIO": "0.25",
    })
    resilience = read_upstreams(config)["orders"].resilience
    assert resilience.retries is not None and resilience.retries.attempts == 3
    assert resilience.retries.conditions == {"connect", "timeout"} and resilience.retries.statuses == {502}
    assert resilience.breaker is not None and resilience.breaker.failure_ratio == 0.25


@pytest.mark.parametrize(("upstream", "key", "value", "expected"), [
    ({"balance": "random"}, "balance", "random", "one of round_robin, least_in_flight, hash"),
    ({"hash_on": "cookie:x"}, "hash_on", "cookie:x", '"client" or "header:NAME"'),
    ({"retries": {"on": ["429"]}}, "retries.on", "429", "connect, timeout, reset or a 5xx status (never 429)"),
    ({"retries": {"on": ["dns"]}}, "retries.on", "dns", "connect, timeout, reset or a 5xx status (never 429)"),
    ({"retries": {"attempts": 0}}, "retries.attempts", 0, "a whole number >= 1"),
    ({"retries": {"methods": ["FETCH"]}}, "retries.methods", "FETCH",
     "one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
    ({"retries": {"tries": 2}}, "retries.tries", 2, "no such key (misspelt?)"),
    ({"breaker": {"failure_ratio": 1.5}}, "breaker.failure_ratio", 1.5, "a ratio > 0 and <= 1"),
    ({"breaker": {"failure_ratio": 0}}, "breaker.failure_ratio", 0, "a ratio > 0 and <= 1"),
    ({"breaker": {"open_for": 0}}, "breaker.open_for", 0, "a number of seconds > 0 and < 86400"),
    ({"health": {"path": "health"}}, "health.path", "health", "a path starting with /"),
    ({"health": {"interval": -1}}, "health.interval", -1, "a number of seconds > 0 and < 86400"),
    ({"health": "/health"}, "health", "/health", "a table"),
    ({"eject": {"failures": 0}}, "eject.failures", 0, "a whole number >= 1"),
    ({"critical": "yes please"}, "critical", "yes please", "true or false"),
    ({"targets": [{"url": "http://10.0.0.1", "weight": 0}]}, "targets[0].weight", 0, "a whole number >= 1"),
    ({"targets": [{"url": "http://10.0.0.1", "weight": 1001}]}, "targets[0].weight", 1001,
     "a whole number from 1 to 1000"),
    ({"targets": [{"url": "http://10.0.0.1", "wieght": 2}]}, "targets[0].wieght", 2, "no such key (misspelt?)"),
    ({"targets": [{"url": "ftp://10.0.0.1"}]}, "targets[0].url", "ftp://10.0.0.1",
     "an http:// or https:// URL with a host and no path, query or credentials"),
    ({"targets": [{"weight": 2}]}, "targets[0].url", None, "an http:// or https:// URL"),
    ({"targets": ["http://10.0.0.1", 7, {"url": "http://10.0.0.2"}]}, "targets[1]", 7, "a table"),
])
def test_bad_values_name_the_key(upstream: dict[str, Any], key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read(**upstream)
    assert str(caught.value) == f"upstreams.orders.{key} = {value!r}: expected {expected}"


def test_a_route_opts_into_retrying_any_method() -> None:
    from app.routes import read_routes

    _, config = load_config("testing", overrides={"ROUTES": [
        {"path": "/a", "upstream": "orders", "methods": ["POST"], "retry_any_method": True}]})
    [route] = read_routes(config, {"orders"})
    assert route.retry_any_method is True
    _, config = load_config("testing", overrides={"ROUTES": [{"path": "/b", "upstream": "orders",
                                                              "retry_any_method": "perhaps"}]})
    with pytest.raises(ConfigError) as caught:
        read_routes(config, {"orders"})
    assert str(caught.value) == "routes[0].retry_any_method = 'perhaps': expected true or false"


def test_upstream_defaults_carry_resilience_keys_replaced_whole_per_upstream() -> None:
    _, config = load_config("testing", overrides={
        "UPSTREAM_DEFAULTS": {"retries": {"on": ["connect", "503"]}, "eject": {"failures": 3}},
        "UPSTREAMS": {"orders": {"targets": ["http://10.0.0.1"], "retries": {"attempts": 1}},
                      "users": {"targets": ["http://10.0.0.2"]}},
    })
    upstreams = read_upstreams(config)
    orders, users = upstreams["orders"].resilience, upstreams["users"].resilience
    assert orders.retries == RetryPolicy(attempts=1)  # its own table, whole: "on" is the default's default
    assert users.retries == RetryPolicy(statuses=frozenset({503}))
    assert orders.eject == users.eject == EjectPolicy(failures=3)


def test_a_bad_default_names_upstream_defaults() -> None:
    _, config = load_config("testing", overrides={"UPSTREAM_DEFAULTS": {"balance": "random"}})
    with pytest.raises(ConfigError) as caught:
        read_upstreams(config)
    assert str(caught.value).startswith("upstream_defaults.balance = 'random'")
