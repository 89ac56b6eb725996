"""Stale-while-revalidate with the Redis tier: one background refresh for every worker of two instances."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from app.testing.records import Received, Reply
from tests.fakes.backend import Backend
from tests.fakes.redisd import RedisServer
from tests.gateway import Gateway
from tests.test_e2e_cache import config, start

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with Backend("echo") as running:
        yield running


@pytest.fixture(scope="module")
def instances(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> Iterator[tuple[Gateway, Gateway]]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    shared = f'shared_uri = "{server.url}"\nlocal_ttl = 0.2'
    pair = []
    try:
        for name in ("one", "two"):
            directory: Path = tmp_path_factory.mktemp(name)
            pair.append(start(directory, config(backend, shared + f'\njournal = "{directory}/journal"'), workers=2))
        yield pair[0], pair[1]
    finally:
        for gateway in pair:
            gateway.stop()
        server.stop()


def test_one_refresh_for_the_fleet(instances: tuple[Gateway, Gateway], backend: Backend) -> None:
    versions = iter(range(1, 1000))

    def origin(received: Received) -> Reply:
        version = next(versions)
        return Reply.of(200, body=f"v{version}".encode(), delay=0 if version == 1 else 1.0,
                        headers=[("Cache-Control", "max-age=1, stale-while-revalidate=30")])

    backend.respond_with(origin, path="/fleet")
    headers = {"Accept-Encoding": "identity", "Host": "shop.example"}

    def get(n: int) -> requests.Response:
        # A new connection each time: every worker of both instances takes some.
        return requests.get(instances[n % 2].url + "/c/fleet", headers=headers, timeout=10)

    assert get(0).content == b"v1"
    time.sleep(1.3)  # stale, and every worker's local copy gone: the entry comes from Redis
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(get, range(40)))
    assert {answer.content for answer in answers} == {b"v1"}
    assert all("stale-while-revalidate" in answer.headers["Cache-Status"] for answer in answers)
    time.sleep(1.5)  # the refresh takes a second
    assert sum(1 for received in backend.received if received.path == "/fleet") == 2
    assert {get(n).content for n in range(4)} == {b"v2"}
