"""A WebSocket tunnel once both handshakes are done: bytes relayed both ways until a side closes or a limit ends it.

The relay never reads a WebSocket frame: it copies bytes (decision 97). Two pumps, one per direction:
the greenlet that serves the client's connection pumps upstream to client, one more greenlet the other
way. The limits (idle, lifetime, the drain's grace) are one timer on the event loop, set for the next
deadline. A side's end of file is passed on as a half-close, so a close handshake completes; the tunnel
is over when both pumps are.
A limit ends it by closing both connections (the client sees code 1006): the relay cannot write a
close frame in the middle of another frame without parsing them.
"""

from __future__ import annotations

import _socket
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent

from app.observability import metrics

__all__ = ["CLOSE_REASONS", "Relay", "TunnelFigures", "TunnelLimits"]

#: Why a tunnel closed: a side closed (or reset) its connection, or a limit ended it.
CLOSE_REASONS = metrics.TUNNEL_CLOSE_REASONS
_READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class TunnelLimits:
    """One route's limits on its WebSocket tunnels, per worker."""

    max_tunnels: int = 1000  # open at once in one worker; one more is answered 503
    idle_timeout: float = 300.0  # seconds without a byte either way before the tunnel is closed; 0: never
    max_lifetime: float = 3600.0  # seconds a tunnel may stay open at all; 0: no limit
    drain_grace: float = 10.0  # seconds open tunnels keep after the worker begins to drain


@dataclass
class TunnelFigures:
    """What the access log and the metrics say of one tunnel; filled in as it runs."""

    route: str
    opened: float = field(default_factory=time.perf_counter)  # when the 101 came (perf_counter)
    bytes_up: int = 0  # client to upstream
    bytes_down: int = 0  # upstream to client
    reason: str | None = None  # one of CLOSE_REASONS, once closed
    close: Callable[[], None] | None = field(default=None, repr=False)  # ends the tunnel (idempotent)


class Relay:
    """Copy bytes between the client's socket and the upstream's until the tunnel ends.

    ``pending`` are bytes the upstream sent right after its 101 (the first frames), delivered first.
    ``drain`` is the worker's drain signal (None outside gunicorn). ``on_close`` runs exactly once,
    whatever ends the tunnel: it releases the route's slot.
    """

    def __init__(self, client: Any, upstream: socket.socket, pending: bytes, limits: TunnelLimits,
                 figures: TunnelFigures, drain: Any = None, on_close: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.upstream = upstream
        self.pending = pending
        self.limits = limits
        self.figures = figures
        self.drain = drain
        self.on_close = on_close
        self.clock = clock
        self.opened = self.last_active = clock()
        self.first_eof: str | None = None  # which side ended first: "client" or "upstream"
        self.ending: str | None = None  # the limit that ended the tunnel, if one did
        self.drain_ends: float | None = None  # when the drain's grace ends, once the worker drains
        self.timer: Any = None  # the event loop's timer for the next deadline
        self.closed = False

    def run(self) -> None:
        """Relay until both sides are done or a limit ends the tunnel; then close both connections.

        The upstream-to-client pump runs in the calling greenlet (the server's, for this connection) and
        only the other direction gets a greenlet of its own: an idle tunnel holds one greenlet fewer
        (about 8 KiB). Deadlines are a timer on the event loop, not a greenlet waiting: when one passes,
        both connections are shut, which ends both pumps.
        """
        hub = gevent.get_hub()
        pump = gevent.spawn(self._pump, self.client, self.upstream, "client")
        self._arm(hub)
        if self.drain is not None:
            self.drain.rawlink(self._on_drain)
        try:
            self._pump(self.upstream, self.client, "upstream")
            pump.join()
        finally:
            pump.kill()
            if self.drain is not None:
                self.drain.unlink(self._on_drain)
            self._disarm()
            self.figures.reason = self.ending or self.first_eof or "client"
            self.close()

    def _arm(self, hub: Any) -> None:
        """(Re)start the timer for the next deadline, if any."""
        self._disarm()
        deadlines = self._deadlines(self.drain_ends)
        if deadlines:
            delay = max(0.0, min(deadline for _, deadline in deadlines) - self.clock())
            self.timer = hub.loop.timer(delay)
            self.timer.start(self._on_deadline, hub)

    def _disarm(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.stop()
            timer.close()

    def _on_deadline(self, hub: Any) -> None:
        """On the event loop: end the tunnel if a deadline has passed (traffic may have moved the idle one)."""
        now = self.clock()
        for reason, deadline in self._deadlines(self.drain_ends):
            if deadline <= now:
                self.end(reason)
                return
        self._arm(hub)

    def _on_drain(self, _: Any) -> None:
        """On the event loop: the worker began to drain; the tunnel has its grace period from now."""
        if self.drain_ends is None:
            self.drain_ends = self.clock() + self.limits.drain_grace
            self._arm(gevent.get_hub())

    def end(self, reason: str) -> None:
        """End the tunnel for ``reason``: both connections are shut, so both pumps find their end.

        Through duplicates of the sockets: gevent's own shutdown() would fail the pumps' waits with
        EBADF instead of waking them (worker.py's drain does the same). Never blocks.
        """
        if self.ending is None:
            self.ending = reason
        for connection in (self.client, self.upstream):
            _shut(connection)

    def _deadlines(self, drain_ends: float | None) -> list[tuple[str, float]]:
        """The deadlines that apply, by reason (monotonic seconds)."""
        limits = self.limits
        deadlines = []
        if limits.idle_timeout:
            deadlines.append(("idle", self.last_active + limits.idle_timeout))
        if limits.max_lifetime:
            deadlines.append(("lifetime", self.opened + limits.max_lifetime))
        if drain_ends is not None:
            deadlines.append(("drain", drain_ends))
        return deadlines

    def _pump(self, source: Any, sink: Any, side: str) -> None:
        """Copy ``source`` to ``sink`` until one of them ends; pass the end on as a half-close."""
        figures = self.figures
        up = side == "client"
        ended = side  # the side whose connection ended: ``source`` unless writing to ``sink`` fails
        data = b""
        if not up:
            data, self.pending = self.pending, b""  # the upstream's first bytes go out first
        try:
            while True:
                if data:
                    try:
                        sink.sendall(data)
                    except OSError:
                        ended = "upstream" if up else "client"
                        break
                    if up:
                        figures.bytes_up += len(data)
                    else:
                        figures.bytes_down += len(data)
                    metrics.count_tunnel_bytes(figures.route, "up" if up else "down", len(data))
                data = source.recv(_READ_SIZE)
                if not data:
                    break
                self.last_active = self.clock()
        except OSError:
            pass  # a reset is an end too: the other side learns it from the half-close below
        if self.first_eof is None:
            self.first_eof = ended
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already gone

    def close(self) -> None:
        """Close the upstream connection, shut the client's both ways, release the slot; once."""
        if self.closed:
            return
        self.closed = True
        try:
            try:
                self.upstream.close()
            finally:
                # Shut, not closed: the server still owns the client's socket. Its next read finds the
                # end of file, so it closes the connection instead of reading frames as a request.
                try:
                    self.client.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # the client is gone already
        finally:
            if self.on_close is not None:
                self.on_close()


def _shut(connection: Any) -> None:
    """Shut ``connection`` both ways through a duplicate descriptor; nothing if it is closed already."""
    try:
        duplicate = _socket.socket(fileno=os.dup(connection.fileno()))
    except (OSError, ValueError):
        return
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected any more
    finally:
        duplicate.close()
