"""Serving one cacheable request: look up, wait for a call already in flight, or fetch and store."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import gevent
from flask import Request, Response

from app.observability import metrics
from app.auth import Principal
from app.caching.entry import CachedResponse, VarySpec
from app.caching.errors import CacheWaitTimeout
from app.caching.keys import url_key, variant_key, vary_spec
from app.caching.policy import cache_control, decide, header_values, initial_age
from app.caching.responses import content_length_headers, fresh_response, not_modified, read_body, with_status
from app.caching.runtime import CacheRuntime, Flight
from app.caching.settings import RouteCache
from app.current import current_gateway, current_globals, current_request
from app.environ import API_KEY_ENVIRON, raw_target

__all__ = ["PARTIAL_ENVIRON", "PARTIAL_HEADER", "consumer_key", "mark_uncacheable", "serve"]

#: A view (or a future aggregation) sets this in the environ, or this response header, to keep an answer
#: out of the cache: a partial answer must never be served as a whole one.
PARTIAL_ENVIRON = "frontdesk.cache.skip"
PARTIAL_HEADER = "X-Frontdesk-Partial"
_CONDITIONALS = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE")
# Decisions that say the answer depends on who asked: waiting callers go upstream themselves, at once.
_PASS_REASONS = frozenset({"private", "no-store", "no-cache", "set-cookie", "credentials", "vary-star", "partial",
                           "too-large"})

# How often a worker looks for the entry another instance is fetching, and how long an answer that
# could not be shared lets every caller of that key go upstream without queueing.
_POLL_SECONDS = 0.02
_PASS_SECONDS = 1.0

View = Callable[[], Any]


def mark_uncacheable() -> None:
    """Keep the current request's answer out of the cache (partial answers, one-off errors)."""
    current_request().environ[PARTIAL_ENVIRON] = True


def _credentials(environ: dict[str, Any]) -> bool:
    return any(name in environ for name in ("HTTP_AUTHORIZATION", API_KEY_ENVIRON, "HTTP_COOKIE"))


def consumer_key(principal: Principal | None) -> str | None:
    """Who a consumer-scoped entry belongs to: scheme, consumer and subject (None: nobody verified)."""
    if principal is None or (principal.consumer is None and principal.subject is None):
        return None
    # Both parts: a token's consumer (azp) is the client application, shared by all of its users.
    return json.dumps([principal.scheme, principal.consumer, principal.subject])


def serve(policy: RouteCache, view: View) -> Response:
    """The route's answer through the cache (GET and HEAD only; anything else goes straight to the view)."""
    runtime: CacheRuntime = current_gateway().extensions["frontdesk.cache"]
    served = current_request()
    environ = served.environ
    if served.method not in ("GET", "HEAD"):
        return _response(view())
    if "HTTP_RANGE" in environ:
        return with_status(_response(view()), "fwd=bypass; detail=range")
    credentials = _credentials(environ)
    consumer = None
    if policy.scope == "consumer":
        consumer = consumer_key(current_globals().get("principal"))
        if consumer is None and credentials:
            return with_status(_response(view()), "fwd=bypass; detail=no-consumer")
    url = _url(served, consumer)
    runtime.journal.poll()

    head = served.method == "HEAD"
    wait_left = runtime.settings.wait_timeout
    while True:
        spec = runtime.get(url)
        names = spec.names if isinstance(spec, VarySpec) else vary_spec(policy.vary, ())
        key = variant_key(url, names, environ)
        entry = runtime.get(key)
        if isinstance(entry, CachedResponse):
            return _hit(runtime, entry, head, environ)
        if head or "no-store" in cache_control([("Cache-Control", environ.get("HTTP_CACHE_CONTROL", ""))]):
            return with_status(_response(view()), "fwd=miss; detail=" + ("head" if head else "request-no-store"))
        flight = runtime.flights.get(key)
        if flight is None:
            fwd = "vary-miss" if isinstance(spec, VarySpec) else "uri-miss"
            return _lead(runtime, policy, view, (url, key, fwd), credentials, consumer is not None,
                         lambda: _lookup(runtime, url, policy, environ))
        if flight.waiters >= runtime.settings.max_waiters:
            return with_status(_response(view()), "fwd=miss; detail=too-many-waiters")
        wait_left = _await(runtime, flight, wait_left)
        if flight.pass_through:
            return with_status(_response(view()), "fwd=miss; detail=not-shareable")
        # Stored (then the next lookup hits) or failed: then the first waiter to run leads the retry.


def _url(served: Request, consumer: str | None) -> str:
    environ = served.environ
    raw_path, _, raw_query = raw_target(environ)
    rule = served.url_rule
    # The target URI includes its authority (RFC 9111 4): one host's answer is never another's.
    origin = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
    return url_key(f"{served.endpoint} {rule.rule if rule else ''}", origin, raw_path, raw_query, consumer)


def _await(runtime: CacheRuntime, flight: Flight, wait_left: float) -> float:
    """Wait for another request's upstream call; the waiting time left, or a 504 when it ran out."""
    started = runtime.clock()
    rule = current_request().url_rule
    metrics.record_cache(rule.rule if rule is not None else None, "stampede_wait")
    flight.waiters += 1
    try:
        finished = flight.done.wait(max(wait_left, 0))
    finally:
        flight.waiters -= 1
    if not finished:
        raise CacheWaitTimeout("Another request for this resource is still waiting for the upstream.")
    return wait_left - (runtime.clock() - started)


def _lookup(runtime: CacheRuntime, url: str, policy: RouteCache, environ: dict[str, Any]) -> CachedResponse | None:
    spec = runtime.get(url)
    names = spec.names if isinstance(spec, VarySpec) else vary_spec(policy.vary, ())
    entry = runtime.get(variant_key(url, names, environ))
    return entry if isinstance(entry, CachedResponse) else None


def _fleet_turn(runtime: CacheRuntime, key: str, lookup: Callable[[], CachedResponse | None]
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


def _hit(runtime: CacheRuntime, entry: CachedResponse, head: bool, environ: dict[str, Any]) -> Response:
    now = runtime.clock()
    ttl = int(entry.expires - now)
    answer = not_modified(entry, environ.get("HTTP_IF_NONE_MATCH"), now) or fresh_response(entry, now, head)
    return with_status(answer, f"hit; ttl={ttl}")


def _lead(runtime: CacheRuntime, policy: RouteCache, view: View, keys: tuple[str, str, str], credentials: bool,
          consumer_scoped: bool, lookup: Callable[[], CachedResponse | None]) -> Response:
    url, key, fwd = keys
    flight = runtime.flights[key] = Flight()
    fleet = False
    try:
        turn = _fleet_turn(runtime, key, lookup)
        if isinstance(turn, CachedResponse):
            return _hit(runtime, turn, False, current_request().environ)
        if turn == "pass":
            flight.pass_through = True
            return with_status(_response(view()), f"fwd={fwd}; detail=not-shareable")
        fleet = runtime.shared is not None
        return _fetch(runtime, policy, view, url, fwd, flight, credentials, consumer_scoped)
    finally:
        del runtime.flights[key]
        flight.done.set()
        if fleet and runtime.shared is not None:
            runtime.shared.release(key, not flight.pass_through, _PASS_SECONDS)


def _fetch(runtime: CacheRuntime, policy: RouteCache, view: View, url: str, fwd: str, flight: Flight,
           credentials: bool, consumer_scoped: bool) -> Response:
    served = current_request()
    environ = served.environ
    # The upstream is asked for the full answer, to store; the client's condition is applied here.
    conditions = {name: environ.pop(name) for name in _CONDITIONALS if name in environ}
    requested_at = runtime.clock()
    response = _response(view())
    headers = list(response.headers.items())
    status = response.status_code
    decision = decide(status, headers, policy.ttl, credentials=credentials, consumer_scoped=consumer_scoped,
                      now=requested_at)
    reason = decision.reason
    if reason is None and (environ.get(PARTIAL_ENVIRON) or PARTIAL_HEADER in response.headers):
        reason = "partial"
    if reason is not None:
        flight.pass_through = reason in _PASS_REASONS or status < 500
        return with_status(response, f"fwd={fwd}; detail={reason}")
    body = read_body(response, runtime.settings.max_item_bytes)
    if isinstance(body, Response):
        flight.pass_through = True
        return with_status(body, f"fwd={fwd}; detail=too-large")
    names = vary_spec(policy.vary, header_values(headers, "Vary"))
    stored_headers = [(n, v) for n, v in headers if n.lower() != runtime.settings.surrogate_header.lower()]
    expires = requested_at + decision.ttl
    entry = CachedResponse(
        status=status, headers=tuple(content_length_headers(stored_headers, status, body)), body=body,
        requested_at=requested_at, expires=expires, initial_age=initial_age(headers), path=served.path,
        tags=tuple(_tags(headers, runtime.settings.surrogate_header)),
        etag=response.headers.get("ETag"),
    )
    runtime.set(url, VarySpec(names, expires))
    # Stored under the spec this answer declares: waiters look up again with it.
    runtime.set(variant_key(url, names, environ), entry)
    now = runtime.clock()
    answer = not_modified(entry, conditions.get("HTTP_IF_NONE_MATCH"), now)
    return with_status(answer or fresh_response(entry, now, False), f"fwd={fwd}; stored")


def _tags(headers: list[tuple[str, str]], name: str) -> list[str]:
    # Surrogate-Key is space-separated (Fastly); commas are accepted too.
    wanted = name.lower()
    return [tag for field_name, value in headers if field_name.lower() == wanted
            for tag in value.replace(",", " ").split()]


def _response(value: Any) -> Response:
    return value if isinstance(value, Response) else current_gateway().make_response(value)
