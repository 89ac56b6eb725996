"""Heads on the wire to upstreams: the bytes and the parsed headers http.client gives, with less work.

Two costs every forwarded call paid in the standard library (Python 3.11), for a head of a few lines:
- ``http.client.parse_headers`` hands the response head to the ``email`` package's feed parser, built
  for MIME messages: 15 to 26 µs for a head of two fields on the benchmark's machines (timeit;
  docs/performance-tuning.md).
- ``putheader`` through urllib3 and http.client: 3 to 4.5 µs a header, and a forwarded call sends ten.

Each fast path here takes only the plain case (a token name, a value without CR or LF, no folded
lines, nothing the feed parser treats specially) and builds exactly what the standard library would;
anything else goes the standard library's own way. tests/test_wire.py compares the two, line for line.
"""

from __future__ import annotations

import email.parser
import http.client
import re
from typing import Any

from urllib3.connection import HTTPConnection
from urllib3.util import SKIP_HEADER

__all__ = ["PlainHeads", "UpstreamResponse", "parse_head"]

# A field line the feed parser reads as "name: value" and nothing else: a name of the characters
# its headerRE allows (printable ASCII but the colon; no space, so never a "From " envelope line),
# a value without CR or LF (each of which would crack the line in two), one line ending.
_PLAIN_LINE = re.compile(r"([\x21-\x39\x3b-\x7e]+):[ \t]*([^\r\n]*)\r?\n")
# Content types after which the feed parser goes on to parse a body (message/*, multipart/*).
_BODY_TYPES = re.compile(r"message|multipart", re.IGNORECASE)
# RFC 9110's token: the names the gateway and urllib3 send.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def parse_head(fp: Any) -> http.client.HTTPMessage:
    """``http.client.parse_headers(fp)``: the same HTTPMessage, without the email parser when the head is plain."""
    lines: list[bytes] = http.client._read_headers(fp)  # type: ignore[attr-defined]  # its limits on lines
    message = _plain_head(lines)
    if message is None:
        message = email.parser.Parser(_class=http.client.HTTPMessage).parsestr(b"".join(lines).decode("iso-8859-1"))
    return message


def _plain_head(lines: list[bytes]) -> http.client.HTTPMessage | None:
    """The message the feed parser would build from these field lines, or None when they are not all plain."""
    if lines[-1] not in (b"\r\n", b"\n"):
        return None  # the head ended at EOF, before its blank line
    message = http.client.HTTPMessage()
    for line in lines[:-1]:
        match = _PLAIN_LINE.fullmatch(line.decode("iso-8859-1"))
        if match is None:
            return None
        name, value = match.groups()
        if name.lower() == "content-type" and _BODY_TYPES.search(value):
            return None
        message[name] = value
    message.set_payload("")  # what the feed parser leaves after the blank line: an empty body
    return message


class UpstreamResponse(http.client.HTTPResponse):
    """http.client's response with ``parse_head`` for its head; ``begin`` is 3.11's, that call aside."""

    def begin(self) -> None:
        """Read the status line and the head (http.client.HTTPResponse.begin, Python 3.11)."""
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            http.client._read_headers(self.fp)  # a 100's head: skipped
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = parse_head(self.fp)
        transfer_encoding = self.headers.get("transfer-encoding")
        self.chunked = bool(transfer_encoding and transfer_encoding.lower() == "chunked")
        if self.chunked:
            self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if (status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200
                or self._method == "HEAD"):
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


class PlainHeads(HTTPConnection):
    """urllib3's connection, plain field lines written by ``putheader`` itself and read by ``parse_head``.

    A base for the pools' HTTP and HTTPS connection classes alike (app/proxy/client.py).
    """

    response_class = UpstreamResponse

    def putheader(self, header: str, *values: str) -> None:  # type: ignore[override]  # as urllib3's
        """Buffer one field line, as http.client would; anything but one plain str value goes its way."""
        if len(values) == 1:
            value = values[0]
            if (type(header) is str and type(value) is str and value != SKIP_HEADER
                    and self._HTTPConnection__state == http.client._CS_REQ_STARTED  # type: ignore[attr-defined]
                    and _TOKEN.fullmatch(header) and "\r" not in value and "\n" not in value):
                try:
                    line = f"{header}: {value}".encode("latin-1")
                except UnicodeEncodeError:
                    pass
                else:
                    self._output(line)  # type: ignore[attr-defined]
                    return
        super().putheader(header, *values)
