"""WebSocket tunnels through real gunicorn gevent workers to a real upstream (the ``websockets`` library).

One gateway serves most tests (module scope: each start costs seconds); the drain test starts its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import gevent
import pytest
import requests
from gevent.pool import Pool
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.fakes import wait_until
from tests.fakes.backend import Backend
from tests.fakes.wsecho import WsUpstream
from tests.gateway import Gateway, exchange

pytestmark = pytest.mark.e2e

API_KEY = "ws-test-key-0123456789abcdef"
MiB = 1024 * 1024

CONFIG = """
[upstreams.ws]
targets = ["{ws}"]
timeout = 5

[upstreams.http]
targets = ["{http}"]
timeout = 5

[[routes]]
path = "/ws/<path:rest>"
upstream = "ws"
upstream_path = "/{{rest}}"
auth = "public"
websocket = {{ max_tunnels = 400, idle_timeout = 60 }}

[[routes]]
path = "/secure/<path:rest>"
upstream = "ws"
upstream_path = "/{{rest}}"
auth = {{ schemes = ["api_key"] }}
websocket = true

[[routes]]
path = "/quiet/<path:rest>"
upstream = "ws"
upstream_path = "/{{rest}}"
auth = "public"
websocket = {{ idle_timeout = 0.5 }}

[[routes]]
path = "/one/<path:rest>"
upstream = "ws"
upstream_path = "/{{rest}}"
auth = "public"
websocket = {{ max_tunnels = 1 }}

[[routes]]
path = "/plain/<path:rest>"
upstream = "http"
auth = "public"

[auth.api_keys]
header = "X-API-Key"

[auth.api_keys.consumers.chat-client]
key_sha256 = "{key_sha256}"
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[WsUpstream]:
    with WsUpstream() as running:
        yield running


@pytest.fixture(scope="module")
def http_backend() -> Iterator[Backend]:
    with Backend("plain") as running:
        yield running


def gateway_config(upstream: WsUpstream, http_backend: Backend) -> str:
    return CONFIG.format(ws=upstream.url, http=http_backend.url,
                         key_sha256=hashlib.sha256(API_KEY.encode()).hexdigest())


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: WsUpstream,
            http_backend: Backend) -> Iterator[Gateway]:
    running = Gateway(tmp_path_factory.mktemp("ws"), gateway_config(upstream, http_backend), workers=2)
    try:
        yield running.start()
    finally:
        running.stop()


def ws_url(gateway: Gateway, path: str) -> str:
    return gateway.url.replace("http://", "ws://") + path


def open_ws(gateway: Gateway, path: str, headers: dict[str, str] | None = None) -> ClientConnection:
    """A client connection through the gateway (enter it, or use it as a context manager)."""
    return connect(ws_url(gateway, path), open_timeout=10, max_size=None, ping_interval=None,
                   additional_headers=headers)


def test_text_and_binary_messages_pass_both_ways_byte_exact(gateway: Gateway) -> None:
    with open_ws(gateway, "/ws/echo") as ws:
        ws.send("héllo")
        assert ws.recv(timeout=5) == "héllo"
        ws.send(b"\x00\xff\x81binary")
        assert ws.recv(timeout=5) == b"\x00\xff\x81binary"
        big = os.urandom(MiB)
        ws.send(big)
        assert ws.recv(timeout=20) == big
        text = "x" * MiB
        ws.send(text)
        assert ws.recv(timeout=20) == text


def test_bytes_the_upstream_sends_right_after_its_101_reach_the_client(gateway: Gateway) -> None:
    with open_ws(gateway, "/ws/greet") as ws:
        assert ws.recv(timeout=5) == "hello"


def test_close_codes_pass_both_ways(gateway: Gateway) -> None:
    with open_ws(gateway, "/ws/echo") as ws:
        ws.send("close 4002")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4002
    with open_ws(gateway, "/ws/echo") as ws:
        ws.send("ping")
        assert ws.recv(timeout=5) == "ping"
        ws.close(code=4001, reason="done")

    def upstream_saw_4001() -> bool:
        with open_ws(gateway, "/ws/closes") as report:
            return 4001 in json.loads(report.recv(timeout=5))

    wait_until(upstream_saw_4001, timeout=5, what="the upstream to receive close code 4001")


def test_handshake_needs_a_credential(gateway: Gateway) -> None:
    with pytest.raises(InvalidStatus) as refused:
        open_ws(gateway, "/secure/echo")
    response = refused.value.response
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert json.loads(response.body)["status"] == 401


def test_handshake_carries_identity_and_forwarded_fields_never_the_api_key(gateway: Gateway) -> None:
    with open_ws(gateway, "/secure/echo", headers={"X-API-Key": API_KEY, "X-Auth-Consumer": "forged"}) as ws:
        ws.send("headers")
        received = {name.lower(): value for name, value in json.loads(ws.recv(timeout=5)).items()}
    assert received["x-auth-consumer"] == "chat-client"  # the gateway's, not the forged one
    assert "x-api-key" not in received
    assert received["x-forwarded-for"] == "127.0.0.1"
    assert received["via"] == "1.1 frontdesk"
    assert received["upgrade"] == "websocket" and received["sec-websocket-version"] == "13"


def test_upstream_refusing_the_upgrade_is_passed_on(gateway: Gateway) -> None:
    with pytest.raises(InvalidStatus) as refused:
        open_ws(gateway, "/ws/refuse")
    response = refused.value.response
    assert response.status_code == 403
    assert response.headers["X-Refused-By"] == "wsecho"
    assert response.body == b"refused by the upstream\n"


def test_plain_get_to_a_websocket_route_is_a_clear_426(gateway: Gateway) -> None:
    response = requests.get(gateway.url + "/ws/echo", timeout=5)
    assert response.status_code == 426
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Upgrade"] == "websocket"
    assert "WebSocket" in response.json()["detail"]


@pytest.mark.parametrize(("fields", "status"), [
    ("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n", 400),  # a key of 5 bytes
    ("Sec-WebSocket-Version: 13\r\n", 400),  # no key
    ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", 400),  # no version
    ("Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", 426),
])
def test_invalid_handshake_is_refused_by_the_gateway(gateway: Gateway, fields: str, status: int) -> None:
    raw = f"GET /ws/echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{fields}\r\n"
    answer = exchange(gateway, raw.encode(), timeout=5)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert b"application/problem+json" in answer


def test_idle_tunnel_is_closed(gateway: Gateway) -> None:
    with open_ws(gateway, "/quiet/echo") as ws:
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert time.monotonic() - started < 3


def test_route_full_of_tunnels_answers_503(gateway: Gateway) -> None:
    opened, refused = [], []
    with ExitStack() as stack:
        for _ in range(3):  # two workers, one tunnel each at most
            try:
                opened.append(stack.enter_context(open_ws(gateway, "/one/echo")))
            except InvalidStatus as error:
                refused.append(error.response)
        assert len(opened) <= 2 and refused
        assert all(response.status_code == 503 for response in refused)
        assert json.loads(refused[0].body)["type"].endswith("/tunnels-full")


def scrape(gateway: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    time.sleep(1.2)  # every worker flushes its metrics each second
    response = requests.get(gateway.url + "/metrics", timeout=5)
    assert response.status_code == 200, response.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def test_300_open_tunnels_leave_plain_http_prompt(gateway: Gateway) -> None:
    pool = Pool(50)
    tunnels = [ws.__enter__() for ws in pool.imap_unordered(lambda _: open_ws(gateway, "/ws/echo"), range(300))]
    try:
        assert len(tunnels) == 300
        started = time.perf_counter()
        timings = []
        with requests.Session() as session:
            for _ in range(20):
                began = time.perf_counter()
                assert session.get(gateway.url + "/plain/x", timeout=5).status_code == 200
                timings.append(time.perf_counter() - began)
        print(f"300 tunnels open: 20 plain requests in {time.perf_counter() - started:.3f} s, "
              f"slowest {max(timings) * 1000:.1f} ms")
        assert max(timings) < 0.5

        def echo(pair: tuple[int, ClientConnection]) -> bool:
            index, ws = pair
            ws.send(f"m{index}")
            return ws.recv(timeout=10) == f"m{index}"

        assert all(pool.imap_unordered(echo, enumerate(tunnels)))
        samples = scrape(gateway)
        assert samples[("frontdesk_tunnels_open", (("route", "/ws/<path:rest>"),))] == 300
    finally:
        gevent.joinall([gevent.spawn(ws.close) for ws in tunnels], timeout=20)
    samples = scrape(gateway)
    assert samples[("frontdesk_tunnels_open", (("route", "/ws/<path:rest>"),))] == 0
    assert samples[("frontdesk_tunnels_opened_total", (("route", "/ws/<path:rest>"),))] >= 300
    assert samples[("frontdesk_tunnel_bytes_total", (("direction", "up"), ("route", "/ws/<path:rest>")))] > 0


def test_one_access_log_line_per_tunnel_at_its_close(gateway: Gateway) -> None:
    with open_ws(gateway, "/ws/echo", headers={"X-Request-ID": "tunnel-log-1"}) as ws:
        ws.send("12345")
        assert ws.recv(timeout=5) == "12345"
        assert "tunnel-log-1" not in gateway.log()  # written at the close, not at the 101
    wait_until(lambda: "tunnel-log-1" in gateway.log(), timeout=5, what="the tunnel's access-log line")
    lines = [json.loads(line) for line in gateway.log().splitlines() if "tunnel-log-1" in line]
    assert len(lines) == 1
    line = lines[0]
    assert line["status"] == 101 and line["route"] == "/ws/<path:rest>" and line["upstream"] == "ws"
    assert line["tunnel_closed_by"] in ("client", "upstream")
    assert line["bytes_in"] > 5 and line["bytes_out"] > 5  # the frames, masked or not, both ways


def test_sigterm_drains_open_tunnels_within_their_grace(tmp_path: Path, upstream: WsUpstream,
                                                        http_backend: Backend) -> None:
    config = gateway_config(upstream, http_backend).replace(
        "websocket = { max_tunnels = 400, idle_timeout = 60 }", "websocket = { drain_grace = 1.5 }")
    gateway = Gateway(tmp_path, config, workers=1).start()
    try:
        ws = open_ws(gateway, "/ws/echo").__enter__()
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        time.sleep(0.5)
        ws.send("during the grace")  # the tunnel still works while the worker drains
        assert ws.recv(timeout=5) == "during the grace"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        closed_after = time.monotonic() - stopped
        assert 1.0 < closed_after < 4, closed_after
        assert gateway.wait(timeout=10) == 0
        assert time.monotonic() - stopped < 6  # graceful_timeout is 30 s: the worker did not wait for it
        assert '"tunnel_closed_by":"drain"' in gateway.log().replace(" ", "")
        host, port = gateway.url.removeprefix("http://").split(":")
        with pytest.raises(OSError):
            socket.create_connection((host, int(port)), timeout=1)
    finally:
        gateway.stop()


def test_reload_hands_over_then_drains_open_tunnels(tmp_path: Path, upstream: WsUpstream,
                                                    http_backend: Backend) -> None:
    config = gateway_config(upstream, http_backend).replace(
        "websocket = { max_tunnels = 400, idle_timeout = 60 }", "websocket = { drain_grace = 1 }")
    # gunicorn would end the old worker after graceful_timeout anyway: far beyond what the test allows.
    gateway = Gateway(tmp_path, config, workers=1, env={"GATEWAY_GRACEFUL_TIMEOUT": "120"}).start()
    try:
        [old_worker] = gateway.worker_pids()
        ws = open_ws(gateway, "/ws/echo").__enter__()
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGHUP)
        reloaded = time.monotonic()
        with pytest.raises(ConnectionClosed):
            while True:  # the old tunnel works until the old worker drains, then closes
                ws.send("still here")
                assert ws.recv(timeout=5) == "still here"
                time.sleep(0.2)
        assert 1 < time.monotonic() - reloaded < 20  # after its grace, once the new worker is up
        wait_until(lambda: old_worker not in gateway.worker_pids(), timeout=10, what="the old worker to exit")
        with open_ws(gateway, "/ws/echo") as again:  # the new worker takes tunnels
            again.send("new worker")
            assert again.recv(timeout=5) == "new worker"
        assert gateway.process.poll() is None
    finally:
        gateway.stop()


def test_a_handshake_from_a_refused_origin_is_403_at_the_edge(start_gateway: Callable[..., Gateway],
                                                              upstream: WsUpstream, http_backend: Backend) -> None:
    gateway = start_gateway(gateway_config(upstream, http_backend) + '\n[edge.cors]\nallow_origins = '
                            '["https://app.example"]\n', workers=1)
    with pytest.raises(InvalidStatus) as refused:
        open_ws(gateway, "/ws/echo", headers={"Origin": "https://evil.example"})
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body)["type"].endswith("/origin-refused")
    with open_ws(gateway, "/ws/echo", headers={"Origin": "https://app.example"}) as ws:
        ws.send("allowed")
        assert ws.recv(timeout=5) == "allowed"
