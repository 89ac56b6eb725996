"""Building a stored entry from an upstream answer, and the fleet-wide turn to make the one upstream call."""

from __future__ import annotations

from collections.abc import Callable

import gevent

from app.caching.entry import CachedResponse
from app.caching.errors import CacheWaitTimeout
from app.caching.policy import Decision, initial_age
from app.caching.responses import content_length_headers
from app.caching.runtime import CacheRuntime
from app.caching.settings import CacheSettings

__all__ = ["fleet_turn", "stored_entry"]

# How often a worker looks for the entry another instance is fetching.
_POLL_SECONDS = 0.02


def stored_entry(settings: CacheSettings, decision: Decision, answer: tuple[int, list[tuple[str, str]], bytes],
                 requested_at: float, path: str) -> CachedResponse:
    """The stored form of an answer: kept past its freshness only when a validator or a stale window can use it."""
    status, headers, body = answer
    # The body is stored whole (Content-Length is added): the upstream's framing is not part of the entry.
    dropped = (settings.surrogate_header.lower(), "transfer-encoding")
    stored_headers = [(n, v) for n, v in headers if n.lower() not in dropped]
    etag = next((v for n, v in headers if n.lower() == "etag"), None)
    modified = next((v for n, v in headers if n.lower() == "last-modified"), None)
    fresh_until = requested_at + decision.ttl
    usable_stale = etag or modified or decision.stale_while_revalidate or decision.stale_if_error
    return CachedResponse(
        status=status, headers=tuple(content_length_headers(stored_headers, status, body)), body=body,
        requested_at=requested_at, expires=fresh_until + (settings.stale_keep if usable_stale else 0),
        initial_age=initial_age(headers), path=path, tags=tuple(_tags(headers, settings.surrogate_header)),
        etag=etag, fresh_until=fresh_until, last_modified=modified,
        stale_while_revalidate=decision.stale_while_revalidate, stale_if_error=decision.stale_if_error,
        revalidate=decision.revalidate,
    )


def _tags(headers: list[tuple[str, str]], name: str) -> list[str]:
    # Surrogate-Key is space-separated (Fastly); commas are accepted too.
    wanted = name.lower()
    return [tag for field_name, value in headers if field_name.lower() == wanted
            for tag in value.replace(",", " ").split()]


def fleet_turn(runtime: CacheRuntime, key: str, lookup: Callable[[], CachedResponse | None]
               ) -> CachedResponse | str:
    """With a shared tier, one call per key for every worker of every instance: the entry another stored,
    "lead" when this worker is to call upstream, or "pass" when the last answer could not be shared."""
    shared = runtime.shared
    if shared is None:
        return "lead"
    deadline = runtime.clock() + runtime.settings.wait_timeout
    waited = False
    while True:
        turn = shared.claim(key, runtime.settings.wait_timeout)
        if turn == "lead" and waited:
            # The flight before ours ended: stored (then serve it) or failed (then we are next, alone).
            entry = lookup()
            if entry is not None:
                shared.release(key, True, 0)
                return entry
        if turn != "busy":
            return turn
        waited = True
        gevent.sleep(_POLL_SECONDS)
        entry = lookup()
        if entry is not None:
            return entry
        if runtime.clock() > deadline:
            raise CacheWaitTimeout("Another request for this resource is still waiting for the upstream.")
