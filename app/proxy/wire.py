"""Upstream answers read strictly: a plain answer by one regular expression, any other by h11.

http.client reads answers leniently: it hands a 103 over as the final answer, lets the ``email``
package split a field at a bare CR, and leaves chunk sizes to urllib3's ``int(line, 16)``. In a
gateway each of those lets one client's bytes reach another. So this class, which
``http.client.HTTPConnection.response_class`` builds (urllib3's ``getresponse`` documents that seam),
reads the status line, the head and the body's framing itself; the connection, the pool and urllib3's
response stay the library's.

Two readers, one result (docs/decisions.md, decision 63):
- The plain answer, nearly every one: ``HTTP/1.1``, a final status, fields that are each one
  ``token: value`` line ending in CRLF, one ``Content-Length`` or none for a body-less status. It is
  matched by one regular expression no looser than h11's grammar and its body is counted off.
- Anything else (interim answers, chunked or close-delimited bodies, HTTP/1.0, a line the expression
  does not take) goes to h11, a strict, well-kept parser, with every byte read so far.
tests/test_wire.py holds both to h11 on generated valid and hostile answers.

On top of h11, four refusals it leaves to its caller (each a 502, the connection closed): an HTTP
version other than 1.0 and 1.1, ``Content-Length`` beside ``Transfer-Encoding`` (nginx refuses it
too), a ``Content-Length`` given twice or as a list (h11 merges equal ones), and a control character
or DEL in a field value (h11 takes them; RFC 9110 5.5 does not).
"""

from __future__ import annotations

import http.client
import io
import re
import socket
from typing import Any

import h11

__all__ = ["HEAD_LIMIT", "UpstreamProtocolError", "UpstreamResponse"]

#: The most a head (status line and fields) may take; a larger one is refused.
HEAD_LIMIT = 64 * 1024
# Bytes asked of the socket per read: the body arrives in blocks of up to this size.
_READ_SIZE = 64 * 1024
# Interim (1xx) answers read past before the final one; more is an upstream looping.
_MAX_INTERIM = 16
# What h11 is told was asked: only the method shapes how it frames the answer (HEAD has no body).
_PROBE_HEADERS = [("Host", "upstream")]

# RFC 9110's token and field value (VCHAR and obs-text, single spaces or tabs inside): h11's grammar,
# less the control characters and DEL its value class lets through.
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_VALUE = rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?"
_PLAIN_HEAD = re.compile(
    rb"HTTP/1\.1 ([2-5][0-9][0-9])(?: ([\t \x21-\x7e\x80-\xff]*))?\r\n((?:" + _TOKEN + rb":[ \t]*" + _VALUE
    + rb"[ \t]*\r\n)*)\r\n")
_PLAIN_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _VALUE + rb")[ \t]*\r\n")
_FIELD_VALUE = re.compile(rb"[\t \x21-\x7e\x80-\xff]*")
# A Content-Length field line of the final head, read after the head was accepted (so lines are whole).
_LENGTH_LINE = re.compile(rb"^content-length[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_NO_BODY_STATUSES = (204, 304)
# h11 refuses a Content-Length of more digits than this.
_LENGTH_DIGITS = 20


class UpstreamProtocolError(http.client.HTTPException):
    """The upstream's answer broke HTTP/1.1: the call fails (502) and its connection is closed."""


# h11's events are immutable: one per method serves every answer (building one validates its fields).
_PROBES: dict[str, h11.Request] = {}
_END = h11.EndOfMessage()


def _probe(method: str) -> h11.Request:
    """The request h11 is told was sent, for ``method``."""
    probe = _PROBES.get(method)
    if probe is None:
        probe = h11.Request(method=method, target="/", headers=_PROBE_HEADERS)
        if len(_PROBES) < 64:  # methods are the clients' tokens: keep the memo bounded
            _PROBES[method] = probe
    return probe


class UpstreamResponse(http.client.HTTPResponse):
    """http.client's response interface over a strict reader.

    Not http.client's ``__init__``: this object keeps no buffered file over the socket and has no
    ``fp``, so urllib3 reads the body through ``read``, already unframed, instead of parsing chunks.
    """

    def __init__(self, sock: socket.socket, debuglevel: int = 0, method: str | None = None,
                 url: str | None = None) -> None:
        # An unbuffered file over the socket: it keeps the socket open after http.client drops its own
        # reference to a connection that will close, as http.client's buffered one does.
        self._wire: Any = sock.makefile("rb", buffering=0)
        self._sock = sock
        self._method = method or "GET"
        self._parser: h11.Connection | None = None  # made only for an answer that is not plain
        self._buffer = bytearray()  # read but not handed on yet
        self._remaining = 0  # a plain answer's body bytes still on the socket
        self._ended = False  # the answer's last byte has been read off the socket
        self._handed_on = False  # ... and handed on by read(), or the answer was closed
        self.plain = False  # which reader took the answer (the tests look)
        self.debuglevel = debuglevel
        self.headers = self.msg = None  # type: ignore[assignment]  # set by begin
        self.version = 11
        self.status = self.code = 0
        self.reason = ""
        self.chunked = False
        self.length = None
        self.will_close = True

    # --- the head ----------------------------------------------------------------------------------

    def begin(self) -> None:
        """Read past interim answers to the final one's head; refuse what h11 (or the rules above) would not take."""
        if self.headers is not None:
            return
        try:
            if not self._begin_plain():
                self._begin_h11()
        except BaseException:
            self._close_wire()  # let the socket go now, not at garbage collection
            raise

    def _begin_plain(self) -> bool:
        """Take a plain answer's head; False (everything read kept for h11) when the answer is not plain."""
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n\r\n")
            bare = buffer.find(b"\n\n")
            if bare != -1 and (end == -1 or bare < end):
                return False  # a head ended by bare LFs: h11's to judge
            if end != -1:
                break
            if len(buffer) > HEAD_LIMIT:
                return False
            data = self._wire.read(_READ_SIZE)
            if not data:
                return False  # closed before the head ended: h11 tells which error
            buffer += data
        match = _PLAIN_HEAD.fullmatch(buffer, 0, end + 3)
        if match is None or end + 3 > HEAD_LIMIT:
            return False
        status = int(match[1])
        fields = _PLAIN_FIELD.findall(buffer, match.start(3), match.end(3))
        lengths = [value for name, value in fields if name.lower() == b"content-length"]
        has_body = not (self._method == "HEAD" or status in _NO_BODY_STATUSES)
        if (len(lengths) > 1 or (has_body and not lengths)
                or (lengths and not (lengths[0].isdigit() and len(lengths[0]) <= _LENGTH_DIGITS))
                or any(name.lower() == b"transfer-encoding" for name, _ in fields)):
            return False  # framing h11 reads (or refuses)
        del buffer[:end + 3]
        # The expression already took only field values without control characters.
        self._set_head(status, (match[2] or b"").decode("latin-1"), b"1.1", fields, lengths)
        if has_body:
            assert self.length is not None
            self._remaining = self.length - len(buffer)
            if self._remaining < 0:  # more than the answer arrived with it: keep the answer, not the rest
                self._remaining = 0
                del buffer[self.length:]
                self._spoil()
        else:
            if buffer:
                self._spoil()
            buffer.clear()
        self.plain = True
        if self._remaining == 0:
            self._finish_plain()  # the whole answer is here: the connection can go back now
        return True

    def _begin_h11(self) -> None:
        """Hand every byte read so far to h11 and read the final head with it."""
        parser = self._parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD_LIMIT)
        parser.send(_probe(self._method))
        parser.send(_END)
        received = bytearray(self._buffer)  # every byte until the final head, for the Content-Length check
        parser.receive_data(bytes(self._buffer))
        self._buffer.clear()
        head_start = 0
        for _ in range(_MAX_INTERIM + 1):
            event = self._next_event(received)
            if type(event) is not h11.InformationalResponse:
                break
            head_start = len(received) - len(parser.trailing_data[0])
        else:
            raise UpstreamProtocolError(f"more than {_MAX_INTERIM} interim answers")
        if type(event) is h11.ConnectionClosed:
            raise http.client.RemoteDisconnected("Remote end closed connection without response")
        if type(event) is not h11.Response:
            raise UpstreamProtocolError(f"unexpected {type(event).__name__} before the answer")
        head_end = len(received) - len(parser.trailing_data[0])
        if head_end - head_start > HEAD_LIMIT:
            # h11 bounds only a head still arriving; one that came whole in a large read is checked here.
            raise UpstreamProtocolError(f"a head over {HEAD_LIMIT} bytes")
        fields = event.headers.raw_items()
        if not all(_FIELD_VALUE.fullmatch(value) for _, value in fields):
            raise UpstreamProtocolError("a control character in a field value")
        # h11 merges repeated lengths: the raw head tells whether there were several.
        lengths = _LENGTH_LINE.findall(received, head_start, head_end)
        self._set_head(event.status_code, event.reason.decode("latin-1"), event.http_version, fields, lengths)
        if parser.their_state is h11.DONE or parser.their_state is h11.MUST_CLOSE:
            self._end_h11()  # no body: the answer is complete

    def _set_head(self, status: int, reason: str, version: bytes, fields: Any, lengths: list[bytes]) -> None:
        """Check the final head by the rules h11 leaves to us, and build http.client's message from it.

        ``lengths`` are the raw values of every Content-Length line of the head.
        """
        if version not in (b"1.0", b"1.1"):
            raise UpstreamProtocolError("an HTTP version other than 1.0 or 1.1")
        if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
            raise UpstreamProtocolError("Content-Length given twice or as a list")
        message = http.client.HTTPMessage()
        close = version == b"1.0"
        for raw_name, raw_value in fields:
            name = raw_name.decode("ascii")  # a token: checked
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
        self.status = self.code = status
        self.reason = reason
        self.version = 10 if version == b"1.0" else 11
        self.length = int(lengths[0]) if lengths and not self.chunked else None
        has_body = not (self._method == "HEAD" or status in _NO_BODY_STATUSES)
        # Read to the connection's end: nothing can follow it on this connection.
        delimited = has_body and not self.chunked and self.length is None
        self.will_close = close or delimited

    def _next_event(self, received: bytearray | None = None) -> Any:
        """h11's next event, reading from the socket as it needs; its refusals as UpstreamProtocolError."""
        assert self._parser is not None
        try:
            while True:
                try:
                    event = self._parser.next_event()
                except h11.RemoteProtocolError as error:
                    raise UpstreamProtocolError(str(error)) from None
                if event is not h11.NEED_DATA:
                    return event
                data = self._wire.read(_READ_SIZE)  # b"" at the end; a socket timeout goes up to urllib3
                if received is not None:
                    received += data
                self._parser.receive_data(data)
        except BaseException:
            # Refused, broken or timed out: nothing more is read, and the socket is let go now, not at
            # garbage collection (urllib3 closes the connection itself).
            self._close_wire()
            raise

    # --- the end of an answer ----------------------------------------------------------------------

    def _spoil(self) -> None:
        """Bytes came past the answer: the connection must never carry another request."""
        if not self.will_close:
            # http.client keeps this socket for the next request; bytes past the answer would reach
            # the next caller. Shut down, the pool's check before reuse finds it closed.
            self.will_close = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _finish_plain(self) -> None:
        self._ended = True
        self._close_wire()

    def _end_h11(self) -> None:
        """h11 read the answer to its end: keep the connection only when nothing was sent past it."""
        assert self._parser is not None
        self._ended = True
        spare, _closed = self._parser.trailing_data
        if self._parser.their_state is not h11.DONE or spare:
            self._spoil()
        self._close_wire()

    def _close_wire(self) -> None:
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.close()

    # --- the body ----------------------------------------------------------------------------------

    def read(self, amt: int | None = None) -> bytes:
        """Up to ``amt`` bytes of the body (all of it when None); b"" once it is read to its end.

        What has arrived is returned without waiting for ``amt`` bytes: a stream reaches the client
        block by block.
        """
        if amt is None:
            parts = [bytes(self._buffer)]
            self._buffer.clear()
            while not self._ended:
                parts.append(self._pull())
            self._handed_on = True
            return b"".join(parts)
        while not self._buffer and not self._ended and amt > 0:
            self._buffer += self._pull()
        data = bytes(self._buffer[:amt])
        del self._buffer[:amt]
        self._handed_on = self._ended and not self._buffer
        return data

    def _pull(self) -> bytes:
        """The body's next bytes (b"" at the end); the end is taken as soon as its bytes are here."""
        if self._wire is None:
            raise http.client.IncompleteRead(b"")  # closed before the end
        if self._parser is None:
            return self._pull_plain()
        event = self._next_event()
        data = bytearray()
        while True:
            if type(event) is h11.Data:
                data += event.data
            elif type(event) is h11.EndOfMessage:
                self._end_h11()
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

    def _pull_plain(self) -> bytes:
        """A plain answer's next block, never reading past its Content-Length."""
        if self._remaining == 0:
            self._finish_plain()
            return b""
        try:
            data = self._wire.read(min(_READ_SIZE, self._remaining))
        except BaseException:
            self._close_wire()
            raise
        if not data:
            self._close_wire()
            raise UpstreamProtocolError("the connection closed before the body's end")
        self._remaining -= len(data)
        if self._remaining == 0:
            self._finish_plain()
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
        return bytes(self._buffer)

    def isclosed(self) -> bool:
        """Whether a read handed on the answer's end, or it was closed (then its connection may go back to the pool).

        Not before: urllib3 stops streaming once this says True, and gives the connection back only
        after a read that finds it True.
        """
        return self._handed_on

    def fileno(self) -> int:
        """The socket's descriptor."""
        return self._sock.fileno()

    def flush(self) -> None:
        """Nothing is written."""

    def close(self) -> None:
        """Stop reading; a connection left mid-answer is closed by urllib3, never reused."""
        io.BufferedIOBase.close(self)
        self._buffer.clear()
        self._handed_on = True
        self._close_wire()
