"""A real redis-server on a free loopback port, and a server that accepts connections and never answers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import redis

from tests.fakes import accept_each, free_port, stop_by_pid

REDIS_SERVER = "/usr/bin/redis-server"


def redis_binary() -> str:
    """The redis-server binary; under CI=true a missing one fails the run instead of skipping."""
    found = REDIS_SERVER if os.access(REDIS_SERVER, os.X_OK) else shutil.which("redis-server")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (.ci/run installs the Debian package redis-server)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return found


class RedisServer:
    """``redis-server`` without persistence on 127.0.0.1; stoppable and restartable on the same port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.process = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def client(self) -> redis.Redis:
        """A plain client of this server."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def command_calls(self) -> dict[str, int]:
        """Calls so far by command (commands run inside scripts included), less INFO itself."""
        stats: dict[str, dict[str, Any]] = self.client().info("commandstats")  # type: ignore[assignment]
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()
                if name != "cmdstat_info"}

    def stop(self) -> None:
        """Stop the server by its pid."""
        if self.process is not None:
            stop_by_pid(self.process, grace=10)
        self.process = None


class SilentServer:
    """Accepts TCP connections and never answers (a hung Redis)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=accept_each, args=(self.listener, self.held.append), daemon=True)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()
