"""Rate limit response headers: the IETF draft fields, the legacy X-RateLimit-* set, Retry-After.

The IETF fields follow draft-ietf-httpapi-ratelimit-headers (revision 09/10): each policy is a
structured-field list member, ``RateLimit-Policy: "default";q=300;w=60`` and
``RateLimit: "default";r=299;t=60``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Usage", "ietf_headers", "legacy_headers", "retry_after"]


@dataclass(frozen=True)
class Usage:
    """One limit as this request left it: its policy name, quota, window, what remains, when it resets."""

    name: str
    quota: int
    window: int  # seconds
    remaining: int
    reset_at: float  # epoch seconds at which the quota is available again (one slot at least)
    breached: bool


def _seconds_until(moment: float, now: float) -> int:
    # Rounded up: a client that waits this long never arrives before the reset.
    return max(0, math.ceil(moment - now))


def _token(name: str) -> str:
    return '"' + re.sub(r'[^A-Za-z0-9_.:/-]', "-", name) + '"'


def ietf_headers(usages: Sequence[Usage], now: float) -> list[tuple[str, str]]:
    """``RateLimit-Policy`` and ``RateLimit``, one list member per limit this request counted against."""
    if not usages:
        return []
    policy = ", ".join(f"{_token(u.name)};q={u.quota};w={u.window}" for u in usages)
    state = ", ".join(f"{_token(u.name)};r={max(0, u.remaining)};t={_seconds_until(u.reset_at, now)}"
                      for u in usages)
    return [("RateLimit-Policy", policy), ("RateLimit", state)]


def legacy_headers(usages: Sequence[Usage]) -> list[tuple[str, str]]:
    """``X-RateLimit-Limit/-Remaining/-Reset`` (an epoch) for the tightest limit, as Flask-Limiter wrote them."""
    if not usages:
        return []
    tightest = _tightest(usages)
    return [
        ("X-RateLimit-Limit", str(tightest.quota)),
        ("X-RateLimit-Remaining", str(max(0, tightest.remaining))),
        ("X-RateLimit-Reset", str(math.ceil(tightest.reset_at))),
    ]


def retry_after(usages: Sequence[Usage], now: float) -> str | None:
    """Seconds until every breached limit has reset (at least 1), or None when none is breached."""
    breached = [u for u in usages if u.breached]
    if not breached:
        return None
    return str(max(1, max(_seconds_until(u.reset_at, now) for u in breached)))


def _tightest(usages: Sequence[Usage]) -> Usage:
    breached = [u for u in usages if u.breached]
    return min(breached or usages, key=lambda u: (u.remaining, u.window))
