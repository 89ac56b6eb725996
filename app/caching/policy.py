"""RFC 9111 as a shared cache: what may be stored, for how long, and what a request may be served.

Plain functions over status codes and header lists, so the policy table is tested without Flask.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from app.caching.dates import http_date
from app.caching.targeted import targeted_directives

__all__ = [
    "CACHEABLE_STATUSES", "Decision", "cache_control", "decide", "header_values", "initial_age",
]

#: Final statuses cacheable by default (RFC 9110 15.1); others need explicit freshness we do not trust.
CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})


@dataclass(frozen=True)
class Decision:
    """Whether a response is stored, its freshness lifetime in seconds, and how it may be served stale."""

    ttl: float  # seconds of freshness from now (0: stored only to be revalidated or served stale)
    reason: str | None  # None: stored
    stale_while_revalidate: float = 0.0  # seconds past freshness it may be served while a refresh runs
    stale_if_error: float = 0.0  # seconds past freshness it may be served when the upstream fails
    revalidate: bool = False  # must-revalidate, proxy-revalidate, no-cache or s-maxage: never served stale

    @property
    def store(self) -> bool:
        """Whether to store."""
        return self.reason is None


def header_values(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    """Every comma-separated member of every field called ``name``."""
    wanted = name.lower()
    return [part.strip() for key, value in headers if key.lower() == wanted
            for part in value.split(",") if part.strip()]


def cache_control(headers: Iterable[tuple[str, str]]) -> dict[str, str | None]:
    """Cache-Control directives by lower-case name; a repeated directive keeps its first value."""
    directives: dict[str, str | None] = {}
    for member in header_values(headers, "Cache-Control"):
        name, eq, value = member.partition("=")
        directives.setdefault(name.strip().lower(), value.strip().strip('"') if eq else None)
    return directives


def _seconds(value: str | None) -> int | None:
    """A delta-seconds value; None when absent or malformed (RFC 9111 1.2.2: treat as stale)."""
    if value is None or not value.isdigit():
        return None
    return int(value)


def initial_age(headers: Iterable[tuple[str, str]]) -> int:
    """The Age the upstream (or a cache before it) reported."""
    values = header_values(headers, "Age")
    age = _seconds(values[0]) if values else None
    return age or 0


def decide(status: int, headers: list[tuple[str, str]], route_ttl: float, *, credentials: bool,
           consumer_scoped: bool, now: float | None = None, freshness: str = "route",
           windows: tuple[float | None, float | None] = (None, None), targeted: tuple[str, ...] = ()) -> Decision:
    """Whether a shared cache may store this response, for how long it is fresh, and its stale windows.

    ``freshness``: "route" gives a response without explicit freshness the route's ttl; "upstream" stores it
    only with a heuristic lifetime (RFC 9111 4.2.2). The route's ttl is always the ceiling. ``windows`` are
    the route's stale-while-revalidate and stale-if-error (None: the upstream's directives decide).
    ``targeted``: fields such as CDN-Cache-Control (RFC 9213); the first one present replaces Cache-Control
    and Expires.
    """
    if status not in CACHEABLE_STATUSES:
        return Decision(0, "status")
    directives = targeted_directives(headers, targeted)
    explicit_headers = headers
    if directives is None:
        directives = cache_control(headers)
    else:
        explicit_headers = [(name, value) for name, value in headers if name.lower() != "expires"]
    refused = _refusal(headers, directives, credentials, consumer_scoped)
    if refused is not None:
        return Decision(0, refused)
    lifetime = _explicit_lifetime(directives, explicit_headers, now)
    if lifetime is None:
        lifetime = route_ttl if freshness == "route" else _heuristic_lifetime(headers, now)
        ttl = route_ttl if lifetime is None else min(route_ttl, lifetime)
    else:
        ttl = min(route_ttl, lifetime - initial_age(headers))
    revalidate = any(name in directives for name in _NO_STALE)
    if "no-cache" in directives:
        ttl = 0  # stored, and revalidated on every use (RFC 9111 5.2.2.4)
    swr = _window(directives.get("stale-while-revalidate"), windows[0], revalidate)
    sie = _window(directives.get("stale-if-error"), windows[1], revalidate)
    validator = any(name.lower() in ("etag", "last-modified") for name, _ in headers)
    if lifetime is None and not validator:
        return Decision(0, "no-freshness")
    if ttl <= 0 and not (validator or swr or sie):
        return Decision(0, "no-cache" if "no-cache" in directives else "stale")
    return Decision(max(ttl, 0), None, swr, sie, revalidate)


# Directives after which a stored response is never served stale (s-maxage implies proxy-revalidate).
_NO_STALE = ("must-revalidate", "proxy-revalidate", "no-cache", "s-maxage")


def _refusal(headers: list[tuple[str, str]], directives: dict[str, str | None], credentials: bool,
             consumer_scoped: bool) -> str | None:
    """Why a response must not be stored at all, or None."""
    if "no-store" in directives:
        return "no-store"
    if "private" in directives:
        return "private"
    if "*" in (value.lower() for value in header_values(headers, "Vary")):
        return "vary-star"
    if any(value.split(";", 1)[0].strip().lower() == "text/event-stream" for value in
           header_values(headers, "Content-Type")):
        return "event-stream"  # a stream never ends to be stored: reading it whole would hold it back
    if any(name.lower() == "set-cookie" for name, _ in headers):
        return "set-cookie"
    if credentials and not consumer_scoped and "public" not in directives:
        return "credentials"  # RFC 9111 3.5: an authenticated answer is shared only when marked so
    return None


def _explicit_lifetime(directives: dict[str, str | None], headers: list[tuple[str, str]],
                       now: float | None) -> float | None:
    """s-maxage, else max-age, else Expires - Date; a malformed one means already stale (0); None: none given."""
    for name in ("s-maxage", "max-age"):
        if name in directives:
            value = _seconds(directives[name])
            return 0 if value is None else value
    return _expires_lifetime(headers, now)


def _heuristic_lifetime(headers: list[tuple[str, str]], now: float | None) -> float | None:
    """10 % of the time since Last-Modified (RFC 9111 4.2.2), or None without a usable Last-Modified."""
    modified = _date(headers, "last-modified")
    if modified is None:
        return None
    served = _date(headers, "date")
    origin_now = served if served is not None else (now or time.time())
    return max(0.0, (origin_now - modified) / 10)


def _window(upstream: str | None, route: float | None, revalidate: bool) -> float:
    """A stale window: the upstream's directive, shortened by the route's; 0 when stale serving is forbidden."""
    if revalidate:
        return 0.0
    given = _seconds(upstream) if upstream is not None else None
    if given is None:
        return route or 0.0
    return float(given) if route is None else min(float(given), route)


def _date(headers: list[tuple[str, str]], name: str) -> float | None:
    values = [value for key, value in headers if key.lower() == name]
    return http_date(values[0]) if values else None


def _expires_lifetime(headers: list[tuple[str, str]], now: float | None) -> float | None:
    """Expires - Date; 0 for an invalid Expires (not an HTTP date, or more than one: RFC 9111 5.3)."""
    expires = [value for name, value in headers if name.lower() == "expires"]
    if not expires:
        return None
    expiry = http_date(expires[0], now) if len(expires) == 1 else None
    if expiry is None:
        return 0
    served = _date(headers, "date")
    return expiry - (served if served is not None else (now or time.time()))
