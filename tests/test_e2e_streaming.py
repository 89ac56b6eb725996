"""Streaming under real gunicorn gevent workers: bodies of any size pass byte-exact in bounded memory."""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import gevent
import pytest

from tests.fakes.backend import GZIP_BODY, Backend, pattern_bytes, pattern_sha256
from tests.gateway import Gateway, echo_toml

pytestmark = pytest.mark.e2e

GiB = 1024 * 1024 * 1024
MiB = 1024 * 1024
BLOCK = 64 * 1024
# How much a worker's resident memory may grow while it moves a body of any size.
RSS_BOUND = 50 * MiB


# /_/slow/ goes to ``hasty`` (0.5 s deadline); everything else to ``echo`` (60 s).
HASTY = """
[upstreams.hasty]
targets = ["{url}"]
timeout = 0.5

[[routes]]
path = "/_/slow/<path:rest>"
upstream = "hasty"
auth = "public"
"""


def gateway_config(backend: Backend, echo: str = "") -> str:
    """The echo config (``echo`` lines added to its upstream table) plus the hasty upstream."""
    # No body limit: these tests stream bodies of gigabytes (the 10 MiB default is tested in test_e2e_edge).
    return echo_toml(backend.url, upstream=echo, extra=HASTY.format(url=backend.url) + "\n[edge]\nmax_body_bytes = 0\n")


@pytest.fixture
def gateway(start_gateway: Callable[..., Gateway], backend: Backend) -> Gateway:
    """Two gevent workers forwarding to the echo backend."""
    return start_gateway(gateway_config(backend))


@contextmanager
def connect(gateway: Gateway, timeout: float = 60) -> Iterator[http.client.HTTPConnection]:
    """A client connection of its own, always closed (an idle keep-alive one would hold up the gateway's stop)."""
    host, port = urlsplit(gateway.url).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        yield connection
    finally:
        connection.close()


def drain(response: http.client.HTTPResponse, size: int = MiB) -> tuple[int, str]:
    """Read a body to its end in bounded pieces: its length and hex SHA-256."""
    digest = hashlib.sha256()
    total = 0
    buffer = memoryview(bytearray(size))
    while True:
        count = response.readinto(buffer)
        if not count:
            return total, digest.hexdigest()
        digest.update(buffer[:count])
        total += count


def pattern_blocks(size: int) -> Iterator[bytes]:
    """``pattern_bytes(size)`` in 64 KiB blocks, never more than one in memory."""
    block = pattern_bytes(BLOCK)  # a multiple of the 256-byte pattern: every full block is the same
    full, rest = divmod(size, BLOCK)
    for _ in range(full):
        yield block
    if rest:
        yield block[:rest]


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class RSSWatch:
    """Samples every worker's RSS while a transfer runs; ``growth`` is each one's peak over its value before."""

    def __init__(self, gateway: Gateway, interval: float = 0.05) -> None:
        self.pids = gateway.worker_pids()
        self.interval = interval
        self.before = {pid: rss(pid) for pid in self.pids}
        self.peak = dict(self.before)
        self.samples = 0
        self._sampler: Any = None

    def _sample(self) -> None:
        for pid in self.pids:
            self.peak[pid] = max(self.peak[pid], rss(pid))
        self.samples += 1

    def _run(self) -> None:
        while True:
            self._sample()
            gevent.sleep(self.interval)

    def __enter__(self) -> RSSWatch:
        self._sampler = gevent.spawn(self._run)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._sampler.kill()
        self._sample()

    def growth(self) -> dict[int, int]:
        """Peak minus before, per worker pid."""
        return {pid: self.peak[pid] - self.before[pid] for pid in self.pids}

    def assert_bounded(self) -> None:
        # The sampler ran throughout, so a peak in the middle of the transfer cannot slip by.
        assert self.samples >= 5, f"only {self.samples} RSS samples"
        growth = self.growth()
        assert all(grown < RSS_BOUND for grown in growth.values()), (
            f"worker RSS grew by {[f'{grown / MiB:.1f} MiB' for grown in growth.values()]}")


def warm_up(gateway: Gateway) -> None:
    """Give every worker its first requests (imports, pools, buffers) before its RSS counts as a baseline."""
    for _ in range(8):
        with connect(gateway) as connection:
            connection.request("POST", "/_/sink", body=pattern_bytes(MiB))
            assert json.loads(connection.getresponse().read())["body_length"] == MiB
            connection.request("GET", f"/_/bytes/{MiB}")
            assert drain(connection.getresponse())[0] == MiB


# --- request bodies --------------------------------------------------------------------------


def test_1gib_upload_with_content_length_streams_in_bounded_memory(gateway: Gateway, backend: Backend) -> None:
    warm_up(gateway)
    backend.clear()
    expected = pattern_sha256(GiB)
    with RSSWatch(gateway) as watch, connect(gateway) as connection:
        connection.request("POST", "/_/sink", body=pattern_blocks(GiB),
                           headers={"Content-Length": str(GiB), "Content-Type": "application/octet-stream"})
        response = connection.getresponse()
        answer = json.loads(response.read())
    assert response.status == 200
    assert answer == {"body_length": GiB, "sha256": expected}
    [seen] = backend.wait_for(1)
    assert seen.framing == "content-length"
    assert seen.header_all("Content-Length") == [str(GiB)]
    assert seen.header("Transfer-Encoding") is None
    watch.assert_bounded()


def chunky_body(seed: int, total: int) -> tuple[Iterator[bytes], Callable[[], str]]:
    """A body of ``total`` random bytes in chunks of irregular sizes, and its SHA-256 once it has been sent."""
    rng = random.Random(seed)
    digest = hashlib.sha256()

    def chunks() -> Iterator[bytes]:
        remaining = total
        sizes = (1, 7, 1000, BLOCK - 1, BLOCK, BLOCK + 1, 300_000)
        while remaining:
            chunk = rng.randbytes(min(remaining, rng.choice(sizes)))
            digest.update(chunk)
            remaining -= len(chunk)
            yield chunk

    return chunks(), digest.hexdigest


def test_chunked_upload_arrives_byte_exact_with_one_framing(gateway: Gateway, backend: Backend) -> None:
    total = 32 * MiB + 3
    body, sha256 = chunky_body(seed=7, total=total)
    with connect(gateway) as connection:
        # No Content-Length with an iterable body: http.client sends Transfer-Encoding: chunked.
        connection.request("PUT", "/_/sink", body=body)
        response = connection.getresponse()
        answer = json.loads(response.read())
    assert response.status == 200
    assert answer == {"body_length": total, "sha256": sha256()}
    [seen] = backend.wait_for(1)
    assert seen.method == "PUT"
    assert seen.framing == "chunked"
    assert seen.header_all("Transfer-Encoding") == ["chunked"]
    assert seen.header("Content-Length") is None


def test_small_chunked_upload_is_echoed_exactly(gateway: Gateway, backend: Backend) -> None:
    parts = [b"first,", b"", b"second,", b"\x00\xff\r\n0\r\n\r\n", b"last"]
    with connect(gateway) as connection:
        connection.request("POST", "/echo", body=iter(parts), encode_chunked=True,
                           headers={"Transfer-Encoding": "chunked"})
        response = connection.getresponse()
        response.read()
    assert response.status == 200
    [seen] = backend.wait_for(1)
    assert seen.framing == "chunked"
    assert seen.body == b"".join(parts)


# --- response bodies -------------------------------------------------------------------------


def test_1gib_download_streams_in_bounded_memory(gateway: Gateway, backend: Backend) -> None:
    warm_up(gateway)
    expected = pattern_sha256(GiB)
    with RSSWatch(gateway) as watch, connect(gateway) as connection:
        connection.request("GET", f"/_/bytes/{GiB}")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Length") == str(GiB)
        assert response.getheader("Transfer-Encoding") is None
        length, sha256 = drain(response)
    assert (length, sha256) == (GiB, expected)
    watch.assert_bounded()


def test_chunked_download_streams_exactly_in_bounded_memory(gateway: Gateway) -> None:
    size = 256 * MiB + 12345
    warm_up(gateway)
    with RSSWatch(gateway) as watch, connect(gateway) as connection:
        connection.request("GET", f"/_/bytes/{size}?chunked=1")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Length") is None
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert drain(response) == (size, pattern_sha256(size))
    watch.assert_bounded()


def test_gzip_body_passes_byte_exact(gateway: Gateway) -> None:
    with connect(gateway) as connection:
        connection.request("GET", "/_/gzip", headers={"Accept-Encoding": "gzip"})
        response = connection.getresponse()
        body = response.read()  # http.client never decodes: these are the bytes on the wire
    assert response.status == 200
    assert response.getheader("Content-Encoding") == "gzip"
    assert response.getheader("Content-Length") == str(len(GZIP_BODY))
    assert response.getheader("Vary") == "Accept-Encoding"
    assert body == GZIP_BODY


def test_two_set_cookie_headers_stay_separate(gateway: Gateway) -> None:
    with connect(gateway) as connection:
        connection.request("GET", "/_/cookies")
        response = connection.getresponse()
        response.read()
    assert response.status == 200
    assert response.msg.get_all("Set-Cookie") == ["a=1; Path=/; HttpOnly", "b=2; Path=/; Secure"]
    assert [value for name, value in response.getheaders() if name.lower() == "set-cookie"] == [
        "a=1; Path=/; HttpOnly", "b=2; Path=/; Secure"]


# --- failures --------------------------------------------------------------------------------


def test_truncated_upstream_body_is_never_a_complete_response(gateway: Gateway) -> None:
    """The upstream promises 1000 bytes, sends 10 and resets: the client must be able to tell."""
    with connect(gateway, timeout=10) as connection:
        connection.request("GET", "/_/truncate", headers={"X-Request-ID": "truncated-1"})
        try:
            response = connection.getresponse()
        except ConnectionError:
            # The body broke off before any of it went out: the connection closes with no response at all.
            broke_off = True
        else:
            if response.status == 200:
                # The head had already gone out: the body must break off, not end as if whole.
                assert response.getheader("Content-Length") == "1000"
                with pytest.raises((http.client.IncompleteRead, ConnectionError)):
                    response.read()
                broke_off = True
            else:
                # Or the reset reached the gateway before the head did: an honest error in its place.
                assert response.status == 502
                response.read()
                broke_off = False
    if broke_off:
        wait_for_log(gateway, message="upstream body broke off", request_id="truncated-1")
    # The worker that served it is unharmed.
    with connect(gateway) as connection:
        connection.request("GET", "/after")
        assert connection.getresponse().status == 200


def wait_for_log(gateway: Gateway, timeout: float = 5.0, **fields: str) -> None:
    """Wait until the gateway has written a JSON log line with all of ``fields``."""
    deadline = time.monotonic() + timeout

    def logged() -> bool:
        lines = [json.loads(text) for text in gateway.log().splitlines() if text.startswith("{")]
        return any(all(line.get(key) == value for key, value in fields.items()) for line in lines)

    while not logged():
        assert time.monotonic() < deadline, f"{fields!r} not logged:\n{gateway.log()}"
        gevent.sleep(0.05)


def test_upstream_deadline_answers_504_problem_quickly(gateway: Gateway, backend: Backend) -> None:
    started = time.monotonic()
    with connect(gateway) as connection:
        connection.request("GET", "/_/slow/3", headers={"X-Request-ID": "deadline-check-1"})
        response = connection.getresponse()
        body = response.read()
    elapsed = time.monotonic() - started
    assert response.status == 504
    assert response.getheader("Content-Type") == "application/problem+json"
    assert response.getheader("X-Request-ID") == "deadline-check-1"
    problem = json.loads(body)
    assert problem["status"] == 504
    assert problem["request_id"] == "deadline-check-1"
    assert problem["type"].endswith("/upstream-timeout")
    assert elapsed < 2.0, f"504 after {elapsed:.2f} s (deadline 0.5 s, upstream answers at 3 s)"
    assert backend.wait_for(1)[0].target == "/_/slow/3"


# --- clients that go away ----------------------------------------------------------------------


def raw_connection(gateway: Gateway) -> socket.socket:
    """A plain TCP connection to the gateway, for requests no HTTP client would send."""
    host, port = urlsplit(gateway.url).netloc.split(":")
    connection = socket.create_connection((host, int(port)), timeout=10)
    return connection


def wait_for_access_line(gateway: Gateway, path: str, timeout: float = 10.0) -> dict[str, Any]:
    """The access log line of the (one) request to ``path``, once it is written."""
    deadline = time.monotonic() + timeout
    while True:
        for line in gateway.log().splitlines():
            if line.startswith("{"):
                record: dict[str, Any] = json.loads(line)
                if record.get("logger") == "frontdesk.access" and record.get("path") == path:
                    return record
        assert time.monotonic() < deadline, f"no access line for {path}:\n{gateway.log()}"
        gevent.sleep(0.05)


def answers_within(gateway: Gateway, seconds: float) -> list[int]:
    """GET /after until it answers 200 or ``seconds`` pass; every status seen."""
    deadline = time.monotonic() + seconds
    statuses: list[int] = []
    while not statuses or (statuses[-1] != 200 and time.monotonic() < deadline):
        with connect(gateway, timeout=10) as connection:
            connection.request("GET", "/after")
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
        if statuses[-1] != 200:
            gevent.sleep(0.1)
    return statuses


CUT_UPLOADS = {
    # Headers and the part of the body sent before the client disappears.
    "chunked": b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n100\r\n" + b"x" * 50,
    "content-length": b"Content-Length: 1000\r\n\r\n" + b"y" * 100,
}


def send_cut_upload(gateway: Gateway, path: str, framing: str) -> None:
    """Start an upload, then close the connection partway through the body."""
    with raw_connection(gateway) as connection:
        connection.sendall(f"POST {path} HTTP/1.1\r\nHost: frontdesk.test\r\n".encode() + CUT_UPLOADS[framing])
        gevent.sleep(0.2)  # the gateway has started forwarding


@pytest.mark.parametrize("framing", CUT_UPLOADS)
def test_upload_cut_by_the_client_never_reaches_upstream_as_complete(start_gateway: Callable[..., Gateway],
                                                                     backend: Backend, framing: str) -> None:
    gateway = start_gateway(gateway_config(backend, echo="read_timeout = 1"))
    send_cut_upload(gateway, "/cut", framing)
    line = wait_for_access_line(gateway, "/cut")  # the gateway is done with it
    assert line["status"] != 200
    # The backend records only requests it read to their end: a truncated body passed on as whole
    # (a chunked one closed with a last chunk, or short bytes under a Content-Length) would show here.
    assert backend.received == []


# Content-Length once failed here: gunicorn's input ends a cut body quietly, and the short body
# went upstream under the full Content-Length, holding the slot for read_timeout.
@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_upload_cut_by_the_client_frees_its_upstream_slot_at_once(start_gateway: Callable[..., Gateway],
                                                                  backend: Backend, framing: str) -> None:
    gateway = start_gateway(gateway_config(backend, echo="max_in_flight = 1\nread_timeout = 5"), workers=1)
    send_cut_upload(gateway, "/cut", framing)
    statuses = answers_within(gateway, 2.0)
    assert statuses[-1] == 200, f"the one upstream slot stayed taken: {statuses}"


def test_abandoned_download_frees_its_upstream_slot_at_once(
        start_gateway: Callable[..., Gateway], backend: Backend) -> None:
    gateway = start_gateway(gateway_config(backend, echo="max_in_flight = 1"), workers=1)
    with raw_connection(gateway) as connection:
        connection.sendall(f"GET /_/bytes/{GiB} HTTP/1.1\r\nHost: frontdesk.test\r\n\r\n".encode())
        assert connection.recv(1000).startswith(b"HTTP/1.1 200 ")
    statuses = answers_within(gateway, 2.0)
    assert statuses[-1] == 200, f"the one upstream slot stayed taken: {statuses}"
    line = wait_for_access_line(gateway, f"/_/bytes/{GiB}")
    assert line["bytes_out"] < GiB


def test_expect_100_continue_is_answered_by_the_gateway(gateway: Gateway, backend: Backend) -> None:
    with raw_connection(gateway) as connection:
        connection.sendall(b"POST /_/sink HTTP/1.1\r\nHost: frontdesk.test\r\nContent-Length: 5\r\n"
                           b"Expect: 100-continue\r\n\r\n")
        # A client waits for this before it sends the body (curl does for uploads over 1 MiB).
        assert connection.recv(1000) == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(b"hello")
        reader = connection.makefile("rb")
        try:
            assert reader.readline().startswith(b"HTTP/1.1 200 ")
        finally:
            reader.close()
    [seen] = backend.wait_for(1)
    assert seen.framing == "content-length"
    assert seen.body_length == 5
    assert seen.header("Expect") is None  # the exchange of interim answers stays on the client's hop
