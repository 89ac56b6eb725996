"""Concurrency under real gunicorn gevent workers: hundreds of exchanges at once, none crossed, each logged once."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.event
import pytest

from tests.fakes.backend import Backend, pattern_bytes, pattern_sha256
from tests.gateway import Gateway, echo_toml

pytestmark = pytest.mark.e2e

CLIENTS = 500
ACCESS_FIELDS = {"request_id", "method", "path", "route", "upstream", "target", "status", "duration_ms",
                 "bytes_in", "bytes_out", "client"}


def address(gateway: Gateway) -> tuple[str, int]:
    host, port = urlsplit(gateway.url).netloc.split(":")
    return host, int(port)


@contextmanager
def connect(gateway: Gateway, timeout: float = 60) -> Iterator[http.client.HTTPConnection]:
    """A client connection of its own, always closed (an idle keep-alive one would hold up the gateway's stop)."""
    connection = http.client.HTTPConnection(*address(gateway), timeout=timeout)
    try:
        yield connection
    finally:
        connection.close()


def access_lines(gateway: Gateway) -> list[dict[str, Any]]:
    """The gateway's access log so far, one dict per line."""
    lines = []
    for line in gateway.log().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("logger") == "frontdesk.access":
                lines.append(record)
    return lines


@dataclass(frozen=True)
class Exchange:
    """One client's request and what it got back."""

    index: int
    request_id: str
    body: bytes
    status: int
    response_request_id: str | None
    response: bytes


def test_500_concurrent_posts_each_get_exactly_their_own_answer(start_gateway: Callable[..., Gateway],
                                                                backend: Backend) -> None:
    gateway = start_gateway(echo_toml(backend.url), workers=2)
    connected = 0
    all_connected = gevent.event.Event()
    go = gevent.event.Event()

    def client(index: int) -> Exchange:
        nonlocal connected
        request_id = f"conc-{index}-{uuid.uuid4().hex[:12]}"
        # Distinct bodies of different sizes, some spanning several socket reads.
        body = f"<{index}:{uuid.uuid4().hex}>".encode() * (1 + index % 11) ** 3
        with connect(gateway) as connection:
            connection.connect()
            connected += 1
            if connected == CLIENTS:
                all_connected.set()
            go.wait()  # every connection is open before the first request goes out
            connection.request("POST", f"/c/{index}", body=body,
                               headers={"X-Request-ID": request_id, "Content-Type": "application/octet-stream"})
            response = connection.getresponse()
            return Exchange(index, request_id, body, response.status, response.getheader("X-Request-ID"),
                            response.read())

    greenlets = [gevent.spawn(client, index) for index in range(CLIENTS)]
    assert all_connected.wait(30), f"only {connected} of {CLIENTS} clients connected"
    go.set()
    gevent.joinall(greenlets, timeout=90)
    failures = [repr(greenlet.exception) for greenlet in greenlets if not greenlet.successful()]
    assert failures == [], f"{len(failures)} clients failed, e.g. {failures[:3]}"
    exchanges: list[Exchange] = [greenlet.value for greenlet in greenlets]

    # Every client got exactly its own answer.
    for exchange in exchanges:
        assert exchange.status == 200, exchange
        assert exchange.response_request_id == exchange.request_id
        echoed = json.loads(exchange.response)
        assert echoed["target"] == f"/c/{exchange.index}"
        assert echoed["method"] == "POST"
        assert echoed["body"].encode() == exchange.body
        assert echoed["framing"] == "content-length"
        assert [value for name, value in echoed["headers"] if name.lower() == "x-request-id"] == [exchange.request_id]

    # The backend saw each request exactly once, with its own body and id.
    received = backend.wait_for(CLIENTS, timeout=10)
    assert len(received) == CLIENTS
    assert sorted(seen.body for seen in received) == sorted(exchange.body for exchange in exchanges)
    sent = {exchange.request_id: exchange for exchange in exchanges}
    for seen in received:
        request_id = seen.header("X-Request-ID")
        assert request_id is not None and request_id in sent
        assert seen.body == sent[request_id].body
        assert seen.target == f"/c/{sent[request_id].index}"

    # One access log line per request, complete. Lines are written as each body finishes: wait for them.
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in access_lines(gateway) if str(line.get("path", "")).startswith("/c/")]
        if len(lines) >= CLIENTS or time.monotonic() > deadline:
            break
        gevent.sleep(0.1)
    counts = Counter(line["request_id"] for line in lines)
    assert len(lines) == CLIENTS, f"{len(lines)} access lines for {CLIENTS} requests"
    assert set(counts) == set(sent) and set(counts.values()) == {1}
    for line in lines:
        exchange = sent[line["request_id"]]
        assert ACCESS_FIELDS <= set(line), line
        assert line["level"] == "info"
        assert line["method"] == "POST"
        assert line["path"] == f"/c/{exchange.index}"
        assert line["route"] == "/<path:rest>"
        assert line["upstream"] == "echo"
        assert line["target"] == backend.url
        assert line["status"] == 200
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
        assert line["bytes_in"] == len(exchange.body)
        assert line["bytes_out"] == len(exchange.response)
        assert line["client"] == "127.0.0.1"
    assert len(backend.received) == CLIENTS  # and nothing was retried behind the clients' backs
    assert "Traceback" not in gateway.log()


def test_a_stalled_download_does_not_hold_up_its_worker(start_gateway: Callable[..., Gateway],
                                                        backend: Backend) -> None:
    """One worker: while a client reads a large body not at all, other requests on the same worker go through."""
    gateway = start_gateway(echo_toml(backend.url), workers=1)
    size = 64 * 1024 * 1024
    with connect(gateway) as stalled:
        stalled.request("GET", f"/_/bytes/{size}")
        download = stalled.getresponse()
        assert download.status == 200
        assert download.read(1000) == pattern_bytes(1000)
        # The download is now stuck on full socket buffers, its greenlet waiting to write.

        def small(index: int) -> int:
            with connect(gateway, timeout=10) as connection:
                connection.request("GET", f"/small/{index}")
                response = connection.getresponse()
                response.read()
                return response.status

        started = time.monotonic()
        others = [gevent.spawn(small, index) for index in range(50)]
        gevent.joinall(others, timeout=20)
        assert [greenlet.value for greenlet in others] == [200] * 50
        assert time.monotonic() - started < 10

        digest = hashlib.sha256(pattern_bytes(1000))
        total = 1000
        while chunk := download.read(1024 * 1024):
            digest.update(chunk)
            total += len(chunk)
    assert total == size
    assert digest.hexdigest() == pattern_sha256(size)


def test_a_connection_with_requests_waiting_takes_turns(start_gateway: Callable[..., Gateway],
                                                        backend: Backend) -> None:
    """One worker: a client whose next requests are already waiting is not served on and on while another waits."""
    gateway = start_gateway(echo_toml(backend.url), workers=1)
    burst = 200
    earlier = len(access_lines(gateway))  # the start's own /livez checks
    with socket.create_connection(address(gateway)) as busy, socket.create_connection(address(gateway)) as other:
        # Pipelined: every request of the burst is in the worker's buffer at once, so reading the
        # next one never waits (as for a fast client under load, whose next request is already there).
        busy.sendall(b"".join(b"GET /livez HTTP/1.1\r\nHost: gateway\r\n\r\n" for _ in range(burst)))
        busy.recv(1)  # the burst is being served
        other.sendall(b"GET /readyz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := other.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ")
        busy.shutdown(socket.SHUT_WR)
        while busy.recv(65536):
            pass  # every answer of the burst read, so the access log is complete
    routes = [line["route"] for line in access_lines(gateway)[earlier:]]
    assert sorted(set(routes)) == ["/livez", "/readyz"] and routes.count("/livez") == burst
    # Served as soon as it arrived, between two requests of the burst, not after the whole burst.
    assert routes.index("/readyz") < burst
