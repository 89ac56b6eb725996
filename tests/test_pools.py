"""Pooled upstream connections: reused while open, never reused once the upstream closed or broke them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from app.proxy.client import _Connection, _TlsConnection
from tests.conftest import AppFactory
from tests.fakes import accept_each, wait_until

_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class _OneShotUpstream:
    """Answers one request per connection with a keep-alive response, then ``after`` happens to it:
    ``"close"`` (EOF), ``"garbage"`` (bytes nobody asked for) or ``"keep"`` (stays open, answers more)."""

    def __init__(self, after: str) -> None:
        self.after = after
        self.connections = 0
        self.answered = 0
        self._open: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._answered_once = threading.Event()
        threading.Thread(target=accept_each, args=(self.listener, self._start), daemon=True).start()

    def _start(self, connection: socket.socket) -> None:
        self.connections += 1
        self._open.append(connection)
        threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            self._answer(connection)
        except OSError:
            pass  # the gateway reset a connection it would not reuse
        finally:
            connection.close()

    def _answer(self, connection: socket.socket) -> None:
        with connection.makefile("rb") as reader:
            while self._read_head(reader):
                connection.sendall(_ANSWER)
                self.answered += 1
                if self.after == "close":
                    return
                if self.after == "garbage":
                    # A second answer to no request, once the first has been read (in the same
                    # segment it would be buffered with the first, where no check can see it).
                    time.sleep(0.2)
                    connection.sendall(b"HTTP/1.1 200 OK\r\n")
                    self._answered_once.set()
                    reader.read()  # hold the connection open until the gateway drops it
                    return

    @staticmethod
    def _read_head(reader: object) -> bool:
        while True:
            line = reader.readline()  # type: ignore[attr-defined]
            if not line:
                return False
            if line in (b"\r\n", b"\n"):
                return True

    def wait_for_garbage(self) -> None:
        """Until the stray bytes are on the wire."""
        assert self._answered_once.wait(5)
        self._answered_once.clear()
        time.sleep(0.05)  # and have crossed the loopback

    def close(self) -> None:
        """Stop accepting, and end every connection still open."""
        self.listener.close()
        for connection in self._open:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed


@pytest.fixture(params=["close", "garbage", "keep"])
def upstream(request: pytest.FixtureRequest) -> Iterator[_OneShotUpstream]:
    """A raw upstream whose connections end (or not) in the way the test's parameter names."""
    server = _OneShotUpstream(request.param)
    yield server
    server.close()


def test_a_pooled_connection_is_reused_only_while_it_is_clean(make_app: AppFactory, upstream: _OneShotUpstream) -> None:
    client = make_app(
        UPSTREAMS={"raw": {"targets": [f"http://127.0.0.1:{upstream.port}"]}},
        ROUTES=[{"path": "/<path:rest>", "upstream": "raw", "auth": "public"}],
    ).test_client()

    for number in range(3):
        response = client.get(f"/call/{number}")
        assert (response.status_code, response.data) == (200, b"ok")
        if upstream.after == "garbage":
            upstream.wait_for_garbage()
        elif upstream.after == "close":
            # The EOF must have arrived before the next call looks at the pooled connection.
            wait_until(lambda: upstream.connections == number + 1 and upstream.answered == number + 1,
                       timeout=5.0, what="the upstream's close")

    assert upstream.answered == 3
    # One connection for all three while it stays clean; a new one per call after an EOF or stray bytes.
    assert upstream.connections == (1 if upstream.after == "keep" else 3)


@pytest.mark.parametrize("connection_class", [_Connection, _TlsConnection])
def test_the_reuse_check_reads_the_socket_state(connection_class: type[_Connection]) -> None:
    connection = connection_class("127.0.0.1", 1)
    assert not connection.is_connected  # never connected
    ours, theirs = socket.socketpair()
    with ours, theirs:
        connection.sock = ours
        assert connection.is_connected
        theirs.sendall(b"x")
        assert not connection.is_connected  # unexpected bytes: the next answer would be misread
        ours.recv(1)
        assert connection.is_connected
        theirs.close()
        assert not connection.is_connected  # EOF: the upstream closed it
