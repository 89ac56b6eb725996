"""RFC 9111 as a shared cache: what may be stored, for how long, and what a request may be served.

Plain functions over status codes and header lists, so the policy table is tested without Flask.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

__all__ = [
    "CACHEABLE_STATUSES", "Decision", "cache_control", "decide", "header_values", "initial_age",
]

#: Final statuses cacheable by default (RFC 9110 15.1); others need explicit freshness we do not trust.
CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})


@dataclass(frozen=True)
class Decision:
    """Whether a response is stored and for how many seconds; otherwise the reason, for Cache-Status."""

    ttl: float
    reason: str | None  # None: stored

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
           consumer_scoped: bool, now: float | None = None) -> Decision:
    """Whether a shared cache may store this response, and its time to live (the route's TTL is the ceiling)."""
    if status not in CACHEABLE_STATUSES:
        return Decision(0, "status")
    directives = cache_control(headers)
    if "no-store" in directives:
        return Decision(0, "no-store")
    if "private" in directives:
        return Decision(0, "private")
    if "no-cache" in directives:
        return Decision(0, "no-cache")  # stored entries would need revalidation on every use; we never revalidate
    if "*" in (value.lower() for value in header_values(headers, "Vary")):
        return Decision(0, "vary-star")
    if any(name.lower() == "set-cookie" for name, _ in headers):
        return Decision(0, "set-cookie")
    if credentials and not consumer_scoped and "public" not in directives:
        return Decision(0, "credentials")  # RFC 9111 3.5: an authenticated answer is shared only when marked so
    ttl = route_ttl
    lifetime: float | None = _seconds(directives.get("s-maxage"))
    if lifetime is None:
        lifetime = _seconds(directives.get("max-age"))
    if lifetime is None and "s-maxage" not in directives and "max-age" not in directives:
        lifetime = _expires_lifetime(headers, now)
    elif lifetime is None:
        return Decision(0, "bad-max-age")
    if lifetime is not None:
        ttl = min(ttl, lifetime - initial_age(headers))
    if ttl <= 0:
        return Decision(0, "stale")
    return Decision(ttl, None)


def _expires_lifetime(headers: list[tuple[str, str]], now: float | None) -> float | None:
    expires = [value for name, value in headers if name.lower() == "expires"]
    if not expires:
        return None
    try:
        expiry = parsedate_to_datetime(expires[0]).timestamp()
    except (TypeError, ValueError, IndexError):
        return 0  # an invalid Expires means already expired (RFC 9111 5.3)
    dates = [value for name, value in headers if name.lower() == "date"]
    try:
        origin_now = parsedate_to_datetime(dates[0]).timestamp() if dates else (now or time.time())
    except (TypeError, ValueError, IndexError):
        origin_now = now or time.time()
    return expiry - origin_now
