"""Rate limits and quotas: Flask-Limiter with shared storage, gateway key functions, IETF headers."""

from __future__ import annotations

from app.ratelimit.extension import (
    EXTENSION,
    GatewayLimiter,
    RateLimitRuntime,
    limit_declared_route,
    limiter,
    plan_quota,
)
from app.ratelimit.keys import by_client_address, by_consumer, by_header, plan_of
from app.ratelimit.layer import PolicyLimit, route_limits_of
from app.ratelimit.settings import RateLimitSettings, check_limits, read_ratelimit, worker_count
from app.ratelimit.storage import StorageUnavailable

__all__ = [
    "EXTENSION", "GatewayLimiter", "PolicyLimit", "RateLimitRuntime", "RateLimitSettings", "StorageUnavailable",
    "by_client_address", "by_consumer", "by_header", "check_limits", "limit_declared_route",
    "limiter", "plan_of", "plan_quota", "read_ratelimit", "route_limits_of", "worker_count",
]
