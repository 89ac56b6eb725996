"""worker.OneSendResponse against gunicorn's own Response: the same bytes on the wire, in fewer sends."""

from __future__ import annotations

from typing import Any

import pytest
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import wsgi

import worker

GUNICORN_RESPONSE: type[Any] = worker.OneSendResponse.__base__  # gunicorn's own class, before the worker's


class _Socket:
    """Records what each send put on the wire."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sends.append(bytes(data))


class _Request:
    def __init__(self, method: str, version: tuple[int, int]) -> None:
        self.method = method
        self.version = version

    def should_close(self) -> bool:
        return False


def _serve(response_class: type[Any], method: str, version: tuple[int, int], status: str,
           headers: list[tuple[str, str]], chunks: list[bytes]) -> list[bytes]:
    sock = _Socket()
    response = response_class(_Request(method, version), sock, Config())
    write = response.start_response(status, list(headers))
    for chunk in chunks:
        write(chunk)
    response.close()
    return sock.sends


CASES = {
    "one chunk, Content-Length": ("GET", (1, 1), "200 OK", [("Content-Length", "13")], [b'{"id": "42"}\n']),
    "several chunks, Content-Length": ("GET", (1, 1), "200 OK", [("Content-Length", "9")], [b"abc", b"def", b"ghi"]),
    "chunked": ("GET", (1, 1), "200 OK", [], [b"abcdefghijk", b"defg", b"h"]),  # 11 bytes: hex B
    "chunked, empty first chunk": ("GET", (1, 1), "200 OK", [], [b"", b"abc"]),
    "chunked, no body": ("GET", (1, 1), "200 OK", [], []),
    "HTTP/1.0 without length": ("GET", (1, 0), "200 OK", [], [b"abc", b"def"]),
    "HEAD": ("HEAD", (1, 1), "200 OK", [("Content-Length", "3")], [b"abc"]),
    "304": ("GET", (1, 1), "304 Not Modified", [("ETag", '"v1"')], [b""]),
    "204 with a body dropped": ("DELETE", (1, 1), "204 No Content", [], [b"ignored"]),
    "empty first chunk": ("GET", (1, 1), "200 OK", [("Content-Length", "3")], [b"", b"abc"]),
    "longer than Content-Length": ("GET", (1, 1), "200 OK", [("Content-Length", "2")], [b"abcdef", b"gh"]),
    "Content-Length 0 with bytes": ("GET", (1, 1), "200 OK", [("Content-Length", "0")], [b"abc"]),
    "no body written": ("GET", (1, 1), "200 OK", [("Content-Length", "0")], []),
    "latin-1 header value": ("GET", (1, 1), "200 OK", [("X-Name", "caf\u00e9"), ("Content-Length", "1")], [b"x"]),
}


@pytest.fixture(autouse=True)
def _fixed_date(monkeypatch: pytest.MonkeyPatch) -> None:
    # Both classes of one case must write the same Date even across a second's edge.
    monkeypatch.setattr(util, "http_date", lambda timestamp=None: "Sun, 29 Nov 2026 16:00:00 GMT")


@pytest.mark.parametrize("case", CASES)
def test_same_bytes_as_gunicorn(case: str) -> None:
    gunicorns = _serve(GUNICORN_RESPONSE, *CASES[case])
    ours = _serve(worker.OneSendResponse, *CASES[case])
    assert b"".join(ours) == b"".join(gunicorns)
    assert len(ours) <= len(gunicorns)


@pytest.mark.parametrize("case", ["one chunk, Content-Length", "chunked", "several chunks, Content-Length"])
def test_head_travels_with_the_first_body_bytes(case: str) -> None:
    ours = _serve(worker.OneSendResponse, *CASES[case])
    gunicorns = _serve(GUNICORN_RESPONSE, *CASES[case])
    assert gunicorns[0].endswith(b"\r\n\r\n")  # gunicorn: the head alone
    assert ours[0] == gunicorns[0] + gunicorns[1]
    assert len(ours) == len(gunicorns) - 1


@pytest.mark.parametrize("case", ["HEAD", "304", "chunked, empty first chunk", "empty first chunk"])
def test_head_without_bytes_goes_out_in_that_write(case: str) -> None:
    # Nothing to carry it: the head leaves inside the same write, never held until the app's next chunk.
    method, version, status, headers, chunks = CASES[case]
    sock = _Socket()
    response = worker.OneSendResponse(_Request(method, version), sock, Config())
    response.start_response(status, list(headers))(chunks[0])
    assert len(sock.sends) == 1 and sock.sends[0].endswith(b"\r\n\r\n")


def test_a_body_that_is_not_bytes_is_refused() -> None:
    response = worker.OneSendResponse(_Request("GET", (1, 1)), _Socket(), Config())
    write = response.start_response("200 OK", [("Content-Length", "3")])
    with pytest.raises(TypeError):
        write("abc")


def test_gunicorn_builds_every_http1_response_from_it() -> None:
    assert wsgi.Response is worker.OneSendResponse
