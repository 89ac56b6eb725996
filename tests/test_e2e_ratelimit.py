"""Rate limits through real gunicorn gevent workers: exact across workers and instances with Redis."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.fakes.backend import Backend
from tests.fakes.redisd import RedisServer
from tests.gateway import Gateway, echo_toml

pytestmark = pytest.mark.e2e

N = 10  # the limit per window; each burst sends 3N concurrent requests


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with Backend("echo") as running:
        yield running


def limited_toml(backend: Backend, storage_uri: str, prefix: str, **extra: str) -> str:
    lines = "\n".join(f"{key} = {value}" for key, value in extra.items())
    return echo_toml(backend.url, route=f'limits = ["{N}/minute"]',
                     extra=f'[ratelimit]\nstorage_uri = "{storage_uri}"\nkey_prefix = "{prefix}"\n{lines}\n')


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, backend: Backend,
           redis_server: RedisServer) -> Iterator[tuple[Gateway, Gateway]]:
    """Two gateway instances of two workers each, counting in the one Redis."""
    directory = tmp_path_factory.mktemp("gateways")
    # A storage deadline a loaded CI machine cannot trip: past it the gateway fails open by design
    # (test_ratelimit covers that), and a burst here would then let more than the limit through.
    config = limited_toml(backend, redis_server.url, "e2e-" + uuid.uuid4().hex, storage_timeout="2.0")
    first, second = Gateway(directory, config), Gateway(directory, config)
    try:
        first.start()
        second.start()
        yield first, second
    finally:
        first.stop()
        second.stop()


def burst(urls: list[str], count: int, client_address: str) -> Counter[int]:
    """``count`` concurrent GETs spread over ``urls``; the statuses by count."""
    def one(index: int) -> int:
        url = urls[index % len(urls)]
        return requests.get(f"{url}/burst-{client_address}", timeout=30).status_code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return Counter(pool.map(one, range(count)))


def test_a_burst_across_two_workers_lets_exactly_the_limit_through(
        shared: tuple[Gateway, Gateway], redis_server: RedisServer) -> None:
    gateway = shared[0]
    assert len(gateway.worker_pids()) == 2
    # A fresh window: the route's counter is per client address, and each test has its own prefix.
    redis_server.client().flushdb()
    assert burst([gateway.url], 3 * N, "workers") == Counter({200: N, 429: 2 * N})


def test_two_instances_sharing_one_redis_let_exactly_the_limit_through(
        shared: tuple[Gateway, Gateway], redis_server: RedisServer) -> None:
    redis_server.client().flushdb()
    assert burst([gateway.url for gateway in shared], 3 * N, "instances") == Counter({200: N, 429: 2 * N})
    refused = requests.get(shared[1].url + "/again", timeout=10)
    assert refused.status_code == 429
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.headers["RateLimit-Policy"] == f'"route";q={N};w=60'
    assert int(refused.headers["Retry-After"]) >= int(refused.headers["RateLimit"].rpartition("t=")[2])
    assert requests.get(shared[1].url + "/livez", timeout=10).status_code == 200


def test_memory_storage_with_two_workers_warns_at_start_or_refuses_when_exact(
        tmp_path: Path, backend: Backend) -> None:
    warned = Gateway(tmp_path, limited_toml(backend, "memory://", "m")).start()
    try:
        assert warned.log().count("RATE LIMITS ARE PER WORKER") == 1  # by the preflight, not by each worker
    finally:
        warned.stop()
    refused = Gateway(tmp_path, limited_toml(backend, "memory://", "m", exact="true")).start(wait=False)
    try:
        assert refused.wait(30) != 0
        assert "ratelimit.storage_uri = 'memory://'" in refused.log()
    finally:
        refused.stop()
