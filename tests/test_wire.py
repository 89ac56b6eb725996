"""Heads to and from upstreams (app/proxy/wire.py): exactly what http.client builds, head for head."""

from __future__ import annotations

import email.message
import http.client
import io
import random
import socket
import threading
from typing import Any

import pytest
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util import SKIP_HEADER

from app.proxy.client import _Connection, _TlsConnection
from app.proxy.wire import UpstreamResponse, parse_head
from tests.conftest import AppFactory
from tests.fakes import accept_each

HEADS = [
    b"Content-Type: application/json\r\nContent-Length: 28\r\n\r\n",
    b"\r\n",
    b"\n",
    b"A: 1\nB:2\n\n",  # bare LF line endings
    b"X:   padded value  \t \r\nX: again\r\nx: case\r\n\r\n",  # repeated names, spaces kept at the end
    b"Empty:\r\nAlso-Empty:   \r\n\r\n",
    b"Latin: caf\xe9 \xff\r\n\r\n",
    b"Folded: one\r\n two\r\n\tthree\r\nNext: x\r\n\r\n",  # obs-fold: the email parser's job
    b" Leading: continuation first\r\nA: 1\r\n\r\n",
    b"No colon here\r\nA: 1\r\n\r\n",
    b": no name\r\nA: 1\r\n\r\n",
    b"Bad Name: space in the name\r\n\r\n",
    b"From nobody\r\nA: 1\r\n\r\n",  # an mbox envelope line
    b"A: 1\rB: 2\r\n\r\n",  # a lone CR cracks the line in the email parser
    b"A: one\x0btwo\x0cthree\x1cfour\x85five\r\n\r\n",  # breaks for str.splitlines, not for the parser
    b"Content-Type: multipart/mixed; boundary=x\r\n\r\n",  # the parser goes on into a body
    b"content-type: Message/RFC822\r\n\r\n",
    b"Content-Type: text/plain\r\nContent-Length: 2\r\n",  # EOF before the blank line
    b"A: 1\r\n",
    b"",
]


def _std(head: bytes) -> Any:
    return http.client.parse_headers(io.BytesIO(head))


def _shape(message: Any) -> Any:
    """A message's whole state, comparable: defects by kind and text, nested messages the same way."""
    if isinstance(message, list):
        return [_shape(part) for part in message]
    if not isinstance(message, email.message.Message):
        return message
    return {**vars(message), "_payload": _shape(message._payload),  # type: ignore[attr-defined]
            "defects": [(type(defect), str(defect)) for defect in message.defects], "class": type(message)}


def _same(head: bytes) -> None:
    assert _shape(parse_head(io.BytesIO(head))) == _shape(_std(head)), head


@pytest.mark.parametrize("head", HEADS)
def test_parse_head_builds_what_http_client_builds(head: bytes) -> None:
    _same(head)


def test_parse_head_matches_on_random_heads() -> None:
    # Lines from pieces that matter to one parser or the other: separators, spaces, CR, LF, the
    # characters str.splitlines breaks on, latin-1, the content types that start a body.
    pieces = ["A", "x-Y", "Content-Type", "From", ":", ": ", " ", "\t", "\r", "\n", "\r\n", "\x0b", "\x85",
              "é", "multipart/a", "text/plain", "v", "=", ",", '"', "1"]
    chance = random.Random(20261129)
    for _ in range(3000):
        lines = ["".join(chance.choice(pieces) for _ in range(chance.randint(0, 6))) + chance.choice(["\r\n", "\n"])
                 for _ in range(chance.randint(0, 4))]
        head = "".join(lines).encode("latin-1") + chance.choice([b"\r\n", b"\n", b""])
        try:
            _std(head)
        except http.client.HTTPException:
            continue  # over http.client's limits: parse_head reads with the same function
        _same(head)


def test_parse_head_keeps_http_client_limits() -> None:
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        parse_head(io.BytesIO(b"A: 1\r\n" * 101 + b"\r\n"))
    with pytest.raises(http.client.LineTooLong):
        parse_head(io.BytesIO(b"A: " + b"x" * 70000 + b"\r\n\r\n"))


class _Wire:
    """A socket whose makefile reads ``data``: what HTTPResponse needs."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self.data))


RESPONSES = [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET"),
    (b"HTTP/1.1 200 OK \r\nContent-Length: -5\r\n\r\n", "GET"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\nConnection: keep-alive\r\n\r\n", "GET"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nContent-Length: 9\r\n\r\n2\r\nok\r\n0\r\n\r\n", "GET"),
    (b"HTTP/1.1 100 Continue\r\nX: skipped\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", "POST"),
    (b"HTTP/1.1 204 No Content\r\n\r\n", "DELETE"),
    (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD"),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET"),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", "GET"),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil EOF", "GET"),
    (b"HTTP/1.1 502 Bad Gateway\r\nFolded: a\r\n b\r\nContent-Length: 0\r\n\r\n", "GET"),
]
_STATE = ("code", "status", "reason", "version", "chunked", "chunk_left", "will_close", "length")


@pytest.mark.parametrize(("raw", "method"), RESPONSES)
def test_upstream_response_begins_as_http_client_does(raw: bytes, method: str) -> None:
    expected = http.client.HTTPResponse(_Wire(raw), method=method)  # type: ignore[arg-type]
    got = UpstreamResponse(_Wire(raw), method=method)  # type: ignore[arg-type]
    expected.begin()
    got.begin()
    for name in _STATE:
        assert getattr(got, name, "unset") == getattr(expected, name, "unset"), name
    assert got.msg.items() == expected.msg.items()
    assert got.read() == expected.read()


@pytest.mark.parametrize("raw", [b"HTTP/2 200 OK\r\n\r\n", b"garbage\r\n\r\n", b""])
def test_upstream_response_refuses_what_http_client_refuses(raw: bytes) -> None:
    with pytest.raises(http.client.HTTPException) as expected:
        http.client.HTTPResponse(_Wire(raw)).begin()  # type: ignore[arg-type]
    with pytest.raises(type(expected.value)):
        UpstreamResponse(_Wire(raw)).begin()  # type: ignore[arg-type]


FIELDS: list[tuple[Any, ...]] = [
    ("X-Forwarded-For", "127.0.0.1"),
    ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ("X-Empty", ""),
    ("X-Latin", "café"),
    ("X-Wide", "snow ☃"),  # not latin-1: http.client raises
    ("X-Injected", "a\r\nEvil: yes"),
    ("X-Lone-LF", "a\nb"),
    ("X-Folded", "a\r\n b"),  # a legal obs-fold for http.client
    ("Name With Space", "v"),
    ("Bad:Name", "v"),
    ("X-Int", 5),
    ("X-Bytes", b"raw"),
    ("X-Many", "a", "b"),
    ("User-Agent", SKIP_HEADER),
    ("X-Custom", SKIP_HEADER),
]


def _put(connection_class: type[HTTPConnection], fields: tuple[Any, ...]) -> Any:
    connection = connection_class("127.0.0.1", 1)
    connection.putrequest("GET", "/")
    before = list(connection._buffer)  # type: ignore[attr-defined]
    try:
        connection.putheader(*fields)
    except Exception as error:  # noqa: BLE001 - the error itself is what is compared
        return type(error)
    return connection._buffer[len(before):]  # type: ignore[attr-defined]


@pytest.mark.parametrize("fields", FIELDS)
@pytest.mark.parametrize("connection_class", [_Connection, _TlsConnection])
def test_putheader_writes_what_urllib3_writes(connection_class: type[HTTPConnection], fields: tuple[Any, ...]) -> None:
    base = HTTPConnection if connection_class is _Connection else HTTPSConnection
    assert _put(connection_class, fields) == _put(base, fields)


def test_putheader_refuses_outside_a_request() -> None:
    connection = _Connection("127.0.0.1", 1)
    with pytest.raises(http.client.CannotSendHeader):
        connection.putheader("X-A", "b")


def test_forwarded_heads_on_the_wire(make_app: AppFactory) -> None:
    """Through the gateway: the upstream reads the request head it always did, the client gets the answer's fields."""
    received: list[bytes] = []
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Folded: one\r\n two\r\nX-Plain: caf\xe9\r\n"
              b"Content-Length: 2\r\n\r\nok")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(connection: socket.socket) -> None:
        with connection:
            head = b""
            while b"\r\n\r\n" not in head:
                head += connection.recv(65536)
            received.append(head)
            connection.sendall(answer)

    threading.Thread(target=accept_each, args=(listener, serve), daemon=True).start()
    try:
        app = make_app(UPSTREAMS={"b": {"targets": [f"http://127.0.0.1:{listener.getsockname()[1]}"]}},
                       ROUTES=[{"path": "/w/<path:rest>", "upstream": "b", "auth": "public"}])
        client = app.test_client()
        response = client.get("/w/x?q=1", headers={"X-Client": "probe value", "User-Agent": "probe/1"})
    finally:
        listener.close()
    assert response.status_code == 200 and response.data == b"ok"
    assert response.headers["X-Plain"] == "café"
    assert response.headers["X-Folded"] == "one two"  # urllib3 unfolds what the email parser read
    request_line, *fields = received[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert request_line == b"GET /w/x?q=1 HTTP/1.1"
    assert b"X-Client: probe value" in fields and b"User-Agent: probe/1" in fields
    assert all(b": " in field for field in fields)
