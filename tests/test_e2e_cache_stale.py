"""Revalidation and stale serving end to end: real gunicorn gevent workers, real local HTTP backends.

One worker per gateway, so "one background refresh" and the breaker's state are those of one cache.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from app.testing.records import Received, Reply
from tests.fakes.backend import Backend
from tests.gateway import Gateway

FRESH = 1.0  # the upstream's max-age in these tests: entries go stale after a second


@dataclass
class World:
    gateway: Gateway
    echo: Backend
    guarded: Backend


def config(echo: Backend, guarded: Backend, directory: Path) -> str:
    return f"""
[upstreams.echo]
targets = ["{echo.url}"]
timeout = 5

[upstreams.users]
targets = ["{echo.url}"]

[upstreams.guarded]
targets = ["{guarded.url}"]
breaker = {{ failure_ratio = 0.5, min_requests = 4, window = 10, open_for = 60 }}

[cache]
journal = "{directory / 'journal'}"

[[routes]]
path = "/c/<path:rest>"
upstream = "echo"
upstream_path = "/{{rest}}"
auth = "public"
cache = {{ ttl = 60, stale_if_error = 60 }}

[[routes]]
path = "/g/<path:rest>"
upstream = "guarded"
upstream_path = "/{{rest}}"
auth = "public"
cache = {{ ttl = 60, stale_if_error = 60 }}
"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with Backend("echo") as echo, Backend("guarded") as guarded:
        gateway = Gateway(tmp_path, config(echo, guarded, tmp_path), workers=1).start()
        try:
            yield World(gateway, echo, guarded)
        finally:
            gateway.stop()


def get(world: World, path: str, **headers: str) -> requests.Response:
    return requests.get(world.gateway.url + path, headers=headers, timeout=10)


def calls(backend: Backend, path: str) -> list[Received]:
    return [received for received in backend.received if received.path == path]


def test_revalidation_sends_the_validator_and_keeps_the_body_on_304(world: World) -> None:
    def origin(received: Received) -> Reply:
        if received.header("If-None-Match") == '"v1"':
            return Reply.of(304, headers=[("ETag", '"v1"'), ("Cache-Control", "max-age=1"), ("X-Version", "2")])
        return Reply.of(200, body=b"the stored body", headers=[("ETag", '"v1"'), ("Cache-Control", "max-age=1"),
                                                               ("X-Version", "1")])

    world.echo.respond_with(origin, path="/doc")
    assert get(world, "/c/doc").content == b"the stored body"
    time.sleep(FRESH + 0.2)
    again = get(world, "/c/doc")
    assert again.content == b"the stored body" and again.headers["X-Version"] == "2"
    assert again.headers["Cache-Status"] == "frontdesk; fwd=stale; fwd-status=304; stored"
    sent = calls(world.echo, "/doc")
    assert [received.header("If-None-Match") for received in sent] == [None, '"v1"']
    assert get(world, "/c/doc").headers["Cache-Status"].startswith("frontdesk; hit")  # fresh again


def test_stale_if_error_across_an_upstream_outage(world: World) -> None:
    world.echo.respond(200, body=b"before the outage", headers=[("Cache-Control", "max-age=1")], path="/o")
    assert get(world, "/c/o").content == b"before the outage"
    world.echo.stop()
    time.sleep(FRESH + 0.2)
    stale = get(world, "/c/o")
    assert (stale.status_code, stale.content) == (200, b"before the outage")
    assert "fwd=stale" in stale.headers["Cache-Status"] and "detail=stale-if-error" in stale.headers["Cache-Status"]
    assert get(world, "/c/never-stored").status_code == 502  # nothing stored: the outage shows


def test_stale_if_error_while_the_breaker_is_open(world: World) -> None:
    world.guarded.respond(200, body=b"guarded", headers=[("Cache-Control", "max-age=1")], path="/item")
    assert get(world, "/g/item").content == b"guarded"
    world.guarded.status = 503
    assert [get(world, f"/g/fail{n}").status_code for n in range(4)] == [503] * 4
    refused = get(world, "/g/other")
    assert refused.status_code == 503 and refused.json()["type"].endswith("/upstream-down")  # the breaker is open
    received = len(world.guarded.received)
    time.sleep(FRESH + 0.2)
    stale = get(world, "/g/item")
    assert (stale.status_code, stale.content) == (200, b"guarded")
    assert "fwd-status=503; detail=stale-if-error" in stale.headers["Cache-Status"]
    assert len(world.guarded.received) == received  # the open breaker let nothing through


def test_stale_while_revalidate_answers_at_once_with_one_background_refresh(world: World) -> None:
    versions = iter(range(1, 100))

    def origin(received: Received) -> Reply:
        version = next(versions)
        return Reply.of(200, body=f"v{version}".encode(), delay=0 if version == 1 else 1.0,
                        headers=[("Cache-Control", "max-age=1, stale-while-revalidate=30")])

    world.echo.respond_with(origin, path="/swr")
    assert get(world, "/c/swr").content == b"v1"
    time.sleep(FRESH + 0.2)
    with requests.Session() as session:
        session.get(world.gateway.url + "/livez", timeout=10)  # connected: time only the answer
        started = time.monotonic()
        first = session.get(world.gateway.url + "/c/swr", timeout=10)
        elapsed = time.monotonic() - started
    assert elapsed < 0.05, f"a stale-while-revalidate answer took {elapsed * 1000:.0f} ms"
    assert first.content == b"v1" and "detail=stale-while-revalidate" in first.headers["Cache-Status"]
    with ThreadPoolExecutor(10) as pool:
        during = list(pool.map(lambda _: get(world, "/c/swr"), range(20)))
    assert {answer.content for answer in during} == {b"v1"}
    time.sleep(1.3)  # the refresh takes a second
    assert len(calls(world.echo, "/swr")) == 2  # exactly one background refresh
    after = get(world, "/c/swr")
    assert after.content == b"v2" and after.headers["Cache-Status"].startswith("frontdesk; hit")


def test_must_revalidate_is_never_served_stale(world: World) -> None:
    world.echo.respond(200, body=b"strict", path="/strict", headers=[
        ("Cache-Control", "max-age=1, must-revalidate, stale-if-error=60, stale-while-revalidate=60"),
        ("ETag", '"s"')])
    assert get(world, "/c/strict").content == b"strict"
    world.echo.stop()
    time.sleep(FRESH + 0.2)
    refused = get(world, "/c/strict")
    assert refused.status_code == 504 and refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["type"].endswith("/revalidation-failed") and b"strict" not in refused.content
