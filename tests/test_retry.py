"""Retry decisions, without Flask: methods, replayable bodies, statuses, backoff."""

from __future__ import annotations

import io
from typing import Any

import pytest
from werkzeug.exceptions import ClientDisconnected

from app.proxy.policy import RetryPolicy
from app.proxy.retry import NOT_REPLAYABLE, backoff_delay, read_replayable_body, retries_allowed, retry_on_status

POLICY = RetryPolicy(attempts=2, conditions=frozenset({"connect"}), statuses=frozenset({503}))


@pytest.mark.parametrize(("method", "opt_in", "expected"), [
    ("GET", False, 2), ("PUT", False, 2), ("DELETE", False, 2), ("HEAD", False, 2),
    ("POST", False, 0), ("PATCH", False, 0), ("POST", True, 2),
])
def test_only_listed_methods_are_retried_unless_the_route_opts_in(method: str, opt_in: bool, expected: int) -> None:
    assert retries_allowed(method, POLICY, opt_in) == expected


def test_no_policy_no_retry() -> None:
    assert retries_allowed("GET", None, True) == 0


def test_429_is_never_retried_even_if_listed() -> None:
    policy = RetryPolicy(statuses=frozenset({429, 503}))
    assert not retry_on_status(429, policy)
    assert retry_on_status(503, policy)
    assert not retry_on_status(502, policy)


def environ(body: bytes, **extra: Any) -> dict[str, Any]:
    return {"CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), **extra}


def test_a_small_body_is_held_for_replay() -> None:
    assert read_replayable_body(environ(b"x" * 100), limit=100) == b"x" * 100


def test_a_body_over_the_limit_is_not_replayable_and_not_read() -> None:
    env = environ(b"x" * 101)
    assert read_replayable_body(env, limit=100) is NOT_REPLAYABLE
    assert env["wsgi.input"].tell() == 0


def test_a_chunked_body_is_not_replayable() -> None:
    env = {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(b"abc")}
    assert read_replayable_body(env, limit=1 << 20) is NOT_REPLAYABLE


def test_no_body_is_replayable() -> None:
    assert read_replayable_body({"CONTENT_LENGTH": ""}, limit=0) is None


def test_a_short_body_is_a_client_error() -> None:
    env = {"CONTENT_LENGTH": "10", "wsgi.input": io.BytesIO(b"abc")}
    with pytest.raises(ClientDisconnected):
        read_replayable_body(env, limit=100)


def test_backoff_doubles_and_is_jittered_by_half_either_way() -> None:
    assert backoff_delay(1, 0.1, lambda: 0.0) == pytest.approx(0.05)
    assert backoff_delay(1, 0.1, lambda: 0.999) == pytest.approx(0.1499, abs=1e-3)
    assert backoff_delay(3, 0.1, lambda: 0.5) == pytest.approx(0.4)
