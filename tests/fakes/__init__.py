"""Test doubles that stand in for real services around the gateway."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

__all__ = ["accept_each", "free_port", "free_ports", "stop_by_pid", "wait_until"]


def free_port() -> int:
    """A loopback port nothing listens on right now (bound, read, released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """``count`` different loopback ports nothing listens on right now (all bound at once, then released)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def accept_each(listener: socket.socket, handle: Callable[[socket.socket], object]) -> None:
    """Accept connections on ``listener`` until it is closed, handing each to ``handle`` (a fake's accept loop)."""
    while True:
        try:
            connection, _ = listener.accept()
        except OSError:
            return  # the listener was closed: the fake is stopping
        handle(connection)


def stop_by_pid(process: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM a server by its own pid (gunicorn and nginx stop their workers), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str = "the condition") -> None:
    """Poll ``condition`` (a state with no event to wait on; cooperative under gevent) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
