"""Implicit pipelining of the limit scripts: shared round trips, each request its own answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gevent
import pytest
import redis
from redis.client import Pipeline

from app.ratelimit.pipeline import ScriptPipeline
from tests.fakes import free_port
from tests.fakes.backend import Backend
from tests.fakes.redisd import RedisServer
from tests.conftest import AppFactory
from tests.test_ratelimit import redis_app

# Adds ARGV[1] to KEYS[1]; "bad" is refused by Redis itself (a per-command error).
ADD = """
if ARGV[1] == 'bad' then return redis.error_reply('bad amount') end
return redis.call('incrby', KEYS[1], ARGV[1])
"""


def count(client: redis.Redis, key: str) -> int:
    """The counter at ``key`` (0 when unset)."""
    value: bytes | None = client.get(key)  # type: ignore[assignment]  # redis-py types sync and async alike
    return int(value or 0)


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The size of every pipeline sent (the real execute runs; only its calls are recorded)."""
    sizes: list[int] = []
    execute = Pipeline.execute

    def recorded(self: Pipeline, raise_on_error: bool = True) -> list[Any]:
        sizes.append(len(self.command_stack))
        return execute(self, raise_on_error)

    monkeypatch.setattr(Pipeline, "execute", recorded)
    yield sizes


def test_calls_waiting_together_share_one_round_trip_and_get_their_own_answers(
        redis_server: RedisServer, round_trips: list[int]) -> None:
    client = redis_server.client()
    script = client.register_script(ADD)
    pipeline = ScriptPipeline(client)
    keys = [f"pipeline-test:share:{n}" for n in range(20)]
    client.delete(*keys)
    calls = [gevent.spawn(pipeline.run, script, [key], [n + 1]) for n, key in enumerate(keys)]
    gevent.joinall(calls, raise_error=True)
    assert [call.value for call in calls] == list(range(1, 21))
    assert [count(client, key) for key in keys] == list(range(1, 21))
    # The first send finds the script missing (NOSCRIPT in each place, loaded by a plain call);
    # after that, twenty waiting calls are one pipeline of twenty.
    round_trips.clear()
    calls = [gevent.spawn(pipeline.run, script, [key], [100]) for key in keys]
    gevent.joinall(calls, raise_error=True)
    assert [call.value for call in calls] == [n + 101 for n in range(20)]
    assert round_trips == [20]


def test_a_lone_call_does_not_wait_for_company(redis_server: RedisServer, round_trips: list[int]) -> None:
    client = redis_server.client()
    script = client.register_script(ADD)
    client.delete("pipeline-test:alone")
    pipeline = ScriptPipeline(client)
    with gevent.Timeout(2):
        assert pipeline.run(script, ["pipeline-test:alone"], [5]) == 5
        assert pipeline.run(script, ["pipeline-test:alone"], [5]) == 10
    assert round_trips == [1, 1]


def test_batches_are_bounded(redis_server: RedisServer, round_trips: list[int]) -> None:
    client = redis_server.client()
    script = client.register_script(ADD)
    script(["pipeline-test:bounded"], [0])  # loaded: no NOSCRIPT retries below
    pipeline = ScriptPipeline(client, max_batch=4)
    calls = [gevent.spawn(pipeline.run, script, ["pipeline-test:bounded"], [1]) for _ in range(10)]
    gevent.joinall(calls, raise_error=True)
    assert sorted(call.value for call in calls)[-1] == count(client, "pipeline-test:bounded")
    assert round_trips == [4, 4, 2]


def test_one_failing_script_fails_only_its_own_call(redis_server: RedisServer) -> None:
    client = redis_server.client()
    script = client.register_script(ADD)
    script(["pipeline-test:errors"], [0])
    pipeline = ScriptPipeline(client)
    amounts: list[Any] = [1, "bad", 2]
    calls = [gevent.spawn(pipeline.run, script, ["pipeline-test:errors"], [amount]) for amount in amounts]
    gevent.joinall(calls)
    assert calls[0].successful() and calls[2].successful()
    assert isinstance(calls[1].exception, redis.ResponseError) and "bad amount" in str(calls[1].exception)


def test_a_flushed_script_cache_is_loaded_again(redis_server: RedisServer) -> None:
    client = redis_server.client()
    script = client.register_script(ADD)
    client.delete("pipeline-test:flushed")
    pipeline = ScriptPipeline(client)
    assert pipeline.run(script, ["pipeline-test:flushed"], [3]) == 3
    client.script_flush()  # what a Redis restart does to the cache
    assert pipeline.run(script, ["pipeline-test:flushed"], [4]) == 7


def test_an_unreachable_redis_fails_every_call_of_the_batch_and_the_next_batch_tries_again(
        redis_server: RedisServer) -> None:
    client = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1, socket_timeout=1)
    script = client.register_script(ADD)
    pipeline = ScriptPipeline(client)
    calls = [gevent.spawn(pipeline.run, script, ["pipeline-test:down"], [1]) for _ in range(3)]
    gevent.joinall(calls)
    assert all(isinstance(call.exception, redis.ConnectionError) for call in calls)
    # The sender is gone with its batch: a later call starts a new one (here against a live server).
    pipeline.client = redis_server.client()
    pipeline.client.delete("pipeline-test:down")
    with gevent.Timeout(2):
        assert pipeline.run(script, ["pipeline-test:down"], [1]) == 1


def test_concurrent_requests_share_round_trips_and_the_counts_stay_exact(
        make_app: AppFactory, backend: Backend, redis_server: RedisServer, round_trips: list[int]) -> None:
    app = redis_app(make_app, backend, redis_server.url, limits=["10/minute"])
    client = app.test_client()
    requests = [gevent.spawn(client.get, "/a") for _ in range(12)]
    gevent.joinall(requests, raise_error=True)
    answers = [request.value for request in requests]
    assert sorted(answer.status_code for answer in answers) == [200] * 10 + [429] * 2
    # Ten hits were counted, each request saw its own place in the window.
    remaining = sorted(int(answer.headers["RateLimit"].split(";r=")[1].split(";")[0])
                       for answer in answers if answer.status_code == 200)
    assert remaining == list(range(10))
    assert len(backend.received) == 10
    assert len(round_trips) < 12
