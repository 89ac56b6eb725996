"""Serve all demo backends from one process with gevent's WSGI server until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import gevent
from flask import Flask
from gevent.event import Event
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer

from examples.demo.catalog import create_catalog_app
from examples.demo.idp import create_idp_app
from examples.demo.orders import create_orders_app
from examples.demo.users import create_users_app

# Seconds that stop() lets in-flight requests (say a /slow one) finish before killing them.
STOP_TIMEOUT = 2.0


@dataclass(frozen=True)
class Backend:
    """One demo service to serve: a display label, an app and the port it listens on."""

    label: str
    app: Flask
    port: int


def parse_port(text: str) -> int:
    """Parse one TCP port for argparse (0 asks the OS for a free one)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def parse_ports(text: str) -> list[int]:
    """Parse a comma-separated list of TCP ports for argparse."""
    ports = [parse_port(part.strip()) for part in text.split(",") if part.strip()]
    if not ports:
        raise argparse.ArgumentTypeError("give at least one port")
    return ports


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line of `python -m examples.demo`."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.demo",
        description="Run the demo backends (users x N, orders, catalog, idp) that the gateway demo proxies to.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--users-ports",
        type=parse_ports,
        default=[9101, 9102],
        metavar="PORT[,PORT...]",
        help="one users instance per port, to show round-robin (default: 9101,9102)",
    )
    parser.add_argument("--orders-port", type=parse_port, default=9201, help="default: %(default)s")
    parser.add_argument("--catalog-port", type=parse_port, default=9301, help="default: %(default)s")
    parser.add_argument("--idp-port", type=parse_port, default=9401, help="the demo identity provider (default: "
                        "%(default)s)")
    return parser.parse_args(argv)


def build_backends(args: argparse.Namespace) -> list[Backend]:
    """Build every demo app from the parsed options, users instances numbered from 1."""
    backends = [
        Backend(f"users#{number}", create_users_app(str(number)), port)
        for number, port in enumerate(args.users_ports, start=1)
    ]
    backends.append(Backend("orders", create_orders_app(), args.orders_port))
    backends.append(Backend("catalog", create_catalog_app(), args.catalog_port))
    backends.append(Backend("idp", create_idp_app(), args.idp_port))
    return backends


def url_for_address(host: str, port: int) -> str:
    """Format a listening address as a URL, bracketing IPv6 literals."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def stop_all(servers: Sequence[WSGIServer]) -> None:
    """Stop servers concurrently, so shutdown takes one STOP_TIMEOUT rather than one per server."""
    gevent.joinall([gevent.spawn(server.stop, timeout=STOP_TIMEOUT) for server in servers])


def main(argv: Sequence[str] | None = None) -> int:
    """Start every backend, print where each listens, and block until SIGINT or SIGTERM."""
    args = parse_args(argv)
    servers: list[WSGIServer] = []
    for backend in build_backends(args):
        # log=None silences the per-request access log; error_log stays on its stderr default
        # so handler crashes are still visible. The (unbounded) Pool is what makes stop() wait
        # for in-flight requests: with gevent's default spawn it returns at once, and exiting
        # then cuts those requests off with an empty reply.
        server = WSGIServer((args.host, backend.port), backend.app, spawn=Pool(), log=None)
        try:
            server.start()
        except OSError as error:
            print(f"demo {backend.label}: cannot listen on port {backend.port}: {error}", file=sys.stderr)
            stop_all(servers)
            return 1
        servers.append(server)
        port: int = server.address[1]
        print(f"demo {backend.label} listening on {url_for_address(args.host, port)}", flush=True)

    stopping = Event()
    # Hub-level handlers rather than signal.signal: they run in a greenlet, so stop() may block
    # and yield, and Ctrl-C does not raise KeyboardInterrupt in the middle of a request.
    handlers = [gevent.signal_handler(signum, stopping.set) for signum in (signal.SIGINT, signal.SIGTERM)]
    try:
        stopping.wait()
    finally:
        for handler in handlers:
            handler.cancel()
        print("demo stopping", flush=True)
        stop_all(servers)
    return 0
