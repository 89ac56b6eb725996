"""Upstream answers (app/proxy/wire.py) against h11, the reference: generated valid and hostile answers.

Each answer is read twice: by ``UpstreamResponse`` over a real socket, and by a fresh h11 client
connection. Where h11 refuses, the gateway must refuse; where h11 accepts, the gateway must give the
same status, fields and body, or refuse in one of the three cases it is documented to be stricter.
The run is bounded (a fixed seed); ``WIRE_FUZZ_CASES`` and ``WIRE_FUZZ_SEED`` ask for a longer or another one.
"""

from __future__ import annotations

import http.client
import os
import random
import re
import socket
import threading
from dataclasses import dataclass
from typing import Any

import h11
import pytest

from app.proxy.wire import UpstreamProtocolError, UpstreamResponse
from tests.wire_cases import hostile_answer

CASES = int(os.environ.get("WIRE_FUZZ_CASES", "3000"))
SEED = int(os.environ.get("WIRE_FUZZ_SEED", "20"))


@dataclass(frozen=True)
class Reading:
    """What one parser made of an answer: refused, or status, fields and body."""

    refused: bool
    status: int = 0
    fields: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    reusable: bool = False
    plain: bool = False  # read by the gateway's own plain-answer reader, not by h11


def reference(raw: bytes, method: str) -> Reading:
    """h11's reading: the final answer after any interim ones, its body, and whether the connection is reusable."""
    parser = h11.Connection(h11.CLIENT)
    parser.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    parser.send(h11.EndOfMessage())
    parser.receive_data(raw)
    parser.receive_data(b"")
    body = b""
    try:
        event = parser.next_event()
        while type(event) is h11.InformationalResponse:
            event = parser.next_event()
        if type(event) is not h11.Response:
            return Reading(True)
        response = event
        while True:
            event = parser.next_event()
            if type(event) is h11.Data:
                body += bytes(event.data)
            elif type(event) is h11.EndOfMessage:
                break
            else:
                return Reading(True)
    except h11.RemoteProtocolError:
        return Reading(True)
    fields = tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in response.headers.raw_items())
    return Reading(False, response.status_code, fields, body)


def gateway(raw: bytes, method: str) -> Reading:
    """UpstreamResponse's reading of the same bytes, from a socket."""
    ours, theirs = socket.socketpair()
    writer = threading.Thread(target=_send_all, args=(theirs, raw), daemon=True)
    writer.start()
    try:
        response = UpstreamResponse(ours, method=method)
        try:
            response.begin()
            body = response.read()
        except (UpstreamProtocolError, http.client.HTTPException, OSError):
            return Reading(True)
        fields = tuple(response.headers.items())
        return Reading(False, response.status, fields, body, not response.will_close, response.plain)
    finally:
        writer.join()
        ours.close()


def _send_all(sock: socket.socket, raw: bytes) -> None:
    with sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the reader refused early and closed its end


def stricter_than_h11(raw: bytes, fields: tuple[tuple[str, str], ...]) -> bool:
    """The documented refusals h11 leaves to its caller: another HTTP version, both framings, a repeated
    length, a control character or DEL in a field value."""
    head = final_head(raw)
    names = [name.lower() for name, _ in fields]
    lengths = [line for line in head.splitlines() if line.lower().startswith(b"content-length")]
    controls = any(re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value) for _, value in fields)
    return (head[5:8] not in (b"1.0", b"1.1") or ("transfer-encoding" in names and "content-length" in names)
            or len(lengths) > 1 or any(b"," in line for line in lengths) or controls)


def final_head(raw: bytes) -> bytes:
    """The head of the first answer that is not interim (1xx)."""
    match = re.match(rb"(?s)(?:HTTP/[^ ]* 1\d\d.*?\r?\n\r?\n)*(.*?\r?\n\r?\n)", raw)
    assert match is not None, raw
    return match.group(1)


def expected_fields(fields: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """h11's fields as the gateway hands them on: Transfer-Encoding undone, Content-Length in its shortest form."""
    out = []
    for name, value in fields:
        if name.lower() == "transfer-encoding":
            continue
        out.append((name, str(int(value)) if name.lower() == "content-length" else value))
    return tuple(out)


def check(raw: bytes, method: str) -> Reading:
    """One answer: the gateway refuses what h11 refuses, and otherwise reads what h11 reads (or refuses by rule)."""
    want = reference(raw, method)
    got = gateway(raw, method)
    if want.refused:
        assert got.refused, f"h11 refuses, the gateway accepted: {raw!r}"
        return got
    if got.refused:
        assert stricter_than_h11(raw, want.fields), f"the gateway refused what h11 accepts: {raw!r}"
        return got
    assert (got.status, got.fields, got.body) == (want.status, expected_fields(want.fields), want.body), raw
    return got


KNOWN = [
    # Interim answers are read past, the final one is the answer (class 1 of the integrity issue).
    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    # A bare CR, NUL or another control character in a field; obs-fold; a space before the colon (class 2).
    b"HTTP/1.1 200 OK\r\nX-A: foo\rX-Injected: yes\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: f\x00oo\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: f\x01oo\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A : foo\r\nContent-Length: 0\r\n\r\n",
    # Framing (class 3 and 9).
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 005\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
    b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nto the end",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"",
]


@pytest.mark.parametrize("raw", KNOWN)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_known_answers_read_as_h11_reads_them(raw: bytes, method: str) -> None:
    check(raw, method)


def test_generated_answers_read_as_h11_reads_them() -> None:
    """The differential fuzz: a fixed seed, a few seconds; both sides of every case agree."""
    rand = random.Random(SEED)
    refused = accepted = plain = 0
    for _ in range(CASES):
        raw = hostile_answer(rand)
        method = rand.choice(("GET", "GET", "GET", "HEAD"))
        reading = check(raw, method)
        if reading.refused:
            refused += 1
        else:
            accepted += 1
            plain += reading.plain
    # The generator must exercise both sides and both of the gateway's readers, or the comparison proves little.
    assert refused > CASES // 10 and accepted > CASES // 10 and plain > CASES // 10, (refused, accepted, plain)


@pytest.mark.parametrize("raw, reusable", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.1 200 OK\r\n\r\nto the end", False),
    # Bytes past the answer: another answer nobody asked for; it must never reach the next caller.
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil", False),
    (b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n", False),
])
def test_a_connection_is_kept_only_when_nothing_follows_the_answer(raw: bytes, reusable: bool) -> None:
    reading = gateway(raw, "GET")
    assert not reading.refused
    assert reading.reusable is reusable


def test_bytes_past_the_answer_shut_the_socket() -> None:
    """A kept-alive socket with stray bytes after the answer is shut down, so the pool's check drops it."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
        response = UpstreamResponse(ours, method="GET")
        response.begin()
        assert response.read() == b"ok" and response.isclosed()
        assert ours.recv(1) == b""  # shut down for reading: the pool sees it as closed


def test_head_size_is_bounded() -> None:
    raw = b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    assert gateway(raw, "GET").refused


def test_endless_interim_answers_are_refused() -> None:
    raw = b"HTTP/1.1 102 Processing\r\n\r\n" * 40 + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert gateway(raw, "GET").refused


def reads_in_blocks(sizes: list[int]) -> Any:
    """A chunked answer whose body arrives as ``sizes`` chunks, for the streaming check."""
    body = b"".join(b"%x\r\n%s\r\n" % (size, b"x" * size) for size in sizes)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n"


def test_body_is_handed_on_as_it_arrives() -> None:
    """read(n) returns what has arrived, without waiting for n bytes: a stream reaches the client event by event."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nevent1\r\n")
        response = UpstreamResponse(ours, method="GET")
        response.begin()
        assert response.read(65536) == b"event1"  # the rest has not been sent yet
        theirs.sendall(b"6\r\nevent2\r\n0\r\n\r\n")
        assert response.read(65536) == b"event2"
        assert response.read(65536) == b"" and response.isclosed()


def test_a_body_that_came_with_its_head_is_streamed_whole() -> None:
    """The whole answer in one read: urllib3's stream still gets every byte before the answer counts as closed."""
    from urllib3.response import HTTPResponse

    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        response = UpstreamResponse(ours, method="GET")
        response.begin()
        assert response.plain and not response.isclosed()
        wrapped = HTTPResponse(body=response, headers=dict(response.headers), status=200, preload_content=False,
                               original_response=response)
        assert b"".join(wrapped.stream(65536, decode_content=False)) == b"hello"
        assert response.isclosed()
