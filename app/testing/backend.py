"""A scripted HTTP/1.1 upstream for gateway tests, built on the standard library only.

The backend records exactly what reached it (raw request-target, headers in order with duplicates,
body and its framing) and answers, newest rule first, what the test scripted with ``respond`` or
``respond_with``; otherwise according to the request path:

- any other path: 200 echo of the request as JSON
- ``/_/status/<code>``: that status
- ``/_/gzip``: a gzip-encoded JSON document (``GZIP_PLAIN`` / ``GZIP_BODY``)
- ``/_/cookies``: two ``Set-Cookie`` headers
- ``/_/slow/<seconds>``: sleep, then echo
- ``/_/reset``: TCP reset instead of an answer
- ``/_/truncate``: headers promising 1000 bytes, 10 bytes, then a reset
- ``/_/bytes/<n>[?chunked=1]``: n bytes of ``pattern_bytes``, streamed
- ``/_/sink``: read the body without storing it, answer its length and SHA-256
- ``/_/redirect``: 302 to ``/elsewhere``
- ``/_/hop``: hop-by-hop response headers next to an end-to-end one
- ``/_/respond?status=&header=Name:Value&body=[&delay=seconds]``: a scripted answer (after the delay)

A test can also make every request misbehave, whatever its path: ``backend.delay`` seconds of
sleep before answering, and ``backend.status`` answered instead of anything else (both after the
request is recorded). ``Backend(host=..., port=...)`` binds a given address, so a stopped backend
can come back where it was.

It is deliberately independent of Flask/Werkzeug so it cannot share a bug with the code under test.
Threads and sockets are used plainly: under gevent's monkey-patching they become cooperative, and
without it they are ordinary threads.
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from app.testing.payloads import BLOCK, BLOCK_SIZE, CHUNKED_BLOCK, GZIP_BODY, GZIP_PLAIN, pattern_bytes, pattern_sha256
from app.testing.records import UNSET, HeaderInput, Received, Reply, mismatches

__all__ = [
    "GZIP_BODY",
    "GZIP_PLAIN",
    "Backend",
    "Received",
    "Reply",
    "pattern_bytes",
    "pattern_sha256",
]

#: What ``respond_with`` takes: the request in, the answer out.
Responder = Callable[[Received], Reply]

_READ_SIZE = 64 * 1024
_MAX_LINE = 65536
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


class _BadRequest(Exception):
    """The request cannot be read; answer 400 and close the connection."""


class _Incomplete(Exception):
    """The client closed the connection before the whole body arrived."""


def _json_bytes(document: object) -> bytes:
    """Serialise a response document."""
    return json.dumps(document).encode("utf-8")


def _first(pairs: Iterable[tuple[str, str]], key: str) -> str | None:
    """The first value for key in a parsed query string."""
    for name, value in pairs:
        if name == key:
            return value
    return None


def _parse_status(text: str) -> int:
    """A status code from text, or _BadRequest."""
    if not (len(text) == 3 and text.isdigit() and text[0] != "0"):
        raise _BadRequest(f"bad status code: {text!r}")
    return int(text)


def _parse_delay(text: str) -> float:
    """Seconds to wait, from a path segment or a query value: finite and not negative."""
    try:
        seconds = float(text)
    except ValueError:
        raise _BadRequest(f"bad delay: {text!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise _BadRequest(f"bad delay: {text!r}")
    return seconds


def _parse_size(text: str) -> int:
    """A non-negative decimal size from text, or _BadRequest."""
    # isdigit() alone would accept Unicode digits and int() would accept '+', '_' and spaces.
    if not (text and text.isascii() and text.isdigit()):
        raise _BadRequest(f"bad size: {text!r}")
    return int(text)


class _Server(ThreadingHTTPServer):
    """The listening side of one Backend; remembers open connections so stop() can end them."""

    daemon_threads = True
    # stop() must not wait for a handler that is sleeping or streaming a gigabyte.
    block_on_close = False
    # Tests fire hundreds of concurrent connections; the default backlog of 5 would refuse some.
    request_queue_size = 1024

    def __init__(self, backend: Backend, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind ``host`` (127.0.0.1) on ``port`` (a free one)."""
        self.backend = backend
        self._connections: set[Any] = set()
        self._connections_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address (slow on some hosts)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = self.socket.getsockname()[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client went away; report anything else."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def track(self, connection: Any) -> None:
        """Remember an open client connection."""
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: Any) -> None:
        """Forget a client connection that its handler is done with."""
        with self._connections_lock:
            self._connections.discard(connection)

    def end_connections(self) -> None:
        """Shut every open connection so idle keep-alive handlers see EOF and exit."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                # Already closed by its handler in the meantime.
                pass


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time, records it, and answers per the path convention."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeBackend/1.0"
    # Head and body go out in separate writes; with Nagle on, each answer would wait ~40 ms
    # for the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        """The Server header value (without the Python version the base class appends)."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Drop the per-request stderr line; tests inspect Backend.received instead."""

    def setup(self) -> None:
        """Register the connection with the server."""
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        """Unregister the connection."""
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def handle_one_request(self) -> None:
        """Read and answer one request; unlike the base class, any method name is accepted."""
        try:
            self.raw_requestline = self.rfile.readline(_MAX_LINE + 1)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if len(self.raw_requestline) > _MAX_LINE:
                self.requestline = ""
                self.request_version = ""
                self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.parse_request():
                return
            self._serve()
            self.wfile.flush()
        except OSError:
            # The peer went away (reset, broken pipe) or stop() shut the socket: nobody to answer.
            self.close_connection = True

    # --- reading -------------------------------------------------------------------------------

    def _framing(self) -> str | None:
        """How the request body is delimited, or _BadRequest if that cannot be determined."""
        codings = [
            coding.strip().lower()
            for value in self.headers.get_all("Transfer-Encoding", [])
            for coding in str(value).split(",")
            if coding.strip()
        ]
        has_length = self.headers.get_all("Content-Length") is not None
        if codings:
            if codings[-1] != "chunked":
                raise _BadRequest("Transfer-Encoding does not end in chunked")
            # Both at once is a request-smuggling vector; tests assert the gateway never sends it.
            return "both" if has_length else "chunked"
        if has_length:
            return "content-length"
        return None

    def _content_length(self) -> int:
        """The declared body length; identical repeated values are tolerated (RFC 9110 8.6)."""
        values = {
            part.strip()
            for value in self.headers.get_all("Content-Length", [])
            for part in str(value).split(",")
        }
        if len(values) != 1:
            raise _BadRequest(f"conflicting Content-Length values: {sorted(values)}")
        return _parse_size(values.pop())

    def _read_line(self) -> bytes:
        """One CRLF-terminated line of chunked framing."""
        line = self.rfile.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise _BadRequest("chunk framing line too long")
        if not line.endswith(b"\n"):
            raise _Incomplete()
        return line

    def _read_exact(self, size: int, consume: Callable[[bytes], None]) -> None:
        """Pass exactly size body bytes to consume, in bounded pieces."""
        remaining = size
        while remaining:
            piece = self.rfile.read(min(remaining, _READ_SIZE))
            if not piece:
                raise _Incomplete()
            consume(piece)
            remaining -= len(piece)

    def _read_chunked(self, consume: Callable[[bytes], None]) -> int:
        """Decode a chunked body into consume; extensions and trailers are read and dropped."""
        total = 0
        while True:
            size_text = self._read_line().split(b";", 1)[0].strip()
            if not size_text or not _HEX_DIGITS.issuperset(size_text):
                raise _BadRequest(f"bad chunk size: {size_text!r}")
            size = int(size_text, 16)
            if size == 0:
                break
            self._read_exact(size, consume)
            if self.rfile.read(2) != b"\r\n":
                raise _BadRequest("chunk data not followed by CRLF")
            total += size
        while self._read_line().strip(b"\r\n"):
            pass
        return total

    def _read_body(self, framing: str | None, consume: Callable[[bytes], None]) -> int:
        """Read the whole body per its framing into consume; returns its length."""
        if framing in ("chunked", "both"):
            return self._read_chunked(consume)
        if framing == "content-length":
            length = self._content_length()
            self._read_exact(length, consume)
            return length
        return 0

    # --- writing -------------------------------------------------------------------------------

    def _send_head(self, status: int, headers: Iterable[tuple[str, str]], *, bare: bool = False) -> None:
        """Status line and headers; bare leaves out the Server and Date headers."""
        if bare:
            self.send_response_only(status)
        else:
            self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    def _send_body(self, body: bytes) -> None:
        """The body, unless this is a HEAD request."""
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, document: object, extra: Iterable[tuple[str, str]] = ()) -> None:
        """A JSON answer with Content-Length."""
        body = _json_bytes(document)
        headers = [("Content-Type", "application/json"), *extra, ("Content-Length", str(len(body)))]
        self._send_head(status, headers)
        self._send_body(body)

    def _fail(self, status: int, message: str) -> None:
        """An error answer after which the connection is closed (its state may be unknown)."""
        self._send_json(status, {"error": message}, [("Connection", "close")])

    def _abort(self) -> None:
        """Close the connection with a TCP reset instead of an orderly FIN."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # rfile holds a reference on the socket: the descriptor, and with it the RST, only goes
        # once both are closed.
        self.rfile.close()
        self.connection.close()

    # --- answering -----------------------------------------------------------------------------

    def _serve(self) -> None:
        """Read the body, record the request, then dispatch on the path."""
        # self.path may be normalised by the base class (e.g. leading '//'); the request line is not.
        target = self.requestline.split()[1]
        if target.startswith(("http://", "https://")):
            parts = urlsplit(target)
            path, query = parts.path or "/", parts.query
        else:
            path, _, query = target.partition("?")
        sink = path == "/_/sink"
        chunks: list[bytes] = []
        digest = hashlib.sha256()
        consume: Callable[[bytes], None] = digest.update if sink else chunks.append
        try:
            framing = self._framing()
            length = self._read_body(framing, consume)
        except _BadRequest as exc:
            self._fail(400, str(exc))
            return
        except _Incomplete:
            self.close_connection = True
            return
        received = Received(
            method=self.command,
            target=target,
            headers=tuple((str(name), str(value)) for name, value in self.headers.items()),
            body=b"".join(chunks),
            framing=framing,
            body_length=length,
        )
        self.server.backend._record(received)
        if framing == "both":
            # The two framings disagree about where the next request starts; do not guess.
            self.close_connection = True
        pairs = parse_qsl(query, keep_blank_values=True)
        try:
            self._dispatch(path, pairs, received, digest)
        except _BadRequest as exc:
            self._fail(400, str(exc))

    def _dispatch(
        self, path: str, pairs: list[tuple[str, str]], received: Received, digest: Any
    ) -> None:
        """Answer per the path convention (or as the test scripted every answer)."""
        backend = self.server.backend
        if backend.delay:
            time.sleep(backend.delay)
        responder = backend._responder_for(received)
        if backend.status is not None:
            self._answer_status(backend.status)
        elif responder is not None:
            self._send_scripted(responder, received)
        elif path.startswith("/_/status/"):
            self._answer_status(_parse_status(path.removeprefix("/_/status/")))
        elif path == "/_/gzip":
            self._answer_gzip()
        elif path == "/_/cookies":
            headers = [("Set-Cookie", "a=1; Path=/; HttpOnly"), ("Set-Cookie", "b=2; Path=/; Secure")]
            self._send_json(200, {"cookies": ["a", "b"]}, headers)
        elif path.startswith("/_/slow/"):
            self._answer_slow(path.removeprefix("/_/slow/"), received)
        elif path == "/_/reset":
            self._abort()
        elif path == "/_/truncate":
            self._answer_truncated()
        elif path.startswith("/_/bytes/"):
            self._answer_bytes(_parse_size(path.removeprefix("/_/bytes/")), _first(pairs, "chunked") == "1")
        elif path == "/_/sink":
            self._send_json(200, {"body_length": received.body_length, "sha256": digest.hexdigest()})
        elif path == "/_/redirect":
            self._send_json(302, {"location": "/elsewhere"}, [("Location", "/elsewhere")])
        elif path == "/_/hop":
            self._answer_hop()
        elif path == "/_/respond":
            self._answer_scripted(pairs)
        else:
            self._answer_echo(received)

    def _answer_echo(self, received: Received) -> None:
        """200 with the request as JSON; HEAD gets the Content-Length its GET would have."""
        document = {
            "backend": self.server.backend.name,
            "method": "GET" if received.method == "HEAD" else received.method,
            "target": received.target,
            "headers": [[name, value] for name, value in received.headers],
            "body": received.body.decode("utf-8", errors="replace"),
            "framing": received.framing,
            "body_length": received.body_length,
        }
        self._send_json(200, document)

    def _answer_status(self, status: int) -> None:
        """That status; no body for 1xx/204/304, and no Content-Length for 1xx/204."""
        body = _json_bytes({"status": status})
        headers = [("X-Backend", self.server.backend.name)]
        if status < 200 or status == 204:
            self._send_head(status, headers)
        elif status == 304:
            # A 304 may carry the Content-Length of the representation it stands for (RFC 9110
            # 8.6); a gateway that then waits for a body hangs, which is what this checks.
            self._send_head(status, [*headers, ("Content-Length", str(len(body)))])
        else:
            headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            self._send_head(status, headers)
            self._send_body(body)

    def _answer_gzip(self) -> None:
        """The gzip-encoded catalogue document."""
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
            ("Vary", "Accept-Encoding"),
            ("Content-Length", str(len(GZIP_BODY))),
        ]
        self._send_head(200, headers)
        self._send_body(GZIP_BODY)

    def _answer_slow(self, text: str, received: Received) -> None:
        """Sleep (cooperatively under gevent, which patches time.sleep), then echo."""
        time.sleep(_parse_delay(text))
        self._answer_echo(received)

    def _answer_truncated(self) -> None:
        """Promise 1000 bytes, send 10, then reset the connection."""
        self._send_head(200, [("Content-Type", "application/octet-stream"), ("Content-Length", "1000")])
        self.wfile.write(pattern_bytes(10))
        self.wfile.flush()
        self._abort()

    def _answer_bytes(self, size: int, chunked: bool) -> None:
        """Stream size pattern bytes in 64 KiB writes, never holding more than one block."""
        framing = ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(size))
        self._send_head(200, [("Content-Type", "application/octet-stream"), framing])
        if self.command == "HEAD":
            return
        write = self.wfile.write
        full, rest = divmod(size, BLOCK_SIZE)
        block = CHUNKED_BLOCK if chunked else BLOCK
        for _ in range(full):
            write(block)
        if rest:
            tail = BLOCK[:rest]
            write(b"%x\r\n" % rest + tail + b"\r\n" if chunked else tail)
        if chunked:
            write(b"0\r\n\r\n")

    def _answer_hop(self) -> None:
        """Hop-by-hop headers (which a proxy must strip) next to an end-to-end one."""
        headers = [
            # Names X-Private as connection-specific without asking for the connection to close.
            ("Connection", "X-Private"),
            ("X-Private", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authenticate", "Basic"),
            ("Upgrade", "h2c"),
            ("X-Public", "ok"),
        ]
        self._send_json(200, {"hop": True}, headers)

    def _answer_scripted(self, pairs: list[tuple[str, str]]) -> None:
        """Status, headers and body taken from the query string; nothing else is added."""
        status = _parse_status(_first(pairs, "status") or "200")
        delay = _first(pairs, "delay")
        headers: list[tuple[str, str]] = []
        for key, value in pairs:
            if key == "header":
                name, colon, content = value.partition(":")
                if not colon or not name.strip():
                    raise _BadRequest(f"header must be Name:Value, got {value!r}")
                headers.append((name.strip(), content.strip()))
        body = (_first(pairs, "body") or "").encode("utf-8")
        self._send_reply(Reply(status, tuple(headers), body, _parse_delay(delay) if delay is not None else 0.0))

    def _send_scripted(self, responder: Responder, received: Received) -> None:
        """The test's responder's answer; a responder that fails answers 500 naming the error."""
        try:
            reply = responder(received)
        except Exception as exc:  # the test's own code: its bug must reach the test, not kill the connection
            self._fail(500, f"responder raised {exc!r}")
            return
        self._send_reply(reply)

    def _send_reply(self, reply: Reply) -> None:
        """A scripted answer, after its delay; only Content-Length is added, and only when missing."""
        if reply.delay:
            time.sleep(reply.delay)
        status, headers = reply.status, list(reply.headers)
        bodiless = status < 200 or status in (204, 304)
        # A scripted Content-Length or Transfer-Encoding wins, so tests can script framing lies.
        framed = any(name.lower() in ("content-length", "transfer-encoding") for name, _ in headers)
        if not framed and not (status < 200 or status == 204):
            headers.append(("Content-Length", str(len(reply.body))))
        self._send_head(status, headers, bare=True)
        if not bodiless:
            self._send_body(reply.body)


class Backend:
    """A scripted upstream: echoes and records every request; special paths misbehave on purpose."""

    def __init__(self, name: str = "backend", host: str = "127.0.0.1", port: int = 0) -> None:
        """Prepare a backend; nothing listens until start() (on ``port``, or a free one)."""
        self.name = name
        self.host = host
        self.requested_port = port
        #: When set, every request is answered with this status (after being recorded).
        self.status: int | None = None
        #: Seconds every request waits before it is answered.
        self.delay = 0.0
        self.received: list[Received] = []
        # (method or None, path or None, responder), newest first: the first match answers.
        self._rules: list[tuple[str | None, str | None, Responder]] = []
        self._condition = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The TCP port the backend listens on."""
        if self._server is None:
            raise RuntimeError(f"backend {self.name!r} is not running")
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the backend, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Backend:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread."""
        if self._server is not None:
            raise RuntimeError(f"backend {self.name!r} is already running")
        server = _Server(self, self.host, self.requested_port)
        self._port = server.server_port
        self.requested_port = self._port  # a restart comes back on the same port
        # A short poll interval keeps stop() fast; shutdown() waits for the serve loop to notice.
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-backend-{self.name}",
            daemon=True,
        )
        self._server = server
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, end open connections and close the listening socket."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        # Without this, idle keep-alive connections (e.g. in the gateway's pool) would still be served.
        server.end_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)

    def __enter__(self) -> Backend:
        """Start the backend."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the backend."""
        self.stop()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """A snapshot of received once it holds at least count requests; TimeoutError otherwise."""
        with self._condition:
            if not self._condition.wait_for(lambda: len(self.received) >= count, timeout):
                raise TimeoutError(
                    f"backend {self.name!r} received {len(self.received)} requests, expected {count}"
                )
            return list(self.received)

    def clear(self) -> None:
        """Forget every recorded request."""
        with self._condition:
            self.received.clear()

    # --- scripting -----------------------------------------------------------------------------

    def respond(self, status: int = 200, *, json: Any = UNSET, body: bytes | str | None = None,
                headers: HeaderInput | None = None, delay: float = 0.0,
                path: str | None = None, method: str | None = None) -> Backend:
        """Answer this from now on (only ``path``/``method`` if given; the newest matching rule wins)."""
        reply = Reply.of(status, json=json, body=body, headers=headers, delay=delay)
        return self.respond_with(lambda _: reply, path=path, method=method)

    def respond_with(self, responder: Responder, *, path: str | None = None,
                     method: str | None = None) -> Backend:
        """Answer what ``responder(received)`` returns (only ``path``/``method`` if given)."""
        with self._condition:
            self._rules.insert(0, (method.upper() if method else None, path, responder))
        return self

    def _responder_for(self, received: Received) -> Responder | None:
        """The newest scripted rule matching the request, or None (path conventions and echo)."""
        with self._condition:
            for method, path, responder in self._rules:
                if method in (None, received.method) and path in (None, received.path):
                    return responder
        return None

    # --- asserting -----------------------------------------------------------------------------

    @property
    def requests(self) -> list[Received]:
        """Every request received so far, oldest first (a snapshot)."""
        with self._condition:
            return list(self.received)

    @property
    def last_request(self) -> Received:
        """The latest request received; AssertionError if none reached this upstream."""
        with self._condition:
            if not self.received:
                raise AssertionError(f"upstream {self.name!r} received no request")
            return self.received[-1]

    def assert_forwarded(self, method: str | None = None, path: str | None = None, *, query: str | None = None,
                         headers: Mapping[str, str | None] | None = None, body: bytes | None = None,
                         json: Any = UNSET) -> Received:
        """Check the latest request against what is given (a header given as None must be absent)."""
        received = self.last_request
        found = mismatches(received, method=method, path=path, query=query, headers=headers, body=body, json=json)
        if found:
            raise AssertionError(f"upstream {self.name!r} received {received.method} {received.target}: "
                                 + "; ".join(found))
        return received

    def _record(self, received: Received) -> None:
        """Append one request and wake waiters."""
        with self._condition:
            self.received.append(received)
            self._condition.notify_all()
