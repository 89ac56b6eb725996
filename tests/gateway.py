"""A real gateway under gunicorn with gevent workers, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.fakes import stop_by_pid

ROOT = Path(__file__).resolve().parent.parent


def echo_toml(url: str, *, upstream: str = "", route: str = "", extra: str = "") -> str:
    """A gateway config: an ``echo`` upstream at ``url`` (60 s deadline) and a public catch-all route to it.

    ``upstream`` lines go into the echo table, ``route`` lines into the route, ``extra`` after both.
    (The testing settings already declare the upstreams the project's blueprints need.)
    """
    return (
        f'[upstreams.echo]\ntargets = ["{url}"]\ntimeout = 60\n{upstream}\n\n'
        '[[routes]]\npath = "/<path:rest>"\nupstream = "echo"\nmethods = ["GET", "POST", "PUT"]\nauth = "public"\n'
        f"{route}\n\n{extra}"
    )


class Gateway:
    """One gunicorn master and its workers, on a socket bound here (no port race), stopped by pid."""

    def __init__(self, directory: Path, config: str, workers: int = 2, env: dict[str, str] | None = None) -> None:
        self.config_path = directory / f"gateway-{id(self)}.toml"
        self.config_path.write_text(config)
        self.log_path = directory / f"gateway-{id(self)}.log"
        self.workers = workers
        self.extra_env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, wait: bool = True) -> Gateway:
        """Start gunicorn and (unless ``wait`` is False) wait until every worker answers /livez."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        port = listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **{key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")},
            "GATEWAY_ENV": "testing",
            "GATEWAY_CONFIG": str(self.config_path),
            "GATEWAY_WORKERS": str(self.workers),
            "GATEWAY_LOG__LEVEL": "INFO",
            **self.extra_env,
        }
        command = [
            sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
            "--no-control-socket", "--bind", f"fd://{listener.fileno()}",
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            pass_fds=[listener.fileno()])
        listener.close()  # the master holds its own copy
        if wait:
            self._wait_until_live()
        return self

    def _wait_until_live(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/livez", timeout=1).status_code == 200:
                    # The first answer proves one worker; give the others their boot time too.
                    time.sleep(0.3)
                    return
            except requests.RequestException:
                pass  # the socket is bound before workers boot: connections queue, then time out
            time.sleep(0.1)
        raise RuntimeError(f"gateway did not come up:\n{self.log()}")

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the master to exit by itself; its exit code."""
        assert self.process is not None
        return self.process.wait(timeout)

    def log(self) -> str:
        """Everything the master and workers wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        """The workers' process ids (children of the master)."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def stop(self) -> None:
        """SIGTERM the master by its pid, then SIGKILL if it does not go in time."""
        if self.process is not None:
            stop_by_pid(self.process)


def exchange(gateway: Gateway, raw: bytes, timeout: float = 5.0, pause: float = 0.0, tail: bytes = b"") -> bytes:
    """Send raw bytes (and, after ``pause`` seconds, ``tail``), half-close, read until the server closes or goes
    quiet; what came back."""
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        try:
            connection.sendall(raw)
            if pause:
                time.sleep(pause)
            if tail:
                connection.sendall(tail)
            connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close before reading everything (a refused head)
        chunks = []
        try:
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        except (socket.timeout, ConnectionResetError):
            pass
    return b"".join(chunks)
