"""The edge under real gunicorn gevent workers: server limits (414/431), chunked 413, banner, and a fuzz run."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.backend import Backend
from tests.gateway import Gateway, echo_toml, exchange

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def backend_module() -> Iterator[Backend]:
    """One echo backend for the module."""
    with Backend("echo") as running:
        yield running


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, backend_module: Backend) -> Iterator[Gateway]:
    """One two-worker gateway for the module, body limit 1000 bytes."""
    config = echo_toml(backend_module.url, extra="[edge]\nmax_body_bytes = 1000\n")
    running = Gateway(tmp_path_factory.mktemp("edge"), config)
    running.start()
    yield running
    running.stop()


def statuses(answer: bytes) -> list[int]:
    """Every status line's code in a (possibly pipelined) answer."""
    return [int(line.split(b" ")[1]) for line in answer.split(b"\r\n")
            if line.startswith(b"HTTP/1.") and len(line.split(b" ")) > 1 and line.split(b" ")[1].isdigit()]


def problem_of(answer: bytes) -> dict[str, object]:
    """The problem+json document of a one-response answer (its head says so)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nContent-Type: application/problem+json\r\n" in head, head
    document: dict[str, object] = json.loads(body)
    return document


def test_request_line_and_header_limits(gateway: Gateway) -> None:
    long_url = b"GET /x?" + b"a" * 8200 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    answer = exchange(gateway, long_url)
    assert statuses(answer)[:1] == [414]
    assert problem_of(answer) == {"type": "about:blank", "title": "URI Too Long", "status": 414,
                                  "detail": "The request line is longer than the gateway accepts."}
    fat_header = b"GET /x HTTP/1.1\r\nHost: t\r\nX-Fat: " + b"a" * 16400 + b"\r\n\r\n"
    answer = exchange(gateway, fat_header)
    assert statuses(answer)[:1] == [431] and problem_of(answer)["status"] == 431
    many = b"GET /x HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(101)) + b"\r\n"
    assert statuses(exchange(gateway, many))[:1] == [431]
    garbage = exchange(gateway, b"GET /x HTTP/9.9\r\nHost: t\r\n\r\n")
    assert statuses(garbage) == [400]
    assert problem_of(garbage)["detail"] == "The request is not valid HTTP/1.1."  # not the client's bytes echoed
    fits = (b"GET /x?" + b"a" * 8000 + b" HTTP/1.1\r\nHost: t\r\nX-Jwt: " + b"a" * 16000
            + b"\r\nConnection: close\r\n\r\n")
    assert statuses(exchange(gateway, fits)) == [200]


def test_chunked_body_past_the_limit_is_cut_off(gateway: Gateway, backend_module: Backend) -> None:
    before = len(backend_module.received)
    chunk = b"400\r\n" + b"z" * 1024 + b"\r\n"
    head = b"POST /big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    raw = head + chunk * 4 + b"0\r\n\r\n"
    answer = exchange(gateway, raw)
    assert statuses(answer) == [413] and b"application/problem+json" in answer
    sized = b"POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n" + b"z" * 5000
    assert statuses(exchange(gateway, sized)) == [413]
    time.sleep(0.3)
    assert [r.target for r in backend_module.received[before:]] == []  # no partial body passed as complete


def test_the_server_banner_names_no_software(gateway: Gateway) -> None:
    answer = requests.get(gateway.url + "/livez", timeout=5)
    assert answer.headers["Server"] == "frontdesk"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


_TOKEN = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&'*+-.^_`|~0123456789",
                 min_size=1, max_size=12)
_NASTY = st.sampled_from(["\r\n", "\n", "\r", "\x00", " ", "\t", "é", "\u2028", "%", "%0d%0a", "%00", "%zz",
                          "%2e%2e/", "../", "//", "?", "#", ":", "\x7f", "\xff"])
_PIECE = st.one_of(_TOKEN, _NASTY)
_SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"


@st.composite
def hostile_requests(draw: st.DrawFn) -> tuple[bytes, str]:
    """A request head with malformed parts, maybe a body, maybe a request hidden after it; and its marker."""
    marker = f"m{draw(st.integers(0, 10**9))}"
    method = draw(st.one_of(st.sampled_from(["GET", "POST", "PUT", "OPTIONS", "HEAD"]), _TOKEN,
                            st.text(min_size=0, max_size=8)))
    path = "/" + marker + "/" + "".join(draw(st.lists(_PIECE, max_size=6)))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 x", ""]))
    headers = [("Host", "t")]
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.one_of(st.sampled_from(["Host", "Content-Length", "Transfer-Encoding", "X-Forwarded-For",
                                               "Origin", "Connection", "Expect"]), _TOKEN,
                              st.text(max_size=6).map(lambda text: text + "\x00")))
        value = draw(st.one_of(st.sampled_from(["5", "0", "-1", "chunked", "gzip, chunked", "chunked, gzip",
                                                " chunked", "1e3", "close", "100-continue", "12345678901234567890"]),
                               st.text(max_size=12).map(lambda text: text + draw(_NASTY))))
        headers.append((name, value))
    body = draw(st.sampled_from([b"", b"hello", b"0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n" + _SMUGGLED, _SMUGGLED]))
    head = f"{method} {path} {version}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    return head.encode("utf-8", errors="surrogateescape") + body, marker


def test_hostile_input_leaves_the_gateway_serving_and_smuggles_nothing(
        gateway: Gateway, backend_module: Backend) -> None:
    workers = sorted(gateway.worker_pids())
    before = len(backend_module.received)
    markers: list[str] = []
    seen_statuses: set[int] = set()

    @settings(max_examples=250, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(hostile_requests())
    def throw(case: tuple[bytes, str]) -> None:
        raw, drawn = case
        marker = f"u{len(markers)}"  # unique per request sent (hypothesis repeats its draws)
        raw = raw.replace(f"/{drawn}/".encode(), f"/{marker}/".encode(), 1)
        markers.append(marker)
        codes = statuses(exchange(gateway, raw, timeout=3.0))
        seen_statuses.update(codes)
        assert all(code < 500 for code in codes), (raw, codes)

    throw()
    time.sleep(0.5)
    received = [r.target for r in backend_module.received[before:]]
    assert not any("smuggled" in target for target in received)
    # Each request that reached the upstream is one the fuzzer sent, once.
    reached = [target.split("/")[1] for target in received]
    assert all(marker in markers for marker in reached) and len(reached) == len(set(reached))
    assert sorted(gateway.worker_pids()) == workers  # no worker crashed and was replaced
    assert requests.get(gateway.url + "/livez", timeout=5).status_code == 200
    assert {400, 200} <= seen_statuses  # the run reached both the server's parser and the upstream
    # gunicorn's own parse-error lines are formatted, not replaced by "--- Logging error ---" (its format
    # prints %(process)d, which the app's logging setup once switched off), and nothing crashed.
    log = gateway.log()
    assert "Logging error" not in log and "Traceback" not in log
