"""Policy decorators run in the house order (auth, limit, cache, view) whatever order they are written in.

Each test writes its route twice: in the house order, and in the wrong order that used to open the route
(issue 21). Both must behave the same.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Blueprint, Response

from app.auth import public, require_api_key
from app.caching import cache_response
from app.config import ConfigError
from app.ratelimit import limiter
from app.testing.credentials import TESTING_API_KEY
from tests.conftest import AppFactory

KEY = {"X-API-Key": TESTING_API_KEY}
# An answer the upstream marks public: a shared cache may store it even for a credentialed request.
SHAREABLE = {"Cache-Control": "public, max-age=60"}

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def route(rule: str, view: Callable[..., Any], decorators: list[Decorator]) -> Blueprint:
    """A blueprint serving ``view`` at ``rule`` under ``decorators``, the first written outermost (top)."""
    for decorate in reversed(decorators):
        view = decorate(view)
    blueprint = Blueprint(f"order_{uuid.uuid4().hex}", __name__)
    blueprint.add_url_rule(rule, view_func=view)
    return blueprint


def limits() -> dict[str, Any]:
    """Rate limit settings with counters of this test's own."""
    return {"RATELIMIT": {"key_prefix": "t" + uuid.uuid4().hex}}


@pytest.mark.parametrize("cache_first", [False, True], ids=["auth above cache", "cache above auth"])
def test_a_cached_protected_answer_is_never_served_to_an_anonymous_caller(make_app: AppFactory,
                                                                          cache_first: bool) -> None:
    calls: list[str] = []

    def secret() -> Response:
        calls.append("secret")
        return Response("the secret", headers=SHAREABLE)

    auth, cache = require_api_key(scopes=("users:read",)), cache_response(ttl=60)
    client = make_app(blueprints=[route("/secret", secret, [cache, auth] if cache_first else [auth, cache])],
                      **limits()).test_client()
    assert client.get("/secret", headers=KEY).status_code == 200  # an authorised caller fills the cache
    anonymous = client.get("/secret")
    assert anonymous.status_code == 401
    assert b"the secret" not in anonymous.data
    assert anonymous.content_type == "application/problem+json"
    again = client.get("/secret", headers=KEY)
    assert (again.status_code, again.data) == (200, b"the secret")
    assert calls == ["secret"]  # the second authorised request was a cache hit: the cache still works


@pytest.mark.parametrize("limit_first", [False, True], ids=["auth above limit", "limit above auth"])
def test_anonymous_requests_never_spend_the_quota(make_app: AppFactory, limit_first: bool) -> None:
    def counted() -> str:
        return "counted"

    # Keyed by client address: every request of this test comes from the same one.
    auth, limit = require_api_key(), limiter.limit("2/minute")
    client = make_app(blueprints=[route("/counted", counted, [limit, auth] if limit_first else [auth, limit])],
                      **limits()).test_client()
    assert [client.get("/counted").status_code for _ in range(3)] == [401, 401, 401]
    assert [client.get("/counted", headers=KEY).status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.parametrize("cache_first", [False, True], ids=["limit above cache", "cache above limit"])
def test_cache_hits_count_against_the_quota(make_app: AppFactory, cache_first: bool) -> None:
    calls: list[str] = []

    def popular() -> Response:
        calls.append("popular")
        return Response("popular", headers=SHAREABLE)

    limit, cache = limiter.limit("2/minute"), cache_response(ttl=60)
    client = make_app(blueprints=[route("/popular", popular, [public, cache, limit] if cache_first
                                        else [public, limit, cache])], **limits()).test_client()
    answers = [client.get("/popular") for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[1].headers["Cache-Status"].startswith("frontdesk; hit")
    assert calls == ["popular"]


def test_a_limit_resolved_per_request_also_runs_after_auth(make_app: AppFactory) -> None:
    # A callable limit is Flask-Limiter's own check, placed at the limit layer rather than where it is written.
    def counted() -> str:
        return "counted"

    dynamic = limiter.limit(lambda: "2/minute")
    client = make_app(blueprints=[route("/counted", counted, [dynamic, require_api_key()])],
                      **limits()).test_client()
    assert [client.get("/counted").status_code for _ in range(3)] == [401, 401, 401]
    assert [client.get("/counted", headers=KEY).status_code for _ in range(3)] == [200, 200, 429]


def test_policies_split_by_another_decorator_into_the_wrong_order_stop_the_start(make_app: AppFactory) -> None:
    def traced(view: Callable[..., Any]) -> Callable[..., Any]:
        """A team's own decorator: not a policy, so the policies cannot be moved across it."""
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return view(*args, **kwargs)

        return wrapper

    def secret() -> Response:
        return Response("the secret", headers=SHAREABLE)

    blueprint = route("/secret", secret, [cache_response(ttl=60), traced, require_api_key()])
    with pytest.raises(ConfigError) as refused:
        make_app(blueprints=[blueprint])
    assert str(refused.value).startswith(f"policy order of /secret = '{blueprint.name}.secret': expected its auth "
                                         f"policy to run before its cache policy")
    # Above every policy, the team's decorator is fine: the policies still run in the house order.
    client = make_app(blueprints=[route("/secret", secret, [traced, cache_response(ttl=60), require_api_key()])]
                      ).test_client()
    assert client.get("/secret").status_code == 401


def test_a_second_auth_policy_on_one_view_is_refused() -> None:
    def twice() -> str:
        return "twice"

    with pytest.raises(ConfigError) as refused:
        route("/twice", twice, [require_api_key(), public])
    assert str(refused.value).startswith("auth policy of tests.test_policy_order.")
    assert "one auth decorator on the view" in str(refused.value)
