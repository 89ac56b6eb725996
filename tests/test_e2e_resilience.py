"""Resilience under real gunicorn gevent workers, real clients in parallel, real backends.

One gateway for the module, with one upstream per scenario; one worker, because balancing,
health and breaker state are per worker by design.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from tests.fakes.backend import Backend
from tests.gateway import Gateway

pytestmark = pytest.mark.e2e


@dataclass
class World:
    gateway: Gateway
    a: Backend
    b: Backend
    guarded: Backend
    lonely: Backend


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with Backend("a") as a, Backend("b") as b, Backend("guarded") as guarded, Backend("lonely") as lonely:
        config = f"""
[upstreams.users]  # the project's users blueprint needs it
targets = ["{a.url}"]

[upstreams.pair]
targets = ["{a.url}", "{b.url}"]
health = {{ path = "/health", interval = 0.1, timeout = 0.5, healthy_after = 1, unhealthy_after = 1 }}
eject = {{ failures = 1, seconds = 30 }}
retries = {{ attempts = 1, on = ["connect", "reset"], backoff = 0.01 }}

[upstreams.guarded]
targets = ["{guarded.url}"]
breaker = {{ failure_ratio = 0.5, min_requests = 4, window = 10, open_for = 1 }}

[upstreams.lonely]
targets = ["{lonely.url}"]
eject = {{ failures = 1, seconds = 30 }}
critical = true

[[routes]]
path = "/pair/<path:rest>"
upstream = "pair"
auth = "public"
upstream_path = "/{{rest}}"

[[routes]]
path = "/guarded/<path:rest>"
upstream = "guarded"
auth = "public"
upstream_path = "/{{rest}}"

[[routes]]
path = "/lonely/<path:rest>"
upstream = "lonely"
auth = "public"
upstream_path = "/{{rest}}"
"""
        gateway = Gateway(tmp_path_factory.mktemp("resilience"), config, workers=1)
        try:
            gateway.start()
            yield World(gateway, a, b, guarded, lonely)
        finally:
            gateway.stop()


def test_a_dead_target_is_routed_around_and_comes_back(world: World) -> None:
    url = world.gateway.url + "/pair/x"
    with requests.Session() as client:
        assert Counter(client.get(url).json()["backend"] for _ in range(10)) == {"a": 5, "b": 5}
        world.b.stop()
        # Under parallel load too: the retry hides the one call that finds b dead, then b is out.
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: requests.get(url, timeout=5), range(40)))
        assert {answer.status_code for answer in answers} == {200}
        assert {answer.json()["backend"] for answer in answers} == {"a"}
        world.b.start()  # same port; the health checks bring it back
        deadline = time.monotonic() + 5
        while client.get(url).json()["backend"] != "b":
            assert time.monotonic() < deadline, "b never came back"
            time.sleep(0.05)


def test_breaker_opens_fails_fast_and_lets_exactly_one_probe_through(world: World) -> None:
    url = world.gateway.url + "/guarded/x"
    backend = world.guarded
    backend.status = 503
    assert [requests.get(url, timeout=5).status_code for _ in range(4)] == [503] * 4
    refused = requests.get(url, timeout=5)
    assert refused.status_code == 503
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["type"].endswith("/upstream-down") and refused.headers["Retry-After"] == "1"
    assert len(backend.received) == 4
    backend.status = None
    backend.delay = 0.5  # the probe takes a while: everyone else arrives while it is out
    time.sleep(1.05)
    backend.clear()
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: requests.get(url, timeout=5), range(12)))
    assert Counter(answer.status_code for answer in answers) == {200: 1, 503: 11}
    assert len(backend.received) == 1
    backend.delay = 0
    assert requests.get(url, timeout=5).status_code == 200  # closed again


def test_all_down_is_an_immediate_503_and_not_ready(world: World) -> None:
    url = world.gateway.url + "/lonely/x"
    assert requests.get(world.gateway.url + "/readyz", timeout=5).status_code == 200
    world.lonely.stop()
    assert requests.get(url, timeout=5).status_code == 502  # the call that finds it dead
    with requests.Session() as client:
        client.get(world.gateway.url + "/livez")  # a warm connection, so only the gateway is timed
        started = time.perf_counter()
        down = client.get(url, timeout=5)
        elapsed = time.perf_counter() - started
    assert down.status_code == 503 and down.json()["type"].endswith("/upstream-down")
    assert 29 <= int(down.headers["Retry-After"]) <= 30
    assert elapsed < 0.1
    ready = requests.get(world.gateway.url + "/readyz", timeout=5)
    assert ready.status_code == 503 and ready.json()["unavailable"] == ["lonely"]
