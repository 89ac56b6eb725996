"""The gunicorn worker class: gunicorn's gevent worker, plus a hand-over on reload and a drain on stop.

``gunicorn.conf.py`` names it (``worker_class = "worker.DrainingWorker"``). The master imports this
module to load the class, so it imports gunicorn, gevent and the standard library only, never the
app (see wsgi.py): of the package, only ``app.internals``, which imports nothing but the standard library.

A worker is told to stop (SIGTERM) in two cases, which it tells apart through a small page of memory
shared by the master and every worker (``_Shared``):

- **The instance stops** (the master got SIGTERM; ``install_master_hooks`` marks it): the worker
  drains at once, and from then on ``environ["frontdesk.draining"]`` is True, so ``/readyz``
  answers 503.
- **A reload retires it** (the master has already forked newer workers): it keeps serving as
  before until one of the newer workers has loaded the app, then drains. Without this hand-over
  gunicorn's old workers stop accepting at once and new connections wait in the listen queue for
  the whole boot of the new ones (seconds). Readiness stays 200: the instance is not stopping.

Draining: gunicorn stops accepting (within a second); every response still to start gets
``Connection: close``, and a connection idle (between requests) for ``IDLE_GRACE`` seconds is
closed. gunicorn's own gevent worker leaves idle keep-alive connections open until
``graceful_timeout``, so one idle load balancer connection held every stop for the whole of it.

Three of gunicorn's pieces are replaced by name when this module is imported: its error page
(``write_problem``: problem+json), its HTTP/1 response class (``OneSendResponse``: the head goes out
in the same send as the first body bytes) and its Server name. Each is an entry of app/internals.py
(a standard-library-only module): with another gunicorn version, gunicorn's own piece stays, and the
master logs one warning.
"""

from __future__ import annotations

import _socket
import gc
import json
import mmap
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import gevent.event
from gevent.monkey import get_original
from gunicorn import util
from gunicorn.http import wsgi
from gunicorn.workers.ggevent import GeventWorker

from app.internals import check_internals, switch

__all__ = [
    "DRAIN_SIGNAL_ENVIRON_KEY", "DRAINING_ENVIRON_KEY", "IDLE_GRACE", "DrainingWorker", "OneSendResponse",
    "install_master_hooks", "settle_heap",
    "write_problem",
]

#: The WSGI environ key that tells the app its instance is stopping (app.health reads the same name).
DRAINING_ENVIRON_KEY = "frontdesk.draining"
#: The WSGI environ key of the worker's drain signal: a gevent Event set when this worker begins to
#: drain (a stop or a reload's hand-over). Long-lived answers (WebSocket tunnels) wait on it, then
#: close within their grace period (app/proxy/relay.py reads the same name).
DRAIN_SIGNAL_ENVIRON_KEY = "frontdesk.drain_signal"
#: Seconds a connection must have been idle before the drain closes it. A client that loops requests
#: is never idle this long: it sends its next request, which is answered with ``Connection: close``.
#: Closing a connection the very moment its client sends on it is what loses a request.
IDLE_GRACE = 0.5
_SWEEP_INTERVAL = 0.1
_HANDOVER_POLL = 0.05

# gevent removes poll() from the patched select module; a zero-timeout poll never blocks anyway,
# and unlike select() it takes descriptors above 1024 (worker_connections is 4096).
_poll: Callable[[], Any] = get_original("select", "poll")

StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# What gunicorn's own answers say, by status: gunicorn's messages name its parser's internals.
_SERVER_ERROR_DETAILS = {
    400: "The request is not valid HTTP/1.1.",
    403: "The request is refused.",
    414: "The request line is longer than the gateway accepts.",
    417: "The expectation in the Expect header cannot be met.",
    431: "The request's header fields are larger, or more numerous, than the gateway accepts.",
    500: "The gateway could not answer this request.",
    501: "The request's transfer coding is not supported.",
}


def write_problem(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's answer to a request its parser refused (414, 431, 400...), as problem+json, not HTML.

    Stands in for ``gunicorn.util.write_error``, which the worker's ``handle_error`` calls by name
    (gunicorn 27.0.1; tests/test_e2e_edge.py fails if that changes). The app never saw the request,
    so there is no request id; the connection is closed, as gunicorn does.
    """
    del mesg  # gunicorn's wording of the parse error, with the client's bytes: not repeated
    body = json.dumps({"type": "about:blank", "title": reason, "status": status_int,
                       "detail": _SERVER_ERROR_DETAILS.get(status_int, reason)}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


class OneSendResponse(wsgi.Response):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's HTTP/1 response, with the head sent together with the first body bytes.

    gunicorn writes the head and then each body chunk, each with its own ``send``: two system calls
    and two TCP segments for an answer of one chunk, which is what most API answers are. Here the head
    waits, inside the same ``write``, for the bytes that follow it; the bytes on the wire are the same.
    A head with nothing after it in that ``write`` (HEAD, 304, an empty chunk) goes out alone at once,
    and ``close`` and ``sendfile`` send theirs as gunicorn does, so no head ever waits for the app.
    """

    headers_sent: bool  # gunicorn's, typed here for mypy

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._head: bytes | None = None  # built by the first write, sent by _emit_body or after it

    def write(self, arg: bytes) -> None:
        """gunicorn's write; the first one carries the head in the same send as its bytes."""
        if not self.headers_sent:
            lines = self.default_headers()
            lines.extend([f"{name}: {value}\r\n" for name, value in self.headers])
            lines.append("\r\n")
            self._head = "".join(lines).encode("latin-1")
            self.headers_sent = True  # gunicorn's write must not send it on its own
        super().write(arg)
        head, self._head = self._head, None
        if head is not None:  # no body bytes went out with it
            self.sock.sendall(head)

    def _emit_body(self, data: bytes) -> None:
        head, self._head = self._head, None
        if head is None:
            super()._emit_body(data)
        elif self.chunked:
            self.sock.sendall(b"%s%X\r\n%s\r\n" % (head, len(data), data))
        else:
            self.sock.sendall(head + data)


# Set here, in the module gunicorn loads as the worker class: the master imports it before it forks.
# gunicorn builds each HTTP/1 response from ``wsgi.Response`` by name (HTTP/2 brings its own class),
# and writes its "Server" field from ``wsgi.SERVER`` on every answer (docs/edge.md).
check_internals("server")
if switch("gunicorn-write-error").on:
    util.write_error = write_problem
if switch("gunicorn-response").on:
    wsgi.Response = OneSendResponse
if switch("gunicorn-server-banner").on:
    wsgi.SERVER = "frontdesk"
_FORCE_CLOSE = switch("gunicorn-force-close")


class _Shared:
    """Three numbers in anonymous shared memory, made when the master imports this module.

    Every worker is forked from the master and so sees the same page: the age of the newest worker
    forked, the age of the newest worker that has loaded the app, and whether the master is stopping.
    Each number has one kind of writer; they only grow.
    """

    _FORMAT = "qqq"

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, struct.calcsize(self._FORMAT))

    def _read(self) -> tuple[int, int, int]:
        spawned, booted, stopping = struct.unpack_from(self._FORMAT, self._memory)
        return spawned, booted, stopping

    def _write(self, index: int, value: int) -> None:
        struct.pack_into("q", self._memory, index * 8, value)

    @property
    def spawned(self) -> int:
        """Age of the newest worker the master has forked (gunicorn numbers workers 1, 2, ...)."""
        return self._read()[0]

    @property
    def booted(self) -> int:
        """Age of the newest worker that has loaded the app."""
        return self._read()[1]

    @property
    def stopping(self) -> bool:
        """Whether the master is stopping the instance."""
        return bool(self._read()[2])

    def note_spawned(self, age: int) -> None:
        """The master is about to fork a worker of this age."""
        self._write(0, max(age, self.spawned))

    def note_booted(self, age: int) -> None:
        """A worker of this age has loaded the app."""
        self._write(1, max(age, self.booted))

    def note_stopping(self) -> None:
        """The master is stopping: workers drain at once and readiness says 503."""
        self._write(2, 1)


_shared = _Shared()


def install_master_hooks(server: Any) -> None:
    """Called in the master (on_starting): mark the shared page before gunicorn stops the workers.

    ``Arbiter.stop`` runs for SIGTERM, SIGINT, SIGQUIT and a halt alike, and signals the workers
    only after this mark is set.
    """
    if not switch("gunicorn-arbiter-stop").on:
        return  # another gunicorn: its own stop (app/internals.py)
    stop = server.stop

    def marked_stop(graceful: bool = True) -> None:
        _shared.note_stopping()
        stop(graceful)

    server.stop = marked_stop


def settle_heap() -> None:
    """Once the app is built: what start-up made (about 80,000 objects) leaves the garbage collector's sight.

    The app, its modules and settings live as long as the worker, yet every full collection walked
    them again; frozen (``gc.freeze``), they are never traversed. Measured with ``gc.callbacks`` in
    a worker under load (pass-through, 64 connections): full collections took 15 µs per request,
    0.3 after (docs/decisions.md). The young generation's threshold stays Python's: ten times
    higher cut the collections' own time but made cache hits 13 % slower side by side (likely the
    memory of dead cycles, reused later, no longer in the processor's cache).
    """
    gc.collect()
    gc.freeze()


class DrainingWorker(GeventWorker):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's gevent worker that hands over on reload and drains without waiting on idle clients."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Built in the master just before the fork: from now on a SIGTERM to an older worker is a reload.
        _shared.note_spawned(self.age)
        # Each open client connection: when it became idle (monotonic), or None while a request runs.
        self._connections: dict[Any, float | None] = {}
        self._told_to_stop = False
        self._drain_signal: gevent.event.Event | None = None  # made in the worker, after gevent's patching

    def load_wsgi(self) -> None:
        """Load the app, wrapped so it sees the drain and its answers close the connection during it."""
        super().load_wsgi()
        self._drain_signal = gevent.event.Event()
        loaded: WSGIApp = getattr(self, "wsgi")
        self.wsgi = self._drain_aware(loaded)
        settle_heap()

    def run(self) -> None:
        """Serve: the app is loaded and the listener about to be served, so older workers may hand over."""
        _shared.note_booted(self.age)
        super().run()

    def _drain_aware(self, app: WSGIApp) -> WSGIApp:
        def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            environ[DRAINING_ENVIRON_KEY] = _shared.stopping
            environ[DRAIN_SIGNAL_ENVIRON_KEY] = self._drain_signal

            def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
                # gunicorn decides Connection: close when the request starts; a request that was in
                # flight when the drain began gets it here, before its headers are written.
                if self._draining() and _FORCE_CLOSE.on:
                    getattr(start_response, "__self__").force_close()
                return start_response(status, headers, exc_info)

            return app(environ, start)

        return wsgi

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        """Serve one client connection, known to the drain while it is open."""
        self._connections[client] = time.monotonic()
        try:
            super().handle(listener, client, addr)
        finally:
            self._connections.pop(client, None)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        """Serve one request, then let the other connections have their turn.

        During the drain an answer says ``Connection: close`` (``_drain_aware``) and gunicorn closes
        the connection after it. An answer whose headers went out just before the drain began said
        keep-alive: its connection stays open, so a client that sends its next request at once gets
        an answer (with the close) rather than a connection closed under it; an idle one is swept.
        """
        self._connections[sock] = None
        try:
            result = super().handle_request(listener_name, req, sock, addr)
        finally:
            if sock in self._connections:
                self._connections[sock] = time.monotonic()
        # Let every other ready connection have its turn before this one reads its next request.
        # A client that answers fast (its next request already waiting) would otherwise be served
        # again and again without the worker ever switching: under load a few connections took
        # the whole worker while the others waited seconds (p99 1.8 s at p50 1 ms on cache hits).
        gevent.sleep(0)
        return result

    def _draining(self) -> bool:
        # The master marks the page before it signals the workers: a request can see the mark first.
        return not self.alive or _shared.stopping

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: hand over if a reload retires this worker, then drain."""
        if not self._told_to_stop:
            self._told_to_stop = True
            # Out of the signal handler, as gunicorn's gevent worker does for SIGQUIT.
            gevent.spawn(self._retire)

    def _retire(self) -> None:
        # A reload forks `workers` new workers, then stops the old ones: the newest ages are the new
        # generation's, and any of them having booted is the moment to hand over.
        newest = _shared.spawned
        first_new = newest - self.cfg.workers + 1
        if not _shared.stopping and first_new > self.age:
            # Bounded: if the new workers never boot, gunicorn halts the instance anyway.
            deadline = time.monotonic() + self.cfg.graceful_timeout
            while _shared.booted < first_new and time.monotonic() < deadline and not _shared.stopping:
                gevent.sleep(_HANDOVER_POLL)
        self.alive = False  # gunicorn's run loop closes the listener within a second
        if self._drain_signal is not None:
            self._drain_signal.set()  # open tunnels start their grace period
        self._close_idle_connections()

    def _close_idle_connections(self) -> None:
        """Until the worker exits, close each connection idle for IDLE_GRACE with nothing arriving on it."""
        while True:
            now = time.monotonic()
            for connection, idle_since in list(self._connections.items()):
                if idle_since is None or now - idle_since < IDLE_GRACE or _readable(connection):
                    continue  # serving, recently active, or a request (or the client's close) is arriving
                self._connections.pop(connection, None)
                _shut(connection)
            gevent.sleep(_SWEEP_INTERVAL)


def _readable(connection: Any) -> bool:
    """Whether bytes (or the client's end of file) wait on the connection, checked without blocking."""
    poller = _poll()
    try:
        poller.register(connection.fileno(), select.POLLIN)
    except (OSError, ValueError):
        return False  # closed meanwhile: nothing to protect
    return bool(poller.poll(0))


def _shut(connection: Any) -> None:
    """Shut the connection both ways, so its greenlet, waiting for a next request, reads end of file.

    Through a duplicate plain socket: gevent's own shutdown() would instead fail that greenlet's
    wait with EBADF, which gunicorn logs as a socket error with a traceback.
    """
    try:
        duplicate = _socket.socket(fileno=os.dup(connection.fileno()))
    except OSError:
        return  # closed meanwhile
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the client closed it first
    finally:
        duplicate.close()
