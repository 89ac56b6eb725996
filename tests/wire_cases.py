"""Generated upstream answers, valid and hostile, for the differential tests against h11."""

from __future__ import annotations

import random

__all__ = ["hostile_answer"]

_STATUSES = (200, 200, 201, 204, 206, 301, 304, 404, 500, 502)
_INTERIM = (b"100 Continue", b"102 Processing", b"103 Early Hints", b"199 Misc", b"101 Switching Protocols")
_NAMES = (b"X-A", b"Content-Type", b"Set-Cookie", b"Cache-Control", b"ETag", b"X-Mixed-Case", b"Vary", b"Link")
# Pieces that break a field in one way or another, each where a careless parser would let it through.
_BAD_NAMES = (b"X A", b"X-A ", b" X-A", b"X\x00A", b"X:A", b"", b"X-\xe9", b"X\tA")
_BAD_VALUE_BYTES = (b"\r", b"\n", b"\x00", b"\x01", b"\x0b", b"\x7f", b"\r\n ", b"\r\n\t", b"\xff", b" ", b"\t")
_ENDINGS = (b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r")
_LENGTHS = (b"-1", b"+5", b"5, 5", b"abc", b"005", b" 5", b"5 ", b"0x5", b"", b"99999999999999999999999")
_CHUNK_SIZES = (b"+5", b"0x5", b" 5", b"5 ", b"-5", b"5;ext", b"5;e=\"q\"", b"g", b"")
_CODINGS = (b"chunked", b"chunked", b"gzip, chunked", b"chunked, gzip", b"identity", b"Chunked", b"chunked ")


def _value(rand: random.Random) -> bytes:
    value = bytes(rand.choice(b"abcXYZ019 -_=;/") for _ in range(rand.randint(0, 12)))
    if rand.random() < 0.06:
        at = rand.randint(0, len(value))
        value = value[:at] + rand.choice(_BAD_VALUE_BYTES) + value[at:]
    return value


def _field(rand: random.Random, ending: bytes) -> bytes:
    name = rand.choice(_BAD_NAMES) if rand.random() < 0.03 else rand.choice(_NAMES)
    separator = rand.choice((b": ", b": ", b": ", b":", b":  ", b": \t")) if rand.random() < 0.98 else b" : "
    return name + separator + _value(rand) + ending


def _head(rand: random.Random, status: bytes, fields: list[bytes], ending: bytes) -> bytes:
    version = b"HTTP/1.1" if rand.random() < 0.85 else rand.choice((b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 ", b"HTTP/11"))
    return version + b" " + status + ending + b"".join(fields) + ending


def _body(rand: random.Random, fields: list[bytes], ending: bytes) -> bytes:
    """Append framing fields to ``fields`` and return a body that may or may not match them."""
    data = bytes(rand.choice(b"abcdefgh") for _ in range(rand.randint(0, 40)))
    framing = rand.choice(("length", "length", "chunked", "chunked", "both", "none", "bad-length", "two-lengths"))
    if framing in ("length", "both"):
        size = len(data) + (0 if rand.random() < 0.85 else rand.choice((-1, 1, 5)))
        fields.append(b"Content-Length: " + str(max(size, 0)).encode() + ending)
    if framing == "bad-length":
        fields.append(b"Content-Length: " + rand.choice(_LENGTHS) + ending)
    if framing == "two-lengths":
        fields.append(b"Content-Length: " + str(len(data)).encode() + ending)
        fields.append(b"Content-Length: " + str(len(data) + rand.choice((0, 1))).encode() + ending)
    if framing in ("chunked", "both"):
        fields.append(b"Transfer-Encoding: " + rand.choice(_CODINGS) + ending)
        return _chunked(rand, data)
    return data


def _chunked(rand: random.Random, data: bytes) -> bytes:
    out = b""
    while data:
        take = rand.randint(1, len(data))
        piece, data = data[:take], data[take:]
        size = b"%x" % len(piece)
        if rand.random() < 0.03:
            size = rand.choice(_CHUNK_SIZES)
        size_end = b"\r\n" if rand.random() < 0.95 else b"\n"
        out += size + size_end + piece + (b"\r\n" if rand.random() < 0.95 else rand.choice((b"\n", b"")))
    end = rand.choice((b"0\r\n\r\n", b"0\r\n\r\n", b"0\r\n\r\n", b"0\r\nX-Trailer: t\r\n\r\n", b"00\r\n\r\n",
                       b"0\r\n", b""))
    return out + end


def hostile_answer(rand: random.Random) -> bytes:
    """One raw answer: maybe interim answers, a head with maybe a broken field, a framed body, maybe extra bytes."""
    ending = rand.choice(_ENDINGS) if rand.random() < 0.05 else b"\r\n"
    raw = b""
    for _ in range(rand.choice((0, 0, 0, 1, 2))):
        interim_fields = [_field(rand, ending) for _ in range(rand.randint(0, 2))]
        raw += _head(rand, rand.choice(_INTERIM), interim_fields, ending)
    fields = [_field(rand, ending) for _ in range(rand.randint(0, 5))]
    body = _body(rand, fields, ending)
    rand.shuffle(fields)
    status = str(rand.choice(_STATUSES)).encode() + rand.choice((b" OK", b" OK", b"", b" "))
    raw += _head(rand, status, fields, ending) + body
    if rand.random() < 0.1:
        raw += b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
    if rand.random() < 0.05:
        raw = raw[:rand.randint(0, len(raw))]  # cut off anywhere
    return raw
