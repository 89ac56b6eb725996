"""The kit's pytest fixtures: ``pytest_plugins = ["app.testing.plugin"]`` in a conftest enables them.

``gateway`` (a fresh app, built at its first request), ``upstream`` (fake upstreams by name),
``token`` (bearer tokens with chosen scopes), ``api_key`` (API-key headers). Override
``gateway_blueprints`` and ``gateway_overrides`` in a test module or conftest to choose what is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from flask import Blueprint

from app.testing.credentials import ApiKeys, Tokens
from app.testing.gateway import FakeUpstreams, GatewayUnderTest

__all__ = ["api_key", "gateway", "gateway_blueprints", "gateway_overrides", "token", "upstream"]


@pytest.fixture
def gateway_blueprints() -> Iterable[Blueprint] | None:
    """The route families the gateway is built with; None: the project's list. Override it per module."""
    return None


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    """Settings for every gateway of a module (``create_app`` overrides, sections in upper case)."""
    return {}


@pytest.fixture
def gateway(gateway_blueprints: Iterable[Blueprint] | None,
            gateway_overrides: dict[str, Any]) -> Iterator[GatewayUnderTest]:
    """A fresh testing gateway for this test, built at its first request; stopped afterwards."""
    under_test = GatewayUnderTest(blueprints=gateway_blueprints, **gateway_overrides)
    yield under_test
    under_test.close()


@pytest.fixture
def upstream(gateway: GatewayUnderTest) -> Iterator[FakeUpstreams]:
    """``upstream("users", json=...)``: a real local HTTP fake mounted as upstream "users"; stopped afterwards."""
    fakes = FakeUpstreams(gateway)
    yield fakes
    fakes.stop()


@pytest.fixture
def token(gateway: GatewayUnderTest) -> Tokens:
    """``token("users:read", sub="ada")``: Authorization headers the gateway under test accepts."""
    return Tokens(gateway.settings)


@pytest.fixture
def api_key(gateway: GatewayUnderTest) -> ApiKeys:
    """``api_key()``: the testing consumer's key; ``api_key("users:read", plan="gold")``: a new consumer's."""
    return ApiKeys(gateway)
