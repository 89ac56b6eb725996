"""What the cache holds: status, header list and body bytes (never a Response object), and vary specs."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

__all__ = ["CachedResponse", "VarySpec", "decode", "encode", "size_of"]

# Python object overhead per stored item, counted so many tiny entries cannot exceed max_bytes.
_OVERHEAD = 256


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """One stored answer, rebuilt into a fresh response on every hit."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    requested_at: float  # wall clock when the upstream call went out (purges compare against it)
    expires: float  # wall clock: when it is dropped (freshness plus the time kept for validation or stale use)
    initial_age: int  # the Age the upstream reported
    path: str  # decoded path, as purges and invalidations name it
    tags: tuple[str, ...]
    etag: str | None
    fresh_until: float = math.inf  # wall clock: served without asking the upstream until then
    last_modified: str | None = None
    stale_while_revalidate: float = 0.0  # seconds past fresh_until it may be served while one refresh runs
    stale_if_error: float = 0.0  # seconds past fresh_until it may be served when the upstream fails
    revalidate: bool = False  # never served stale (must-revalidate, proxy-revalidate, no-cache, s-maxage)


@dataclass(frozen=True, slots=True)
class VarySpec:
    """Which request headers the URL's stored responses vary on."""

    names: tuple[str, ...]
    expires: float


def size_of(item: CachedResponse | VarySpec) -> int:
    """Bytes an item is charged against max_bytes."""
    if isinstance(item, VarySpec):
        return _OVERHEAD + sum(len(name) for name in item.names)
    return _OVERHEAD + len(item.body) + sum(len(name) + len(value) + 16 for name, value in item.headers)


def encode(item: CachedResponse | VarySpec) -> bytes:
    """Bytes for the shared tier: a JSON head line, then the body."""
    if isinstance(item, VarySpec):
        return json.dumps({"vary": item.names, "expires": item.expires}).encode() + b"\n"
    head = {"status": item.status, "headers": item.headers, "requested_at": item.requested_at,
            "expires": item.expires, "initial_age": item.initial_age, "path": item.path, "tags": item.tags,
            "etag": item.etag, "fresh_until": item.fresh_until, "last_modified": item.last_modified,
            "swr": item.stale_while_revalidate, "sie": item.stale_if_error, "revalidate": item.revalidate}
    return json.dumps(head, separators=(",", ":")).encode() + b"\n" + item.body


def decode(data: bytes) -> CachedResponse | VarySpec | None:
    """An item from the shared tier; None when the bytes are not one (another version wrote them)."""
    line, _, body = data.partition(b"\n")
    try:
        head = json.loads(line)
        if "vary" in head:
            return VarySpec(tuple(head["vary"]), float(head["expires"]))
        return CachedResponse(
            status=int(head["status"]), headers=tuple((str(n), str(v)) for n, v in head["headers"]), body=body,
            requested_at=float(head["requested_at"]), expires=float(head["expires"]),
            initial_age=int(head["initial_age"]), path=str(head["path"]), tags=tuple(head["tags"]),
            etag=head["etag"], fresh_until=float(head.get("fresh_until", head["expires"])),
            last_modified=head.get("last_modified"), stale_while_revalidate=float(head.get("swr", 0)),
            stale_if_error=float(head.get("sie", 0)), revalidate=bool(head.get("revalidate", False)),
        )
    except (ValueError, KeyError, TypeError):
        return None
