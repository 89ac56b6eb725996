"""Aggregates through real gunicorn gevent workers: parallel parts, partial answers.

The backend-for-frontend blueprints are tested with the testing kit in tests/test_blueprint_bff.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import requests

from tests.fakes.backend import Backend
from tests.gateway import Gateway
from tests.test_compose import scripted


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
