"""Response caching as a shared cache (RFC 9111, RFC 9211): per-worker tier, optional Redis tier, purges."""

from __future__ import annotations

from app.caching.entry import CachedResponse
from app.caching.extension import (
    EXTENSION,
    Cache,
    apply_cache,
    cache,
    cache_policy_of,
    cache_response,
    invalidate_after_write,
)
from app.caching.runtime import CacheRuntime
from app.caching.serve import PARTIAL_ENVIRON, PARTIAL_HEADER, mark_uncacheable
from app.caching.settings import CacheSettings, RouteCache, read_cache, read_route_cache, route_cache

__all__ = [
    "EXTENSION", "PARTIAL_ENVIRON", "PARTIAL_HEADER", "Cache", "CacheRuntime", "CacheSettings", "CachedResponse",
    "RouteCache", "apply_cache", "cache", "cache_policy_of", "cache_response", "invalidate_after_write",
    "mark_uncacheable", "read_cache", "read_route_cache", "route_cache",
]
