"""Aggregates through real gunicorn gevent workers: parallel parts, partial answers, the BFF blueprints."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import requests

from tests.fakes.backend import Backend
from tests.gateway import Gateway
from tests.test_compose import scripted

TEST_KEY = "frontdesk-test-key-0000000000000000"


def _toml(url: str) -> str:
    slow = scripted({"ok": True}, delay=0.2).replace('"', '\\"')
    return f"""
[upstreams.users]
targets = ["{url}"]
[upstreams.orders]
targets = ["{url}"]

[[routes]]
path = "/dash"
auth = "public"
[routes.aggregate]
timeout = 1.0
[[routes.aggregate.calls]]
name = "a"
upstream = "users"
path = "{slow}"
[[routes.aggregate.calls]]
name = "b"
upstream = "orders"
path = "{slow}"
[[routes.aggregate.calls]]
name = "c"
upstream = "users"
path = "{slow}"
[[routes.aggregate.calls]]
name = "broken"
upstream = "orders"
path = "/_/status/500"
required = false
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Gateway]]:
    """One backend and one two-worker gateway for the module."""
    with Backend("parts") as backend:
        running = Gateway(tmp_path_factory.mktemp("aggregate"), _toml(backend.url), workers=2).start()
        try:
            yield lambda: running
        finally:
            running.stop()


def test_parts_run_in_parallel_and_the_answer_is_partial(gateway: Callable[[], Gateway]) -> None:
    url = gateway().url + "/dash"
    requests.get(url, timeout=5)
    timings = []
    for _ in range(4):  # both workers, connections warm
        started = time.perf_counter()
        response = requests.get(url, timeout=5, headers={"X-Request-ID": "e2e-aggregate"})
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200
        assert response.headers["X-Frontdesk-Partial"] == "broken"
        assert response.headers["X-Request-ID"] == "e2e-aggregate"
        body = response.json()
        assert body["a"] == body["b"] == body["c"] == {"ok": True}
        assert [problem["part"] for problem in body["_problems"]] == ["broken"]
    assert max(timings) < 0.35, f"three parts of 200 ms took {timings}"


def test_the_backends_for_frontends_answer_in_their_own_shapes(gateway: Callable[[], Gateway]) -> None:
    headers = {"X-API-Key": TEST_KEY}
    web = requests.get(gateway().url + "/web/users/u-1/overview", headers=headers, timeout=5)
    mobile = requests.get(gateway().url + "/mobile/users/u-1/overview", headers=headers, timeout=5)
    assert web.status_code == mobile.status_code == 200, (web.text, mobile.text)
    assert web.json()["user"]["target"] == "/users/u-1"  # the echo backend's full answer
    assert set(web.json()) == {"user", "orders", "order_count"}
    # The echo answers carry no id, name or orders: the mobile shape keeps none of their fields.
    assert mobile.json() == {"recent": []}
    assert requests.get(gateway().url + "/mobile/users/u-1/overview", timeout=5).status_code == 401
