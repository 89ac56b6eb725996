"""A real WebSocket upstream (the ``websockets`` library, asyncio), run in a process of its own.

``python -m tests.fakes.wsecho`` binds 127.0.0.1 on a free port and prints it. By path:

- ``/echo``: each message back as it came (text as text, binary as binary). ``close NNNN`` makes it close
  with that code; ``headers`` answers the handshake's fields as JSON.
- ``/greet``: sends ``hello`` right after the handshake, then echoes.
- ``/refuse``: refuses the handshake, 403 with a body.
- ``/closes``: answers the close codes clients have closed their connections with so far, as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

_closes: list[int | None] = []


def _refuse(connection: ServerConnection, request: Request) -> Response | None:
    if request.path.startswith("/refuse"):
        response = connection.respond(HTTPStatus.FORBIDDEN, "refused by the upstream\n")
        response.headers["X-Refused-By"] = "wsecho"
        return response
    return None


async def _handler(connection: ServerConnection) -> None:
    request = connection.request
    assert request is not None
    path = request.path
    if path.startswith("/closes"):
        await connection.send(json.dumps(_closes))
        return
    if path.startswith("/greet"):
        await connection.send("hello")
    try:
        async for message in connection:
            if isinstance(message, str) and message.startswith("close "):
                await connection.close(code=int(message.split()[1]), reason="asked to")
                return
            if message == "headers":
                await connection.send(json.dumps({name: value for name, value in request.headers.raw_items()}))
                continue
            await connection.send(message)
    except ConnectionClosed:
        pass
    finally:
        received = connection.protocol.close_rcvd
        _closes.append(received.code if received is not None else None)


async def _main() -> None:
    options: dict[str, Any] = {"max_size": None, "ping_interval": None, "compression": None}
    async with serve(_handler, "127.0.0.1", 0, process_request=_refuse, **options) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        sys.stdout.write(f"{port}\n")
        sys.stdout.flush()
        await asyncio.Future()


class WsUpstream:
    """This module's server in a process of its own, stopped by its pid; ``url`` is its http:// address."""

    def __enter__(self) -> WsUpstream:
        import subprocess  # the test side only

        self.process = subprocess.Popen([sys.executable, "-m", "tests.fakes.wsecho"], stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *_: object) -> None:
        from tests.fakes import stop_by_pid

        stop_by_pid(self.process)


if __name__ == "__main__":
    asyncio.run(_main())
