"""Forwarding integrity through real gunicorn gevent workers, raw sockets on both sides.

A hostile upstream answers hand-written bytes (tests/fakes/raw_upstream.py). For each case: what
the client got (status, fields, body); whether its next request on the same connection gets its
own answer; whether other clients, at the same time, get theirs; and, at the end, that no
upstream call is still counted in flight. One worker, so every request shares one pool and a
poisoned connection would be handed to the next caller.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.raw_upstream import RawUpstream, ok_answer
from tests.gateway import Gateway, exchange

pytestmark = pytest.mark.e2e

TOKEN = "integrity-metrics-token"
API_KEY = "frontdesk-test-key-" + "0" * 16  # the testing consumer "tests" (settings/testing.py)


def head(status: bytes, *fields: bytes) -> bytes:
    return b"HTTP/1.1 " + status + b"\r\n" + b"".join(field + b"\r\n" for field in fields) + b"\r\n"


SECRET = b"first client's secret"
FINAL = head(b"200 OK", b"Content-Type: text/plain", b"Content-Length: %d" % len(SECRET)) + SECRET


@dataclass(frozen=True)
class Case:
    """A scripted upstream answer and what the client must get for it."""

    script: list[bytes | float]
    status: int
    body: bytes | None = None  # the body the client must get (None: any, or the 502 problem)
    fields: tuple[tuple[str, str], ...] = ()  # fields the client must see, as sent


CASES = {
    # 1. Interim answers are read past: the client gets the final one, and it reaches nobody else.
    "interim-103": Case([head(b"103 Early Hints", b"Link: </a.css>; rel=preload"), 0.3, FINAL], 200, SECRET),
    "interim-102": Case([head(b"102 Processing"), 0.2, head(b"102 Processing"), 0.2, FINAL], 200, SECRET),
    "interim-100-199": Case([head(b"100 Continue") + head(b"199 Whatever"), 0.2, FINAL], 200, SECRET),
    "interim-101": Case([head(b"101 Switching Protocols", b"Upgrade: h2c", b"Connection: upgrade"), 0.2, FINAL],
                        502),
    # 2. A bare CR, NUL or control character in a field, obs-fold, a space before the colon.
    "bare-cr": Case([head(b"200 OK", b"X-A: foo\rX-Injected: yes", b"Transfer-Encoding: chunked")
                     + b"5\r\nhello\r\n0\r\n\r\n"], 502),
    "nul": Case([head(b"200 OK", b"X-A: f\x00oo", b"Content-Length: 2") + b"ok"], 502),
    "control": Case([head(b"200 OK", b"X-A: f\x01oo", b"Content-Length: 2") + b"ok"], 502),
    "space-before-colon": Case([head(b"200 OK", b"X-A : foo", b"Content-Length: 2") + b"ok"], 502),
    "obs-fold": Case([head(b"200 OK", b"X-A: one", b" two", b"Content-Length: 2") + b"ok"], 200, b"ok",
                     (("X-A", "one two"),)),
    # 3. Framing: both framings, and every invalid Content-Length.
    "chunked-and-length": Case([head(b"200 OK", b"Transfer-Encoding: chunked", b"Content-Length: 3")
                                + b"5\r\nhello\r\n0\r\n\r\n"], 502),
    "length-minus": Case([head(b"200 OK", b"Content-Length: -1") + b"ok"], 502),
    "length-plus": Case([head(b"200 OK", b"Content-Length: +2") + b"ok"], 502),
    "length-list": Case([head(b"200 OK", b"Content-Length: 2, 2") + b"ok"], 502),
    "length-twice": Case([head(b"200 OK", b"Content-Length: 2", b"Content-Length: 2") + b"ok"], 502),
    "length-differ": Case([head(b"200 OK", b"Content-Length: 2", b"Content-Length: 3") + b"ok!"], 502),
    "length-abc": Case([head(b"200 OK", b"Content-Length: abc") + b"ok"], 502),
    "length-short": Case([head(b"200 OK", b"Content-Length: 2") + b"okEXTRA-BYTES-FOR-NOBODY"], 200, b"ok"),
    "answer-after-answer": Case([FINAL + ok_answer(b"smuggled")], 200, SECRET),
    # 9. Smaller ones.
    "length-leading-zeros": Case([head(b"200 OK", b"Content-Length: 005") + b"hello"], 200, b"hello",
                                 (("Content-Length", "5"),)),
    "gzip-chunked": Case([head(b"200 OK", b"Transfer-Encoding: gzip, chunked") + b"0\r\n\r\n"], 502),
    # A body that breaks after the head: the head may be on its way, so the client's connection is cut.
    "bad-chunk-size": Case([head(b"200 OK", b"Transfer-Encoding: chunked") + b"+2\r\nok\r\n0\r\n\r\n"], 0),
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[RawUpstream]:
    with RawUpstream({name: case.script for name, case in CASES.items()}) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: RawUpstream) -> Iterator[Gateway]:
    """One worker. ``raw`` takes the broken answers (the upstream's faults, so no ejection there);
    ``strict`` is the same upstream, ejected after 3 failures and behind a breaker, for client faults."""
    directory = tmp_path_factory.mktemp("integrity")
    config = f"""
[upstreams.raw]
targets = ["{upstream.url}"]
timeout = 2
max_in_flight = 10

[upstreams.strict]
targets = ["{upstream.url}"]
timeout = 2
max_in_flight = 10
eject = {{ failures = 3, seconds = 60 }}
breaker = {{ min_requests = 3, failure_ratio = 0.5, open_for = 60 }}

[[routes]]
path = "/faults/<path:rest>"
upstream = "strict"
auth = "public"
methods = ["POST"]

[[routes]]
path = "/keyed/<path:rest>"
upstream = "raw"
auth = {{ schemes = ["api_key"] }}

[[routes]]
path = "/cached/<path:rest>"
upstream = "raw"
auth = "public"
cache = {{ ttl = 60, scope = "public" }}

[[routes]]
path = "/<path:rest>"
upstream = "raw"
auth = "public"
methods = ["GET", "POST"]
"""
    running = Gateway(directory, config, workers=1, env={
        "GATEWAY_METRICS__TOKEN": TOKEN, "GATEWAY_METRICS_DIR": str(directory)})
    running.start()
    yield running
    running.stop()


def connect(gateway: Gateway) -> http.client.HTTPConnection:
    host, port = gateway.url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=5)


def ask(connection: http.client.HTTPConnection, path: str) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection.request("GET", path)
    answer = connection.getresponse()
    return answer.status, answer.msg, answer.read()


def others(gateway: Gateway, tag: str, count: int = 6) -> None:
    """``count`` clients on new connections at once: each gets its own answer."""
    def one(index: int) -> bytes:
        return requests.get(f"{gateway.url}/ok/{tag}{index}", timeout=5).content

    with ThreadPoolExecutor(count) as pool:
        bodies = list(pool.map(one, range(count)))
    assert bodies == [b"id=%s%d" % (tag.encode(), index) for index in range(count)]


def in_flight(gateway: Gateway, name: str = "raw") -> float:
    """An upstream's in-flight gauge, once the worker has flushed its metrics."""
    time.sleep(1.2)
    response = requests.get(gateway.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(response.text) for s in family.samples}
    return samples[("frontdesk_upstream_in_flight", (("upstream", name),))]


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_client_gets_exactly_its_own_answer(gateway: Gateway, name: str) -> None:
    case = CASES[name]
    connection = connect(gateway)
    with ThreadPoolExecutor(1) as background:
        # Others use the same upstream pool while the scripted answer (and its pauses) is under way.
        meanwhile = background.submit(others, gateway, name)
        try:
            if case.status == 0:
                check_cut_off(connection, name)
            else:
                check_answer(connection, name, case)
        finally:
            connection.close()
        meanwhile.result()
    time.sleep(0.7)  # the scripted pauses are over: nothing that came late reaches anyone either
    others(gateway, name + "-late")


def check_answer(connection: http.client.HTTPConnection, name: str, case: Case) -> None:
    """The client's answer is the case's, and its next request on the connection gets its own."""
    status, fields, body = ask(connection, f"/case/{name}")
    assert status == case.status, (status, body)
    if case.status == 502:
        assert fields["Content-Type"] == "application/problem+json"
        assert json.loads(body)["type"].endswith("/upstream-unreachable")
    elif case.body is not None:
        assert body == case.body
    for field, value in case.fields:
        assert fields.get_all(field) == [value]
    assert "X-Injected" not in fields
    assert ask(connection, f"/ok/{name}-again")[2] == f"id={name}-again".encode()


def check_cut_off(connection: http.client.HTTPConnection, name: str) -> None:
    """A body that breaks after the head: a 502 before the head, or the connection cut; never a whole answer."""
    try:
        status, _, body = ask(connection, f"/case/{name}")
    except (http.client.HTTPException, OSError):
        return
    assert status == 502, (status, body)


def test_no_call_stays_in_flight(gateway: Gateway) -> None:
    """After every case (broken answers among them), the upstream's in-flight count is back to zero."""
    for name in ("nul", "length-abc", "chunked-and-length", "interim-101"):
        assert requests.get(f"{gateway.url}/case/{name}", timeout=5).status_code == 502
    others(gateway, "after")
    assert in_flight(gateway) == 0


POST = b"POST /faults/ok/x HTTP/1.1\r\nHost: g\r\n"
CLIENT_FAULTS = {
    # A malformed chunked body: the client's fault, a 400 problem.
    "malformed-chunk": (POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n", 0.0, b"", 400),
    # A body cut off by the client (it half-closes after 5 of 100 bytes).
    "cut-off": (POST + b"Content-Length: 100\r\n\r\nhello", 0.0, b"", 400),
    "cut-off-chunked": (POST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhel", 0.0, b"", 400),
    # A body trickled past the upstream's 2 s deadline.
    "trickle": (POST + b"Content-Length: 10\r\n\r\nhello", 2.6, b"world", 408),
}


@pytest.mark.parametrize("name", sorted(CLIENT_FAULTS))
def test_client_faults_are_never_the_upstreams(gateway: Gateway, name: str) -> None:
    """Four of a client's faults at once (the upstream is ejected after 3 failures): the client is blamed
    (400/408 problem), and everyone else is still served."""
    raw, pause, tail, status = CLIENT_FAULTS[name]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: exchange(gateway, raw, 10.0, pause, tail), range(4)))
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 %d" % status), answer[:300]
        assert b"application/problem+json" in answer
    # Not ejected, no breaker opened: everyone is served.
    assert requests.post(f"{gateway.url}/faults/ok/{name}", data=b"fine", timeout=5).content == b"id=" + name.encode()
    assert in_flight(gateway, "strict") == 0


def test_connection_options_never_remove_the_gateways_fields(gateway: Gateway, upstream: RawUpstream) -> None:
    response = requests.get(f"{gateway.url}/keyed/ok/conn-opt", timeout=5, headers={
        "X-API-Key": API_KEY, "Connection": "keep-alive, X-Auth-Consumer, X-Request-ID, X-Forwarded-For"})
    assert response.content == b"id=conn-opt"
    (received,) = upstream.received(b"/keyed/ok/conn-opt")
    lower = received.lower()
    assert b"\r\nx-auth-consumer: tests" in lower
    assert b"\r\nx-request-id: " + response.headers["X-Request-ID"].lower().encode() in lower
    assert b"\r\nx-forwarded-for: 127.0.0.1" in lower


def test_gunicorn_trusts_no_peer(gateway: Gateway, upstream: RawUpstream) -> None:
    """With [edge] trusted_proxies = 0, a loopback client's X-Forwarded-Proto and SCRIPT_NAME change nothing."""
    answer = exchange(gateway, b"GET /ok/trust HTTP/1.1\r\nHost: g\r\nX-Forwarded-Proto: https\r\n"
                               b"X-Forwarded-Ssl: on\r\nSCRIPT_NAME: /ok\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"id=trust")
    (received,) = upstream.received(b"/ok/trust")
    assert received.startswith(b"GET /ok/trust HTTP/1.1")  # the path is the client's, whole
    assert b"\r\nX-Forwarded-Proto: http\r\n" in received
    assert b"script" not in received.lower() and b"ssl" not in received.lower()


@pytest.mark.parametrize("field", ["X-Original-URL", "X-Rewrite-URL", "X-HTTP-Method-Override", "X-Real-IP",
                                   "True-Client-IP", "X-Host", "X-Forwarded-Host"])
def test_a_callers_unkeyed_field_never_shapes_anothers_answer(
        gateway: Gateway, upstream: RawUpstream, field: str) -> None:
    """The attacker's field never reaches the upstream, so the answer stored for everyone cannot carry it."""
    path = f"/cached/ok/poison-{field.lower()}"
    attacker = requests.get(gateway.url + path, headers={field: "/evil"}, timeout=5)
    victim = requests.get(gateway.url + path, timeout=5)
    assert attacker.status_code == victim.status_code == 200
    assert b"/evil" not in b"".join(upstream.received(path.encode()))
    assert victim.content == attacker.content
