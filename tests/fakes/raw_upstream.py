"""An upstream that answers hand-written bytes: the hostile peer of the integrity tests.

Each request's path picks its answer: ``/ok/<id>`` is a well-formed answer carrying the id, so a
client that gets another's bytes is caught; ``/case/<name>`` plays a scripted answer, parts with
pauses between them. Connections are kept alive, as a real upstream's are, so a gateway that leaves
bytes on a pooled connection hands them to the next request.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.fakes import accept_each

__all__ = ["RawUpstream", "ok_answer"]

Script = list[bytes | float]  # bytes to send, or seconds to wait


def ok_answer(ident: bytes) -> bytes:
    """A plain answer whose body names the request it answers."""
    body = b"id=" + ident
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@dataclass
class RawUpstream:
    """Scripted answers by path; every request head it read, in order."""

    scripts: dict[str, Script] = field(default_factory=dict)
    heads: list[bytes] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._connections: list[socket.socket] = []

    def __enter__(self) -> RawUpstream:
        threading.Thread(target=accept_each, args=(self._listener, self._serve_async), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        for connection in self._connections:
            connection.close()

    def received(self, marker: bytes) -> list[bytes]:
        """The request heads that contain ``marker``."""
        return [head for head in self.heads if marker in head]

    def _serve_async(self, connection: socket.socket) -> None:
        self._connections.append(connection)
        threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            for head in _requests(connection):
                self.heads.append(head)
                path = head.split(b" ", 2)[1].decode("latin-1")
                if path.startswith("/case/"):
                    script = self.scripts[path[len("/case/"):].split("?")[0]]
                else:
                    script = [ok_answer(path.rsplit("/", 1)[-1].encode())]
                for part in script:
                    if isinstance(part, float):
                        time.sleep(part)
                    else:
                        connection.sendall(part)
        except OSError:
            pass  # the gateway closed the connection
        finally:
            connection.close()


def _requests(connection: socket.socket) -> Iterator[bytes]:
    """Each request's head as it arrives (its body read and dropped)."""
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            data = connection.recv(65536)
            if not data:
                return
            buffer += data
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            while b"0\r\n\r\n" not in buffer:
                data = connection.recv(65536)
                if not data:
                    return
                buffer += data
            buffer = buffer.partition(b"0\r\n\r\n")[2]
        elif b"content-length:" in lower:
            length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
            while len(buffer) < length:
                data = connection.recv(65536)
                if not data:
                    return
                buffer += data
            buffer = buffer[length:]
        yield head
