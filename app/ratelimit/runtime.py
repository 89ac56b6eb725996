"""Where one app's rate limit state lives (``app.extensions[EXTENSION]``) and what it holds."""

from __future__ import annotations

from dataclasses import dataclass

from app.ratelimit.settings import RateLimitSettings
from app.ratelimit.storage import MeteredStrategy
from app.sharedstate import OutageGuard

__all__ = ["EXTENSION", "RateLimitRuntime"]

#: Where the rate limit runtime lives in ``app.extensions``.
EXTENSION = "frontdesk.ratelimit"


@dataclass(frozen=True)
class RateLimitRuntime:
    """One app's (one worker's) rate limit state."""

    settings: RateLimitSettings
    guard: OutageGuard
    strategy: MeteredStrategy
