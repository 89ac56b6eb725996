"""Stored entries in and out: read a response's body under a size limit, rebuild a fresh one per hit."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from flask import Response, has_request_context

from app.observability import metrics
from app.caching.dates import http_date
from app.caching.entry import CachedResponse
from app.caching.policy import header_values
from app.current import current_request
from app.environ import CACHE_ENVIRON
from app.errors import UpstreamUnreachable
from app.proxy import ProxyResponse

__all__ = ["CACHE_NAME", "fresh_response", "not_modified", "read_body", "with_status"]

#: Our name in Cache-Status (RFC 9211).
CACHE_NAME = "frontdesk"
# RFC 9110 15.4.5: the fields a 304 carries from the full response it stands for.
_NOT_MODIFIED_FIELDS = frozenset({"cache-control", "content-location", "date", "etag", "expires", "vary", "via"})
_NO_BODY = frozenset({204, 304})


def read_body(response: Response, limit: int) -> bytes | Response:
    """The whole body when it fits in ``limit`` bytes; otherwise a response streaming it all, unstored."""
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > limit:
        return response
    chunks: list[bytes] = []
    size = 0
    iterator = response.iter_encoded()
    try:
        for chunk in iterator:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                # Too big after all (chunked): what was read goes first, the rest streams as it comes.
                rest = ProxyResponse(itertools.chain(chunks, iterator), status=response.status_code,
                                     headers=list(response.headers.items()))
                rest.call_on_close(response.close)
                return rest
    except ConnectionResetError:
        response.close()
        # The head has not been sent yet, so the client can get an honest error instead of a cut body.
        raise UpstreamUnreachable("The upstream body broke off.") from None
    response.close()
    return b"".join(chunks)


def with_status(response: Response, member: str) -> Response:
    """Append our Cache-Status member (after any the upstream's caches added), and count it."""
    response.headers.add("Cache-Status", f"{CACHE_NAME}; {member}")
    _count(member)
    if has_request_context():
        current_request().environ[CACHE_ENVIRON] = member  # for the access log
    return response


# The forward reasons this module writes (RFC 9211 fwd values): a closed set, so a bounded label.
_FORWARD_REASONS = frozenset({"bypass", "miss", "uri-miss", "vary-miss", "stale", "request"})


def _count(member: str) -> None:
    """One hit, or one miss by its fwd reason (plus a store when the answer was stored)."""
    rule = current_request().url_rule if has_request_context() else None
    route = rule.rule if rule is not None else None
    if member.startswith("hit"):
        metrics.record_cache(route, "hit")
        return
    forward = member.partition("fwd=")[2].split(";", 1)[0].strip()
    metrics.record_cache(route, "miss", forward if forward in _FORWARD_REASONS else "other")
    if member.endswith("stored"):
        metrics.record_cache(route, "store")


def _age(entry: CachedResponse, now: float) -> int:
    return entry.initial_age + max(0, int(now - entry.requested_at))


def fresh_response(entry: CachedResponse, now: float, head: bool) -> ProxyResponse:
    """A new response object for one hit: the stored status, headers and bytes, with Age."""
    headers = [(name, value) for name, value in entry.headers if name.lower() != "age"]
    headers.append(("Age", str(_age(entry, now))))
    body: Iterator[bytes] | list[bytes] = [] if head else [entry.body]
    return ProxyResponse(body, status=entry.status, headers=headers)


def not_modified(entry: CachedResponse, if_none_match: str | None, now: float,
                 if_modified_since: str | None = None) -> ProxyResponse | None:
    """A 304 when the client's condition holds for the stored entry (RFC 9110 13.2.2), else None.

    ``If-None-Match`` uses the weak comparison (or ``*``); only without it, ``If-Modified-Since`` is compared
    with the entry's ``Last-Modified``.
    """
    if entry.status != 200:
        return None
    if if_none_match is not None:
        if entry.etag is None:
            return None
        wanted = header_values([("If-None-Match", if_none_match)], "If-None-Match")
        if "*" not in wanted and _opaque(entry.etag) not in {_opaque(tag) for tag in wanted}:
            return None
    elif if_modified_since is None or not _unmodified_since(entry, if_modified_since):
        return None
    headers = [(name, value) for name, value in entry.headers if name.lower() in _NOT_MODIFIED_FIELDS]
    headers.append(("Age", str(_age(entry, now))))
    return ProxyResponse([], status=304, headers=headers)


def _unmodified_since(entry: CachedResponse, since: str) -> bool:
    """Whether the entry's Last-Modified is no later than the client's date (False when either is unusable)."""
    modified = http_date(entry.last_modified) if entry.last_modified is not None else None
    wanted = http_date(since)
    return modified is not None and wanted is not None and modified <= wanted


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def content_length_headers(headers: list[tuple[str, str]], status: int, body: bytes) -> list[tuple[str, str]]:
    """The headers to store: a chunked answer read whole gets its Content-Length."""
    if status in _NO_BODY or any(name.lower() == "content-length" for name, _ in headers):
        return headers
    return [*headers, ("Content-Length", str(len(body)))]
