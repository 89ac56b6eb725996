"""The Redis tier through two gateway instances of two gevent workers each, and its outage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.fakes.backend import Backend
from tests.gateway import Gateway
from tests.fakes.redisd import RedisServer
from tests.test_e2e_cache import PURGE_TOKEN, calls, config, start

pytestmark = pytest.mark.e2e

LOCAL_TTL = 0.5


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with Backend("echo") as running:
        yield running


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """This module's own server (it stops it, for the outage test), not the session's shared one."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def instances(tmp_path_factory: pytest.TempPathFactory, backend: Backend,
              redis_server: RedisServer) -> Iterator[tuple[Gateway, Gateway]]:
    shared = f'shared_uri = "{redis_server.url}"\nlocal_ttl = {LOCAL_TTL}\nshared_retry = 1'
    # Each instance gets its own directory, so its own journal: only Redis connects them.
    pair = []
    for name in ("one", "two"):
        directory: Path = tmp_path_factory.mktemp(name)
        pair.append(start(directory, config(backend, shared + f'\njournal = "{directory}/journal"'), workers=2))
    yield pair[0], pair[1]
    for gateway in pair:
        gateway.stop()


def get(gateway: Gateway, path: str) -> requests.Response:
    # Both instances behind one name, as behind a load balancer: the host is part of the key.
    headers = {"Accept-Encoding": "identity", "Host": "shop.example"}
    return requests.get(gateway.url + path, timeout=10, headers=headers)


def test_one_store_serves_every_worker_of_both_instances(instances: tuple[Gateway, Gateway],
                                                         backend: Backend) -> None:
    one, two = instances
    first = get(one, "/c/shared/a")
    assert first.headers["Cache-Status"] == "frontdesk; fwd=uri-miss; stored"
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: get((one, two)[n % 2], "/c/shared/a"), range(40)))
    assert all(answer.content == first.content for answer in answers)
    assert all("hit" in answer.headers["Cache-Status"] for answer in answers)
    assert calls(backend, "/shared/a") == 1


def test_a_purge_on_one_instance_reaches_the_other(instances: tuple[Gateway, Gateway], backend: Backend) -> None:
    one, two = instances
    get(one, "/c/shared/b")
    assert "hit" in get(two, "/c/shared/b").headers["Cache-Status"]
    purged = requests.post(two.url + "/_frontdesk/cache/purge", json={"prefix": "/c/shared/b"}, timeout=10,
                           headers={"Authorization": f"Bearer {PURGE_TOKEN}"})
    assert purged.json()["shared_keys_deleted"] >= 1
    time.sleep(LOCAL_TTL + 0.1)  # the other instance's workers keep their own copy this long at most
    assert "hit" not in get(one, "/c/shared/b").headers["Cache-Status"]
    assert calls(backend, "/shared/b") == 2


def test_a_stampede_across_instances_makes_one_upstream_call(instances: tuple[Gateway, Gateway],
                                                             backend: Backend) -> None:
    one, two = instances
    with ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(lambda n: get((one, two)[n % 2], "/c/_/slow/0.5?fleet"), range(100)))
    assert [answer.status_code for answer in answers] == [200] * 100
    assert len({answer.content for answer in answers}) == 1
    assert calls(backend, "/_/slow/0.5?fleet") == 1


def test_an_outage_degrades_to_the_local_tier(instances: tuple[Gateway, Gateway], backend: Backend,
                                              redis_server: RedisServer) -> None:
    one, two = instances
    redis_server.stop()
    started = time.monotonic()
    for _ in range(3):
        for gateway in (one, two):
            answers = [get(gateway, f"/c/outage/{n}") for n in range(5)]
            assert [answer.status_code for answer in answers] == [200] * 5
    assert time.monotonic() - started < 10
    # Still a cache, per worker: 30 requests over 5 paths and 4 workers reach the backend at most 20 times.
    assert sum(calls(backend, f"/outage/{n}") for n in range(5)) <= 20
    assert one.log().count("shared cache unreachable; serving from each worker's local tier") == 2  # once a worker
