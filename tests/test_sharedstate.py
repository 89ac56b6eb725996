"""The one reading of a Redis URI and the one outage policy every shared state uses (app/sharedstate)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.config import ConfigError
from app.sharedstate import OutageGuard, Unreachable, parse_redis_uri
from tests.fakes import free_port
from tests.fakes.redisd import RedisServer, SilentServer
from tests.test_metrics import sample


@pytest.mark.parametrize(("uri", "kind", "locations", "service"), [
    ("redis://127.0.0.1:6379/1", "single", (), ""),
    ("rediss://:pw@cache.internal:6380/0", "single", (), ""),
    ("unix:///run/redis.sock?db=2", "single", (), ""),
    ("redis+cluster://10.0.0.1:7000,10.0.0.2:7001", "cluster", (("10.0.0.1", 7000), ("10.0.0.2", 7001)), ""),
    ("redis+cluster://user:pw@node-a:7000", "cluster", (("node-a", 7000),), ""),
    ("redis+sentinel://s1:26379,s2:26379/orders", "sentinel", (("s1", 26379), ("s2", 26379)), "orders"),
    ("redis+sentinel://:pw@s1:26379/orders/", "sentinel", (("s1", 26379),), "orders"),
])
def test_good_uris_are_read_the_same_for_every_shared_state(
        uri: str, kind: str, locations: tuple[tuple[str, int], ...], service: str) -> None:
    target = parse_redis_uri("cache.shared_uri", uri)
    assert (target.kind, target.locations, target.service) == (kind, locations, service)
    assert "pw" not in repr(target)


@pytest.mark.parametrize("uri", [
    "http://localhost", "localhost:6379", "memcached://x:1", "redis://:pw@localhost:notaport/0",
    "redis+cluster://", "redis+cluster://:pw@node-a", "redis+cluster://node-a:0", "redis+cluster://node-a:7000/3",
    "redis+sentinel://:pw@s1:26379", "redis+sentinel://s1:26379,s2/orders", 42,
])
@pytest.mark.parametrize("key", ["cache.shared_uri", "ratelimit.storage_uri"])
def test_bad_uris_stop_the_start_naming_the_key_and_never_the_password(uri: object, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_redis_uri(key, uri)
    assert caught.value.key == key
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize("uri", ["redis+cluster://:pw@node-a", "redis+sentinel://:pw@s1:26379"])
def test_the_rate_limiter_and_the_cache_refuse_the_same_uri(make_app: object, uri: str) -> None:
    for overrides, key in (({"RATELIMIT": {"storage_uri": uri}}, "ratelimit.storage_uri"),
                           ({"CACHE": {"shared_uri": uri}}, "cache.shared_uri")):
        with pytest.raises(ConfigError) as caught:
            make_app(**overrides)  # type: ignore[operator]
        assert caught.value.key == key and "pw" not in str(caught.value)


class _Lines(logging.Handler):
    """The messages one logger wrote (whatever the app's logging setup did to propagation)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def guard_log() -> Iterator[list[str]]:
    handler = _Lines()
    logger = logging.getLogger("frontdesk.test")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


def _guard(retry: float = 0.3, timeout: float = 0.2) -> OutageGuard:
    return OutageGuard("test store", "doing without it", retry, timeout, logger=logging.getLogger("frontdesk.test"))


def test_a_silent_store_costs_one_deadline_then_callers_fail_fast_until_the_retry(guard_log: list[str]) -> None:
    with SilentServer() as silent:
        client = redis.Redis.from_url(silent.url, socket_timeout=5)  # the deadline, not the socket, ends it
        guard = _guard()
        started = time.monotonic()
        with pytest.raises(Unreachable):
            guard.call(client.ping)
        assert 0.2 <= time.monotonic() - started < 0.4
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(Unreachable):
                guard.call(client.ping)
        assert time.monotonic() - started < 0.05  # nobody waits while it is down
        assert not guard.up
    assert guard_log == ["test store unreachable; doing without it"]


def test_one_probe_per_interval_and_one_line_when_it_is_back(tmp_path: Path, guard_log: list[str]) -> None:
    port = free_port()
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2, socket_timeout=0.2)
    now = [0.0]
    guard = OutageGuard("test store", "doing without it", 1.0, 0.2, logger=logging.getLogger("frontdesk.test"),
                        clock=lambda: now[0])
    calls = 0

    def ping() -> object:
        nonlocal calls
        calls += 1
        return client.ping()

    server = RedisServer(tmp_path, port)
    outages = sample("frontdesk_shared_state_outages_total", store="test_store")
    try:
        with pytest.raises(Unreachable):
            guard.call(ping)
        assert sample("frontdesk_shared_state_up", store="test_store") == 0
        assert sample("frontdesk_shared_state_outages_total", store="test_store") == outages + 1
        server.start()
        with pytest.raises(Unreachable):
            guard.call(ping)  # within the interval: not even tried
        assert calls == 1
        now[0] = 1.0  # the retry interval has passed
        assert guard.call(ping) is True and guard.up
        assert calls == 2
        assert sample("frontdesk_shared_state_up", store="test_store") == 1
    finally:
        server.stop()
    assert guard_log == ["test store unreachable; doing without it", "test store reachable again"]


def test_a_probe_first_refreshes_what_the_store_gave_and_a_normal_call_does_not() -> None:
    now, refreshed, answers = [0.0], [], iter([OSError("refused"), "ok", "ok"])

    def work() -> object:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    guard = OutageGuard("test store", "doing without it", 1.0, 0.5, logger=logging.getLogger("frontdesk.test"),
                        clock=lambda: now[0], on_probe=lambda: refreshed.append(now[0]))
    with pytest.raises(Unreachable):
        guard.call(work)
    assert refreshed == []  # the store was up: no refresh before an ordinary call
    now[0] = 1.0
    assert guard.call(work) == "ok" and refreshed == [1.0]  # the probe re-read the cluster's map first
    assert guard.call(work) == "ok" and refreshed == [1.0]
