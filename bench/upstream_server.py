"""A tiny asyncio HTTP/1.1 upstream: small JSON answers after an optional delay, and a large streamed file.

Run by the benchmark as ``python -m bench.upstream_server --fd N [--delay 0.1] [--big-bytes N]`` on a
listening socket it inherits. One process holds thousands of keep-alive connections at once; each answer
is scheduled ``delay`` seconds after its request arrives (the slow upstream), or at once (the fallback fast
upstream when nginx is not installed). ``GET /big`` streams ``--big-bytes`` zero bytes with a
Content-Length, in 1 MiB writes with flow control, so the server itself never holds the file in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import socket

from bench.payload import SMALL_JSON

_CHUNK = b"\0" * (1 << 20)
_HEAD_END = b"\r\n\r\n"


def _answer(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


class _Upstream(asyncio.Protocol):
    """One client connection: parse heads (bodies skipped by Content-Length), answer in order."""

    def __init__(self, delay: float, big_bytes: int) -> None:
        self.delay = delay
        self.big_bytes = big_bytes
        self.buffer = b""
        self.skip = 0  # request body bytes still to discard
        self.transport: asyncio.Transport | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.streaming = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.skip:
                taken = min(self.skip, len(self.buffer))
                self.buffer, self.skip = self.buffer[taken:], self.skip - taken
                if self.skip:
                    return
            end = self.buffer.find(_HEAD_END)
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4:]
            lines = head.split(b"\r\n")
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    self.skip = int(value)
            path = lines[0].split(b" ")[1] if b" " in lines[0] else b"/"
            self._respond(path)

    def _respond(self, path: bytes) -> None:
        loop = asyncio.get_running_loop()
        if path.startswith(b"/big"):
            loop.create_task(self._stream_big())
        elif self.delay:
            loop.call_later(self.delay, self._write, _answer(SMALL_JSON))
        else:
            self._write(_answer(SMALL_JSON))

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    async def _stream_big(self) -> None:
        self._write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: "
                    + str(self.big_bytes).encode() + b"\r\n\r\n")
        left = self.big_bytes
        while left > 0 and self.transport is not None:
            await self.writable.wait()
            piece = _CHUNK if left >= len(_CHUNK) else _CHUNK[:left]
            self._write(piece)
            left -= len(piece)


async def _serve(fd: int, delay: float, big_bytes: int) -> None:
    listener = socket.socket(fileno=fd)
    server = await asyncio.get_running_loop().create_server(lambda: _Upstream(delay, big_bytes), sock=listener,
                                                            backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Serve on the inherited listening socket until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="an inherited listening socket")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each small answer")
    parser.add_argument("--big-bytes", type=int, default=100 * 1024 * 1024, help="size of GET /big")
    arguments = parser.parse_args()
    asyncio.run(_serve(arguments.fd, arguments.delay, arguments.big_bytes))


if __name__ == "__main__":
    main()
