"""Validation (RFC 9111 4.3): the conditions a revalidation sends, and a stored entry refreshed by a 304."""

from __future__ import annotations

from collections.abc import Iterable

from app.caching.entry import CachedResponse

__all__ = ["CONDITIONALS", "conditions_for", "refreshed_headers"]

#: The request's own conditions, held back while the gateway asks the upstream with its validators.
CONDITIONALS = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE")
# RFC 9111 3.2: a 304 never changes these of the stored response (the body it describes is the stored one).
_KEPT = frozenset({"content-length", "content-encoding", "transfer-encoding", "content-range"})


def conditions_for(entry: CachedResponse) -> dict[str, str]:
    """The environ entries of a conditional request for this entry: its ETag, else its Last-Modified."""
    conditions: dict[str, str] = {}
    if entry.etag is not None:
        conditions["HTTP_IF_NONE_MATCH"] = entry.etag
    if entry.last_modified is not None:
        conditions["HTTP_IF_MODIFIED_SINCE"] = entry.last_modified
    return conditions


def refreshed_headers(stored: Iterable[tuple[str, str]], update: Iterable[tuple[str, str]]
                      ) -> list[tuple[str, str]]:
    """The stored header list with every field the 304 carries replaced by the 304's (RFC 9111 3.2, 4.3.4)."""
    fresh = [(name, value) for name, value in update if name.lower() not in _KEPT]
    # The 304's Age (or none: it is new) replaces the stored one.
    replaced = {name.lower() for name, _ in fresh} | {"age"}
    return [*((name, value) for name, value in stored if name.lower() not in replaced), *fresh]
