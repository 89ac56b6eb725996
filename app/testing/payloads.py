"""Known bodies the fake upstream serves, so tests can check bytes end to end without storing them."""

from __future__ import annotations

import functools
import gzip
import hashlib
import json

__all__ = ["BLOCK", "BLOCK_SIZE", "CHUNKED_BLOCK", "GZIP_BODY", "GZIP_PLAIN", "pattern_bytes", "pattern_sha256"]

_PATTERN = bytes(range(256))
BLOCK_SIZE = 64 * 1024
"""Bytes per write when the fake streams a pattern body."""
# 64 KiB is a multiple of 256, so every full block of the stream is this same object.
BLOCK = _PATTERN * (BLOCK_SIZE // len(_PATTERN))
"""One full block of the pattern stream."""
CHUNKED_BLOCK = b"%x\r\n" % BLOCK_SIZE + BLOCK + b"\r\n"
"""One full block framed as an HTTP/1.1 chunk."""


def pattern_bytes(n: int) -> bytes:
    """The first n bytes of the stream served by ``/_/bytes/<n>``."""
    if n < 0:
        raise ValueError(f"negative length: {n}")
    return (_PATTERN * (n // len(_PATTERN) + 1))[:n]


@functools.lru_cache(maxsize=32)
def pattern_sha256(n: int) -> str:
    """Hex SHA-256 of ``pattern_bytes(n)``, computed incrementally so n may be gigabytes."""
    if n < 0:
        raise ValueError(f"negative length: {n}")
    digest = hashlib.sha256()
    full, rest = divmod(n, BLOCK_SIZE)
    for _ in range(full):
        digest.update(BLOCK)
    digest.update(BLOCK[:rest])
    return digest.hexdigest()


def _gzip_document() -> bytes:
    """A catalogue page: realistic JSON whose repetition makes it compress well."""
    categories = ("tools", "garden", "kitchen", "office")
    items = [
        {
            "id": i,
            "sku": f"SKU-{i:05d}",
            "name": f"Widget {i}",
            "category": categories[i % len(categories)],
            "price": {"amount": 1999 + 25 * i, "currency": "EUR"},
            "in_stock": i % 5 != 0,
            "tags": ["sale", "new"] if i % 2 else ["popular"],
            "description": "A dependable widget for everyday use, made from recycled materials.",
        }
        for i in range(24)
    ]
    document = {"page": 1, "per_page": len(items), "total": len(items), "items": items}
    return json.dumps(document, indent=2, sort_keys=True).encode("utf-8")


GZIP_PLAIN: bytes = _gzip_document()
"""The uncompressed JSON served (gzip-encoded) by ``/_/gzip``."""

# mtime=0 keeps the header free of a timestamp, so the bytes are the same on every run.
GZIP_BODY: bytes = gzip.compress(GZIP_PLAIN, compresslevel=9, mtime=0)
"""The exact gzip bytes sent as the ``/_/gzip`` response body."""
