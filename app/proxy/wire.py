"""Upstream answers read by h11: every byte an upstream sends goes through a strict HTTP/1.1 parser.

http.client reads answers leniently: it hands a 103 over as the final answer, lets the ``email``
package split a field at a bare CR, and leaves chunk sizes to urllib3's ``int(line, 16)``. In a
gateway each of those lets one client's bytes reach another (docs/decisions.md, "Strict upstream
framing"). So the answer's status line, head and body framing are read by h11, a strict and
well-kept parser, while the connection, the pool and urllib3's response stay the library's: this
class is what ``http.client.HTTPConnection.response_class`` builds (urllib3's ``getresponse``
documents that seam).

On top of what h11 refuses, three refusals it leaves to its caller (each a 502, the connection
closed): an HTTP version other than 1.0 and 1.1, ``Content-Length`` beside ``Transfer-Encoding``
(nginx refuses it too), and a ``Content-Length`` given twice or as a list (h11 merges equal ones).
"""

from __future__ import annotations

import http.client
import io
import re
import socket
from typing import Any

import h11

__all__ = ["UpstreamProtocolError", "UpstreamResponse"]

#: The most a head (status line and fields) may take; a larger one is refused.
HEAD_LIMIT = 64 * 1024
# Bytes asked of the socket per read: the body arrives in blocks of up to this size.
_READ_SIZE = 64 * 1024
# Interim (1xx) answers read past before the final one; more is an upstream looping.
_MAX_INTERIM = 16
# What h11 is told was asked: only the method shapes how it frames the answer (HEAD has no body).
_PROBE_HEADERS = [("Host", "upstream")]
# A Content-Length field line of the final head, read after h11 accepted the head (so lines are whole).
_LENGTH_LINE = re.compile(rb"^content-length[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


class UpstreamProtocolError(http.client.HTTPException):
    """The upstream's answer broke HTTP/1.1: the call fails (502) and its connection is closed."""


class UpstreamResponse(http.client.HTTPResponse):
    """http.client's response interface, its bytes read by h11.

    Not http.client's ``__init__``: this object keeps no buffered file over the socket (h11 keeps
    the bytes it was given) and has no ``fp``, so urllib3 reads the body through ``read``, already
    unframed, instead of parsing chunks itself.
    """

    def __init__(self, sock: socket.socket, debuglevel: int = 0, method: str | None = None,
                 url: str | None = None) -> None:
        # An unbuffered file over the socket: it keeps the socket open after http.client drops its own
        # reference to a connection that will close, as http.client's buffered one does.
        self._wire: Any = sock.makefile("rb", buffering=0)
        self._sock = sock
        self._method = method or "GET"
        self._parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD_LIMIT)
        self._parser.send(h11.Request(method=self._method, target="/", headers=_PROBE_HEADERS))
        self._parser.send(h11.EndOfMessage())
        self._pending = bytearray()
        self._ended = False
        self._received = bytearray()  # every byte until the final head, for the Content-Length check
        self.debuglevel = debuglevel
        self.headers = self.msg = None  # type: ignore[assignment]  # set by begin
        self.version = 11
        self.status = self.code = 0
        self.reason = ""
        self.chunked = False
        self.length = None
        self.will_close = True

    def begin(self) -> None:
        """Read past interim answers to the final one's head; refuse anything h11 (or we) would not take."""
        if self.headers is not None:
            return
        try:
            self._begin()
        except BaseException:
            self._close_wire()  # let the socket go now, not at garbage collection
            raise

    def _begin(self) -> None:
        head_start = 0
        for _ in range(_MAX_INTERIM + 1):
            event = self._next_event(keep=True)
            if type(event) is not h11.InformationalResponse:
                break
            head_start = len(self._received) - len(self._parser.trailing_data[0])
        else:
            raise UpstreamProtocolError(f"more than {_MAX_INTERIM} interim answers")
        if type(event) is h11.ConnectionClosed:
            raise http.client.RemoteDisconnected("Remote end closed connection without response")
        if type(event) is not h11.Response:
            raise UpstreamProtocolError(f"unexpected {type(event).__name__} before the answer")
        head_end = len(self._received) - len(self._parser.trailing_data[0])
        if head_end - head_start > HEAD_LIMIT:
            # h11 bounds only a head still arriving; one that came whole in a large read is checked here.
            raise UpstreamProtocolError(f"a head over {HEAD_LIMIT} bytes")
        self._read_head(event, bytes(self._received[head_start:head_end]))
        self._received = bytearray()

    def _read_head(self, event: h11.Response, head: bytes) -> None:
        if event.http_version not in (b"1.0", b"1.1"):
            raise UpstreamProtocolError("an HTTP version other than 1.0 or 1.1")
        lengths = _LENGTH_LINE.findall(head)
        if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
            raise UpstreamProtocolError("Content-Length given twice or as a list")
        message = http.client.HTTPMessage()
        close = event.http_version == b"1.0"
        for raw_name, raw_value in event.headers.raw_items():
            name = raw_name.decode("ascii")  # a token: h11 checked
            lower = name.lower()
            if lower == "transfer-encoding":
                # h11 takes only "chunked", and has undone it: the field no longer describes read()'s bytes.
                self.chunked = True
                continue
            value = raw_value.decode("latin-1")
            if lower == "content-length":
                value = str(int(value))  # "005" is sent on as "5"
            elif lower == "connection" and "close" in (token.strip().lower() for token in value.split(",")):
                close = True
            message[name] = value
        if self.chunked and lengths:
            raise UpstreamProtocolError("both Transfer-Encoding and Content-Length")
        self.headers = self.msg = message
        self.status = self.code = event.status_code
        self.reason = event.reason.decode("latin-1")
        self.version = 10 if event.http_version == b"1.0" else 11
        self.length = int(lengths[0]) if lengths and not self.chunked else None
        has_body = not (self._method == "HEAD" or event.status_code in (204, 304))
        # Read to the connection's end: nothing can follow it on this connection.
        delimited = has_body and not self.chunked and self.length is None
        self.will_close = close or delimited
        if self._parser.their_state is h11.DONE or self._parser.their_state is h11.MUST_CLOSE:
            self._end()  # no body: the answer is complete

    def _next_event(self, keep: bool = False) -> Any:
        """h11's next event, reading from the socket as it needs; its refusals as UpstreamProtocolError."""
        try:
            while True:
                try:
                    event = self._parser.next_event()
                except h11.RemoteProtocolError as error:
                    raise UpstreamProtocolError(str(error)) from None
                if event is not h11.NEED_DATA:
                    return event
                data = self._wire.read(_READ_SIZE)  # b"" at the end; a socket timeout goes up to urllib3
                if keep:
                    self._received += data
                self._parser.receive_data(data)
        except BaseException:
            # Refused, broken or timed out: nothing more is read, and the socket is let go now, not at
            # garbage collection (urllib3 closes the connection itself).
            self._close_wire()
            raise

    def _end(self) -> None:
        """The answer is complete: keep the connection only when nothing was sent past it."""
        self._ended = True
        spare, _closed = self._parser.trailing_data
        reusable = self._parser.their_state is h11.DONE and not spare and not self.will_close
        if not reusable and not self.will_close:
            # http.client keeps this socket for the next request; bytes past the answer would reach
            # the next caller. Shut down, the pool's check before reuse finds it closed.
            self.will_close = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._close_wire()

    def _close_wire(self) -> None:
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.close()

    def read(self, amt: int | None = None) -> bytes:
        """Up to ``amt`` bytes of the body (all of it when None); b"" once it is read to its end."""
        if amt is None:
            parts = [bytes(self._pending)]
            self._pending.clear()
            while not self._ended:
                parts.append(self._pull())
            return b"".join(parts)
        while not self._pending and not self._ended and amt > 0:
            self._pending += self._pull()
        data = bytes(self._pending[:amt])
        del self._pending[:amt]
        return data

    def _pull(self) -> bytes:
        """The body's next bytes: what h11 holds, reading the socket only when it holds none (b"" at the end).

        The end is taken as soon as its bytes are here, so a body that came whole in one read frees
        its connection at once, as http.client does, not at the next read.
        """
        if self._wire is None:
            raise http.client.IncompleteRead(b"")  # closed before the end
        event = self._next_event()
        data = bytearray()
        while True:
            if type(event) is h11.Data:
                data += event.data
            elif type(event) is h11.EndOfMessage:
                self._end()
                return bytes(data)
            else:
                self._close_wire()
                raise UpstreamProtocolError(f"unexpected {type(event).__name__} in the body")
            try:
                event = self._parser.next_event()
            except h11.RemoteProtocolError as error:
                self._close_wire()
                raise UpstreamProtocolError(str(error)) from None
            if event is h11.NEED_DATA:
                return bytes(data)

    def read1(self, amt: int = -1) -> bytes:
        """As ``read``: one block at most."""
        return self.read(_READ_SIZE if amt is None or amt < 0 else amt)

    def readinto(self, buffer: Any) -> int:
        """``read`` into ``buffer``."""
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readline(self, limit: int = -1) -> bytes:  # type: ignore[override]
        """Not a line-based reader: the body comes in blocks."""
        raise io.UnsupportedOperation("readline")

    def peek(self, n: int = 0) -> bytes:
        """What ``read`` would return next, without taking it."""
        return bytes(self._pending)

    def isclosed(self) -> bool:
        """Whether the answer was read to its end or closed (then its connection may go back to the pool)."""
        return self._wire is None

    def fileno(self) -> int:
        """The socket's descriptor."""
        return self._sock.fileno()

    def flush(self) -> None:
        """Nothing is written."""

    def close(self) -> None:
        """Stop reading; a connection left mid-answer is closed by urllib3, never reused."""
        io.BufferedIOBase.close(self)
        self._close_wire()
