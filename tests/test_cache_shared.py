"""The shared tier on one Redis, a Redis Cluster and a Sentinel-watched Redis: entries, locks, purges, outages."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from flask import Blueprint

from app.auth import public
from app.caching import cache, cache_response
from app.caching.entry import CachedResponse
from app.caching.shared import PATHS, SharedStore
from app.sharedstate import parse_redis_uri
from tests.conftest import AppFactory
from tests.fakes.redisd import ClusterServers, RedisServer, SentinelServers


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterServers]:
    servers = ClusterServers(tmp_path_factory.mktemp("cluster")).start()
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelServers]:
    servers = SentinelServers(tmp_path_factory.mktemp("sentinel")).start()
    yield servers
    servers.stop()


@pytest.fixture(params=["single", "cluster", "sentinel"])
def uri(request: pytest.FixtureRequest) -> str:
    """The same tests on each deployment (fixtures start only what the parameter needs)."""
    name = {"single": "redis_server", "cluster": "cluster", "sentinel": "sentinel"}[request.param]
    server: RedisServer | ClusterServers | SentinelServers = request.getfixturevalue(name)
    return server.url


def store(uri: str, retry: float = 1.0) -> SharedStore:
    return SharedStore(parse_redis_uri("cache.shared_uri", uri), timeout=1.0, retry=retry)


def entry(path: str, tags: tuple[str, ...] = (), ttl: float = 60) -> CachedResponse:
    now = time.time()
    return CachedResponse(status=200, headers=(("Content-Length", "2"),), body=b"ok", requested_at=now,
                          expires=now + ttl, initial_age=0, path=path, tags=tags, etag=None, fresh_until=now + ttl)


def raw(tier: SharedStore) -> Any:
    """The tier's own client, to read what it really wrote."""
    return tier._redis()


def test_entries_purged_by_path_prefix_and_tag_on_every_deployment(uri: str) -> None:
    tier, run = store(uri), uuid.uuid4().hex
    keys = {name: f"{run}-{name}" for name in ("a", "b", "c", "d")}
    tier.set(keys["a"], entry(f"/{run}/p/a", ("red",)))
    tier.set(keys["b"], entry(f"/{run}/p/b"))
    tier.set(keys["c"], entry(f"/{run}/q", (f"tag-{run}",)))
    tier.set(keys["d"], entry(f"/{run}/pq"))
    assert all(tier.get(key) is not None for key in keys.values())
    assert tier.purge("prefix", f"/{run}/p/") == 4  # two entries and two path indexes
    assert tier.get(keys["a"]) is None and tier.get(keys["b"]) is None
    assert tier.get(keys["d"]) is not None  # /pq is not under /p/
    assert raw(tier).exists(f"frontdesk:cache:{keys['a']}", f"frontdesk:cache:{keys['b']}") == 0
    assert tier.purge("tag", f"tag-{run}") == 2
    assert tier.get(keys["c"]) is None
    assert tier.purge("path", f"/{run}/pq") == 2
    assert tier.get(keys["d"]) is None
    assert tier.purge("path", f"/{run}/pq") == 0


def test_expired_paths_leave_the_path_index_on_a_later_store(uri: str) -> None:
    tier, run = store(uri), uuid.uuid4().hex
    tier.set(f"{run}-old", entry(f"/{run}/old", ttl=0.2))
    assert raw(tier).zscore(PATHS[0], f"/{run}/old") == 0
    time.sleep(0.3)
    tier.set(f"{run}-new", entry(f"/{run}/new"))
    assert raw(tier).zscore(PATHS[0], f"/{run}/old") is None
    assert raw(tier).zscore(PATHS[1], f"/{run}/old") is None
    assert raw(tier).zscore(PATHS[0], f"/{run}/new") == 0


def test_one_leader_per_key_across_workers_and_only_the_holder_releases(uri: str) -> None:
    first, second, key = store(uri), store(uri), uuid.uuid4().hex
    assert first.claim(key, 5) == "lead"
    assert second.claim(key, 5) == "busy"
    second.release(key, True, 0)  # not its lock: nothing happens
    assert second.claim(key, 5) == "busy"
    first.release(key, True, 0)
    assert second.claim(key, 0.2) == "lead"
    time.sleep(0.3)  # the second worker's lock expired (it hung) and the first takes the key again
    assert first.claim(key, 5) == "lead"
    second.release(key, True, 0)  # late: the first worker's lock stays
    assert second.claim(key, 5) == "busy"
    first.release(key, False, 1.0)  # an answer that could not be shared: callers go upstream for a while
    assert second.claim(key, 5) == "pass"


def test_a_leader_that_raises_releases_the_fleet_lock(make_app: AppFactory, tmp_path: Path, uri: str) -> None:
    bp = Blueprint("broken", __name__)
    held: list[str] = []

    @bp.get("/broken")
    @public
    @cache_response(ttl=30)
    def broken() -> Any:
        tier = cache.runtime().shared
        assert tier is not None
        held.extend(tier._held)
        assert all(raw(tier).exists(f"frontdesk:cache:lock:{key}") for key in held)
        raise RuntimeError("a bug in the view")

    app = make_app(blueprints=(bp,), CACHE={"journal": str(tmp_path / "j"), "shared_uri": uri,
                                            "shared_timeout": 1.0})
    shared = cache.runtime(app).shared
    assert shared is not None
    tier = shared
    assert app.test_client().get("/broken").status_code == 500
    assert len(held) == 1  # the fleet lock was held while the view ran
    assert tier._held == {}
    assert raw(tier).exists(f"frontdesk:cache:lock:{held[0]}") == 0
    assert store(uri).claim(held[0], 5) == "lead"  # another worker is not kept waiting


def test_a_stampede_on_two_apps_makes_one_upstream_call(make_app: AppFactory, tmp_path: Path, uri: str) -> None:
    bp = Blueprint("slow", __name__)
    calls: list[int] = []
    # A fresh key per run in the query: the route template is a metrics label, kept free of random names.
    path = f"/slow?run={uuid.uuid4().hex}"

    @bp.get("/slow")
    @public
    @cache_response(ttl=30)
    def slow() -> Any:
        calls.append(1)
        gevent.sleep(0.3)
        return "once", 200, {}

    # Two apps, two journals: two instances that only Redis connects.
    apps = [make_app(blueprints=(bp,),
                     CACHE={"journal": str(tmp_path / f"j{n}"), "shared_uri": uri, "shared_timeout": 1.0})
            for n in range(2)]
    greenlets = [gevent.spawn(apps[n % 2].test_client().get, path) for n in range(20)]
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    assert [greenlet.value.status_code for greenlet in greenlets] == [200] * 20
    assert {greenlet.value.data for greenlet in greenlets} == {b"once"}
    assert len(calls) == 1
