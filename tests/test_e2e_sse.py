"""Server-Sent Events through real gunicorn gevent workers: event by event, never held back, never cut by heartbeats."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable, Iterator

import gevent
import pytest

from tests.gateway import Gateway

pytestmark = pytest.mark.e2e

HEARTBEATS = 6
BEAT = 0.3  # seconds between heartbeats; the upstream's read_timeout (1 s) is longer, the whole stream (1.8 s) not


def _serve(connection: socket.socket) -> None:
    with connection:
        request = b""
        while b"\r\n\r\n" not in request:
            request += connection.recv(4096)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: max-age=60\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n")

        def chunk(data: bytes) -> None:
            connection.sendall(b"%X\r\n%s\r\n" % (len(data), data))

        chunk(b"id: 1\ndata: first\n\n")
        for _ in range(HEARTBEATS):
            gevent.sleep(BEAT)
            chunk(b": heartbeat\n\n")
        chunk(b"id: 2\ndata: last\n\n")
        connection.sendall(b"0\r\n\r\n")


@pytest.fixture
def sse_upstream() -> Iterator[str]:
    """An upstream that streams one event, heartbeats for 1.8 s, then a last event (one connection at a time)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            connection, _ = listener.accept()
            gevent.spawn(_serve, connection)

    acceptor = gevent.spawn(accept)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    acceptor.kill()
    listener.close()


def test_events_arrive_one_by_one_and_heartbeats_keep_the_stream_open(
        start_gateway: Callable[..., Gateway], sse_upstream: str) -> None:
    gateway = start_gateway(f"""
[upstreams.events]
targets = ["{sse_upstream}"]
read_timeout = 1
timeout = 5

[[routes]]
path = "/events"
upstream = "events"
auth = "public"
cache = {{ ttl = 60 }}
""", workers=1)
    host, port = gateway.url.removeprefix("http://").split(":")
    for attempt in range(2):  # the second time too: the first stream was not stored by the cache
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            started = time.monotonic()
            connection.request("GET", "/events", headers={"Accept": "text/event-stream"})
            response = connection.getresponse()
            assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
            first = response.read1(65536)
            first_after = time.monotonic() - started
            rest = response.read()
            ended_after = time.monotonic() - started
        finally:
            connection.close()
        assert first == b"id: 1\ndata: first\n\n", first
        assert first_after < 0.5 * ended_after, (first_after, ended_after)  # not held until the stream ended
        assert ended_after >= HEARTBEATS * BEAT  # read_timeout (1 s) did not cut it
        assert rest.endswith(b"id: 2\ndata: last\n\n") and rest.count(b": heartbeat") == HEARTBEATS
        assert response.getheader("Cache-Status", "").find("stored") == -1, attempt
