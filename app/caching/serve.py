"""Serving one cacheable request: look up, wait for a call already in flight, or fetch and store."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Request, Response
from werkzeug.exceptions import HTTPException

from app.observability import metrics
from app.auth import Principal
from app.caching.entry import CachedResponse, VarySpec
from app.caching.errors import CacheOnlyIfCached, CacheWaitTimeout, RevalidationFailed
from app.caching.keys import url_key, variant_key, vary_spec
from app.caching.policy import cache_control, decide, header_values
from app.caching.responses import fresh_response, not_modified, read_body, with_status
from app.caching.runtime import CacheRuntime, Flight
from app.caching.settings import RouteCache
from app.caching.stored import fleet_turn, stored_entry
from app.caching.stale import (
    NO_RULES,
    ClientRules,
    client_rules,
    is_fresh,
    may_serve_on_error,
    may_serve_while_revalidating,
)
from app.caching.validate import CONDITIONALS, conditions_for, refreshed_headers
from app.current import current_gateway, current_globals, current_request
from app.environ import API_KEY_ENVIRON, raw_target
from app.errors import UpstreamBusy, UpstreamDown, UpstreamTimeout, UpstreamUnreachable
from app.proxy import ProxyResponse

__all__ = ["PARTIAL_ENVIRON", "PARTIAL_HEADER", "consumer_key", "mark_uncacheable", "serve"]

#: A view (or a future aggregation) sets this in the environ, or this response header, to keep an answer
#: out of the cache: a partial answer must never be served as a whole one.
PARTIAL_ENVIRON = "frontdesk.cache.skip"
PARTIAL_HEADER = "X-Frontdesk-Partial"
_PARTIAL_LOWER = PARTIAL_HEADER.lower()
# What a revalidation may answer stale for (stale-if-error): the gateway's own upstream errors and these statuses.
_UPSTREAM_FAILURES = (UpstreamUnreachable, UpstreamTimeout, UpstreamBusy, UpstreamDown)
_ERROR_STATUSES = frozenset({500, 502, 503, 504})
# Decisions that say the answer depends on who asked: waiting callers go upstream themselves, at once.
_PASS_REASONS = frozenset({"private", "no-store", "no-cache", "set-cookie", "credentials", "vary-star", "partial",
                           "too-large", "event-stream"})

# How long an answer that could not be shared lets every caller of that key go upstream without queueing.
_PASS_SECONDS = 1.0

View = Callable[[], Any]

log = logging.getLogger("frontdesk.cache")


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
    rules = NO_RULES
    if "HTTP_CACHE_CONTROL" in environ or "HTTP_PRAGMA" in environ:
        rules = client_rules(environ.get("HTTP_CACHE_CONTROL"), environ.get("HTTP_PRAGMA"),
                             policy.ignore_client_no_cache)
    head = served.method == "HEAD"
    wait_left = runtime.settings.wait_timeout
    while True:
        spec = runtime.get(url)
        names = spec.names if isinstance(spec, VarySpec) else vary_spec(policy.vary, ())
        key = variant_key(url, names, environ)
        entry = runtime.get(key)
        stale = None
        if isinstance(entry, CachedResponse):
            now = runtime.clock()
            if (rules is NO_RULES and now < entry.fresh_until) or is_fresh(entry, now, rules):
                return _hit(runtime, entry, head, environ, now)
            if rules.only_if_cached or head:
                return _stale_only(runtime, policy, view, entry, rules, head)
            if may_serve_while_revalidating(entry, now, rules):
                if key not in runtime.flights:
                    _refresh(runtime, policy, view, (url, key, "stale"), entry, (credentials, consumer is not None))
                return _stale(entry, now, "detail=stale-while-revalidate")
            stale = entry
            # RFC 9211: "request" when it is fresh but the request's directives did not allow its use.
            forward = "request" if now < entry.fresh_until else "stale"
        elif rules.only_if_cached:
            raise CacheOnlyIfCached("Nothing stored answers this request, and it asked for a stored answer only.")
        elif head or "no-store" in cache_control([("Cache-Control", environ.get("HTTP_CACHE_CONTROL", ""))]):
            return with_status(_response(view()), "fwd=miss; detail=" + ("head" if head else "request-no-store"))
        flight = runtime.flights.get(key)
        if flight is None:
            fwd = forward if stale is not None else "vary-miss" if isinstance(spec, VarySpec) else "uri-miss"
            return _lead(runtime, policy, view, (url, key, fwd), (credentials, consumer is not None),
                         lambda: _lookup(runtime, url, policy, environ), stale)
        if flight.waiters >= runtime.settings.max_waiters:
            return with_status(_response(view()), "fwd=miss; detail=too-many-waiters")
        wait_left = _await(runtime, flight, wait_left)
        if flight.pass_through:
            return with_status(_response(view()), "fwd=miss; detail=not-shareable")
        if flight.stale_error and stale is not None and may_serve_on_error(stale, runtime.clock()):
            return _stale(stale, runtime.clock(), "detail=stale-if-error")
        # Stored (then the next lookup hits) or failed: then the first waiter to run leads the retry.


def _stale_only(runtime: CacheRuntime, policy: RouteCache, view: View, entry: CachedResponse, rules: ClientRules,
                head: bool) -> Response:
    """A stale entry for a HEAD (forwarded) or an only-if-cached request (served only where stale is allowed)."""
    now = runtime.clock()
    if rules.only_if_cached:
        if not entry.revalidate and (may_serve_while_revalidating(entry, now, rules) or rules.max_stale):
            return _stale(entry, now, "detail=only-if-cached")
        raise CacheOnlyIfCached("The stored answer is stale, and the request asked for a stored answer only.")
    return with_status(_response(view()), "fwd=stale; detail=head")


def _stale(entry: CachedResponse, now: float, detail: str) -> Response:
    """The stored entry served past its freshness (RFC 5861), marked in Cache-Status."""
    return with_status(fresh_response(entry, now, current_request().method == "HEAD"),
                       f"hit; fwd=stale; ttl={int(entry.fresh_until - now)}; {detail}")


def _refresh(runtime: CacheRuntime, policy: RouteCache, view: View, keys: tuple[str, str, str],
             entry: CachedResponse, who: tuple[bool, bool]) -> None:
    """One background revalidation of ``entry``: the key's flight until it ends, however it ends."""
    key = keys[1]
    flight = runtime.flights[key] = Flight()

    def work() -> None:
        shared = runtime.shared
        # With a shared tier, one refresh per key for the fleet: another worker or instance has it otherwise.
        if shared is not None and shared.claim(key, runtime.settings.wait_timeout) != "lead":
            return
        try:
            _fetch(runtime, policy, view, keys, flight, who, entry).close()
        except HTTPException as error:  # an upstream failure: the entry stays as it was
            log.info("cache refresh failed", extra={"fields": {"status": error.code}})
        finally:
            if shared is not None:
                shared.release(key, True, 0)

    runtime.refreshes.start(work, lambda: runtime.release(key, flight))


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
    """A fresh entry for the request (another worker or instance may have stored it meanwhile)."""
    spec = runtime.get(url)
    names = spec.names if isinstance(spec, VarySpec) else vary_spec(policy.vary, ())
    entry = runtime.get(variant_key(url, names, environ))
    return entry if isinstance(entry, CachedResponse) and runtime.clock() < entry.fresh_until else None


def _hit(runtime: CacheRuntime, entry: CachedResponse, head: bool, environ: dict[str, Any],
         now: float | None = None) -> Response:
    now = runtime.clock() if now is None else now
    answer = None
    if "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MODIFIED_SINCE" in environ:
        answer = not_modified(entry, environ.get("HTTP_IF_NONE_MATCH"), now, environ.get("HTTP_IF_MODIFIED_SINCE"))
    return with_status(answer or fresh_response(entry, now, head), f"hit; ttl={int(entry.fresh_until - now)}")


def _lead(runtime: CacheRuntime, policy: RouteCache, view: View, keys: tuple[str, str, str], who: tuple[bool, bool],
          lookup: Callable[[], CachedResponse | None], stale: CachedResponse | None) -> Response:
    key = keys[1]
    flight = runtime.flights[key] = Flight()
    try:
        turn = fleet_turn(runtime, key, lookup)
        if isinstance(turn, CachedResponse):
            return _hit(runtime, turn, False, current_request().environ)
        if turn == "pass":
            flight.pass_through = True
            return with_status(_response(view()), f"fwd={keys[2]}; detail=not-shareable")
        return _fetch(runtime, policy, view, keys, flight, who, stale)
    finally:
        runtime.release(key, flight)
        if runtime.shared is not None:  # a no-op unless this worker holds the key's fleet lock, however we got here
            runtime.shared.release(key, not flight.pass_through, _PASS_SECONDS)


def _fetch(runtime: CacheRuntime, policy: RouteCache, view: View, keys: tuple[str, str, str], flight: Flight,
           who: tuple[bool, bool], stale: CachedResponse | None) -> Response:
    """Call the upstream (conditionally when ``stale`` has a validator), store what may be, answer the client."""
    environ = current_request().environ
    # The upstream is asked for the full answer (or about the stored one); the client's condition is applied here.
    conditions = {name: environ.pop(name) for name in CONDITIONALS if name in environ}
    if stale is not None:
        environ.update(conditions_for(stale))
    requested_at = runtime.clock()
    try:
        response = _response(view())
    except _UPSTREAM_FAILURES as error:
        if stale is None:
            raise
        return _failed(runtime, stale, flight, error.code or 502, error)
    finally:
        for name in CONDITIONALS:
            environ.pop(name, None)
        environ.update(conditions)
    if stale is not None and response.status_code in _ERROR_STATUSES and may_serve_on_error(stale, runtime.clock()):
        response.close()
        return _failed(runtime, stale, flight, response.status_code, None)
    if stale is not None and response.status_code == 304:
        response.close()
        headers = refreshed_headers(stale.headers, response.headers.items())
        return _store(runtime, policy, keys, flight, who, (stale.status, headers, stale.body), requested_at,
                      "fwd-status=304; ")
    return _store(runtime, policy, keys, flight, who, response, requested_at, "")


def _failed(runtime: CacheRuntime, stale: CachedResponse, flight: Flight, status: int,
            error: HTTPException | None) -> Response:
    """The upstream failed while revalidating: the stale entry where stale-if-error allows, else the failure."""
    now = runtime.clock()
    if may_serve_on_error(stale, now):
        flight.stale_error = True
        return _stale(stale, now, f"fwd-status={status}; detail=stale-if-error")
    if error is None:
        raise AssertionError("a failed answer is only turned into the stale entry where that is allowed")
    if stale.revalidate:
        # RFC 9111 5.2.2.2: a response that must be revalidated is never served stale: 504 when that fails.
        raise RevalidationFailed("The stored answer must be revalidated, and the upstream could not be asked.") \
            from error
    raise error


def _store(runtime: CacheRuntime, policy: RouteCache, keys: tuple[str, str, str], flight: Flight,
           who: tuple[bool, bool], answer: Response | tuple[int, list[tuple[str, str]], bytes],
           requested_at: float, status_note: str) -> Response:
    """Store the upstream's answer (or a stored body with a 304's headers) when it may be; answer the client."""
    served = current_request()
    environ = served.environ
    url, _, fwd = keys
    status, headers = (answer.status_code, list(answer.headers.items())) if isinstance(answer, Response) \
        else answer[:2]
    decision = decide(status, headers, policy.ttl, credentials=who[0], consumer_scoped=who[1], now=requested_at,
                      freshness=policy.freshness, windows=(policy.stale_while_revalidate, policy.stale_if_error),
                      targeted=runtime.settings.targeted_fields)
    reason = decision.reason
    if reason is None and (environ.get(PARTIAL_ENVIRON) or any(n.lower() == _PARTIAL_LOWER for n, _ in headers)):
        reason = "partial"
    response = answer if isinstance(answer, Response) else ProxyResponse([answer[2]], status=status, headers=headers)
    if reason is not None:
        if fwd in ("stale", "request") and status < 500:
            runtime.drop(keys[1])  # the upstream's answer replaces the stale entry, even by not being storable
        flight.pass_through = reason in _PASS_REASONS or status < 500
        return with_status(response, f"fwd={fwd}; {status_note}detail={reason}")
    body = answer[2] if isinstance(answer, tuple) else read_body(response, runtime.settings.max_item_bytes)
    if isinstance(body, Response):
        flight.pass_through = True
        return with_status(body, f"fwd={fwd}; detail=too-large")
    entry = stored_entry(runtime.settings, decision, (status, headers, body), requested_at, served.path)
    names = vary_spec(policy.vary, header_values(headers, "Vary"))
    runtime.set(url, VarySpec(names, entry.expires))
    # Stored under the spec this answer declares: waiters look up again with it.
    runtime.set(variant_key(url, names, environ), entry)
    now = runtime.clock()
    conditional = not_modified(entry, environ.get("HTTP_IF_NONE_MATCH"), now, environ.get("HTTP_IF_MODIFIED_SINCE"))
    return with_status(conditional or fresh_response(entry, now, False), f"fwd={fwd}; {status_note}stored")


def _response(value: Any) -> Response:
    return value if isinstance(value, Response) else current_gateway().make_response(value)
