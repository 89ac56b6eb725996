"""Whether a stored entry may answer a request: freshness, client directives (RFC 9111 5.2.1), stale windows.

Plain functions over an entry, the clock and the request's Cache-Control, so the rules are tested without
Flask. RFC 5861 gives the stale windows; must-revalidate, proxy-revalidate, no-cache and s-maxage close them.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.caching.entry import CachedResponse
from app.caching.policy import cache_control

__all__ = ["NO_RULES", "ClientRules", "client_rules", "is_fresh", "may_serve_on_error", "may_serve_while_revalidating",
           "stale_for"]


@dataclass(frozen=True, slots=True)
class ClientRules:
    """A request's Cache-Control as the cache applies it; the defaults are a request without one."""

    no_cache: bool = False  # revalidate even a fresh entry (unless the route ignores it)
    max_age: int | None = None  # the oldest entry the client accepts
    min_fresh: int = 0  # seconds of freshness the entry must still have
    max_stale: float = 0.0  # seconds of staleness the client accepts (inf: any)
    only_if_cached: bool = False  # 504 rather than a call upstream


#: A request without Cache-Control (the hot path shares this one).
NO_RULES = ClientRules()


def client_rules(cache_control_value: str | None, pragma: str | None, ignore_no_cache: bool) -> ClientRules:
    """The request directives; ``Pragma: no-cache`` counts only without Cache-Control (RFC 9111 5.4)."""
    if cache_control_value is None:
        if pragma is not None and "no-cache" in pragma.lower() and not ignore_no_cache:
            return ClientRules(no_cache=True)
        return NO_RULES
    directives = cache_control([("Cache-Control", cache_control_value)])
    max_stale = directives.get("max-stale", "")
    return ClientRules(
        no_cache="no-cache" in directives and not ignore_no_cache,
        max_age=_number(directives.get("max-age")) if "max-age" in directives else None,
        min_fresh=_number(directives.get("min-fresh")) or 0,
        max_stale=(float("inf") if not max_stale else float(_number(max_stale) or 0)) if "max-stale" in directives
        else 0.0,
        only_if_cached="only-if-cached" in directives,
    )


def _number(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def stale_for(entry: CachedResponse, now: float) -> float:
    """Seconds since the entry stopped being fresh (negative while fresh)."""
    return now - entry.fresh_until


def is_fresh(entry: CachedResponse, now: float, rules: ClientRules) -> bool:
    """Whether the entry answers this request without the upstream (client directives included)."""
    if rules.no_cache:
        return False
    if rules.max_age is not None and entry.initial_age + (now - entry.requested_at) > rules.max_age:
        return False
    left = entry.fresh_until - now
    if left > rules.min_fresh:
        return True
    # max-stale lets a client take a stale answer, never one the upstream said must be revalidated.
    return rules.max_stale > 0 and not entry.revalidate and -left <= rules.max_stale and rules.max_age is None


def may_serve_while_revalidating(entry: CachedResponse, now: float, rules: ClientRules) -> bool:
    """Whether RFC 5861 stale-while-revalidate lets the entry answer while one refresh runs."""
    if entry.revalidate or rules.no_cache or rules.max_age is not None or rules.min_fresh:
        return False
    return 0 <= stale_for(entry, now) < entry.stale_while_revalidate


def may_serve_on_error(entry: CachedResponse, now: float) -> bool:
    """Whether RFC 5861 stale-if-error lets the entry answer for an upstream that failed."""
    return not entry.revalidate and stale_for(entry, now) < entry.stale_if_error
