"""Processes the benchmark starts: a listening socket handed over by fd, /proc readings, stop by pid."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.fakes import stop_by_pid

__all__ = ["Service", "listener", "wait_http"]

_TICKS = os.sysconf("SC_CLK_TCK")


def listener(backlog: int = 4096) -> socket.socket:
    """A listening socket on a free loopback port; the child inherits it, so no port race."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    return sock


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # gone between listing and reading: its time is lost either way
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MiB (VmRSS), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Service:
    """One started server: a master process (gunicorn, nginx) or a single process, and where it listens."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path | None = None
    single: bool = False  # no worker processes: the process itself serves

    def workers(self) -> list[int]:
        """The processes that serve requests: the master's children, or the process itself."""
        return [self.process.pid] if self.single else _children(self.process.pid)

    def cpu_seconds(self) -> float:
        """User plus system CPU of the master and every worker, as now."""
        pids = {self.process.pid, *self.workers()}
        return sum(_cpu(pid) for pid in pids)

    def worker_rss_mb(self) -> list[float]:
        """VmRSS of each worker, MiB."""
        return [rss_mb(pid) for pid in self.workers()]

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the service wrote, for an error message."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise with the log's tail when the service has exited."""
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the process by its pid (gunicorn and nginx stop their workers), SIGKILL if it lingers."""
        stop_by_pid(self.process)


def wait_http(service: Service, path: str, expected_workers: int = 0, timeout: float = 45.0) -> None:
    """Wait until ``path`` answers 200 and ``expected_workers`` workers exist."""
    host, port = service.url.removeprefix("http://").rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.check_alive()
        try:
            connection = http.client.HTTPConnection(host, int(port), timeout=2)
            connection.request("GET", path)
            status = connection.getresponse().status
            connection.close()
            if status == 200 and len(service.workers()) >= expected_workers:
                return
        except OSError:
            pass  # the socket is bound before the server reads it: connections queue, then time out
        time.sleep(0.1)
    raise RuntimeError(f"{service.name} did not answer {path} within {timeout:.0f} s:\n{service.log_tail()}")
