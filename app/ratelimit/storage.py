"""Counting: one storage round trip per limit, a deadline on every call, and outages handled once.

``MeteredStrategy`` wraps the limits strategy Flask-Limiter built. Against Redis it runs one Lua
script that takes the hit and returns the window in the same round trip (limits' own strategies
need a second call, or two, for the numbers the headers show), and the scripts of requests waiting
at the same moment share one round trip (app/ratelimit/pipeline.py). Every call runs under a deadline;
a failure marks the storage down, is logged once, and until a retry succeeds requests either pass
uncounted ("open") or get a 503 ("closed") without waiting again: the outage policy every shared
state follows (app/sharedstate/outage.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from limits import RateLimitItem, WindowStats
from limits.storage import RedisStorage
from limits.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from redis import Redis
from redis.commands.core import Script
from werkzeug.exceptions import ServiceUnavailable

from app.errors import GatewayError, PROBLEM_BASE
from app.ratelimit.pipeline import ScriptPipeline
from app.sharedstate import OutageGuard, Unreachable

__all__ = ["Counted", "MeteredStrategy", "OutageGuard", "RequestCounts", "StorageUnavailable"]
_T = TypeVar("_T")


class StorageUnavailable(GatewayError, ServiceUnavailable):
    """The rate limit storage is unreachable and the gateway is set to fail closed."""

    problem = PROBLEM_BASE + "rate-limit-storage-unavailable"
    description = "Rate limits cannot be checked right now."
    extra_headers = (("Retry-After", "1"),)  # ask well-behaved clients to come back in a second


@dataclass
class Counted:
    """One hit this request made: the limit, its identifiers, the outcome and the window after it."""

    item: RateLimitItem
    identifiers: tuple[str, ...]
    allowed: bool
    stats: WindowStats | None


@dataclass
class RequestCounts:
    """What the current request counted; ``outage`` once the storage failed it (no second wait)."""

    counted: list[Counted] = field(default_factory=list)
    outage: bool = False


OneTrip = Callable[[RateLimitItem, str, int], tuple[bool, WindowStats]]


class MeteredStrategy(RateLimiter):
    """A limits strategy with a deadline per call, outage handling, and one round trip per hit on Redis."""

    def __init__(self, inner: RateLimiter, *, guard: OutageGuard, fail_open: bool,
                 counts: Callable[[], RequestCounts]) -> None:
        super().__init__(inner.storage)
        self.inner = inner
        self.guard = guard  # its deadline bounds each call, its state spares the others the wait
        self.fail_open = fail_open
        self.counts = counts
        self.one_trip = _one_trip(inner)

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """Take ``cost`` from the limit; remember the window for the headers."""
        counts = self.counts()
        key = item.key_for(*identifiers)
        one_trip = self.one_trip
        result = self._call(counts, lambda: one_trip(item, key, cost) if one_trip else
                            (self.inner.hit(item, *identifiers, cost=cost), None))
        if result is None:
            return self._degraded()
        allowed, stats = result
        counts.counted.append(Counted(item, identifiers, allowed, stats))
        return allowed

    def test(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """Whether ``cost`` could be taken, taking nothing."""
        result = self._call(self.counts(), lambda: self.inner.test(item, *identifiers, cost=cost))
        return self._degraded() if result is None else result

    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        """The window as this request's hit left it (no second round trip), else asked of the storage."""
        counts = self.counts()
        for counted in counts.counted:
            if counted.item is item and counted.identifiers == identifiers and counted.stats is not None:
                return counted.stats
        stats = self._call(counts, lambda: self.inner.get_window_stats(item, *identifiers))
        if stats is None:
            return WindowStats(time.time(), item.amount)
        return stats

    def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        """Forget one key's count."""
        self.inner.clear(item, *identifiers)

    def _call(self, counts: RequestCounts, call: Callable[[], _T]) -> _T | None:
        """``call()`` within the deadline; None when the storage is (or just went) unreachable."""
        if counts.outage:
            return None
        try:
            return self.guard.call(call)
        except Unreachable:
            counts.outage = True
            return None

    def _degraded(self) -> bool:
        if self.fail_open:
            return True
        raise StorageUnavailable()


# Each script takes the hit exactly as limits' own script for the strategy does, then returns
# the numbers get_window_stats would have fetched with another call.
_FIXED_WINDOW = """
local current = redis.call('incrby', KEYS[1], ARGV[2])
if current == tonumber(ARGV[2]) then
    redis.call('expire', KEYS[1], ARGV[1])
end
return {current, redis.call('pttl', KEYS[1])}
"""

_SLIDING_WINDOW = """
local limit = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2]) * 1000
local amount = tonumber(ARGV[3])
local current_ttl = tonumber(redis.call('pttl', KEYS[2]))
if current_ttl > 0 and current_ttl < expiry then
    redis.call('rename', KEYS[2], KEYS[1])
    redis.call('set', KEYS[2], 0, 'PX', current_ttl + expiry)
end
local function window()
    local previous_ttl = math.max(tonumber(redis.call('pttl', KEYS[1])) or 0, 0)
    local current_ttl = math.max(tonumber(redis.call('pttl', KEYS[2])) or 0, 0)
    return tonumber(redis.call('get', KEYS[1])) or 0, previous_ttl,
           tonumber(redis.call('get', KEYS[2])) or 0, current_ttl
end
local previous_count, previous_ttl, current_count, current_ttl = window()
local acquired = 0
if amount <= limit and math.floor(previous_count * previous_ttl / expiry) + current_count + amount <= limit then
    if redis.call('exists', KEYS[2]) == 1 then
        redis.call('incrby', KEYS[2], amount)
    else
        redis.call('set', KEYS[2], amount, 'PX', expiry * 2)
    end
    acquired = 1
    previous_count, previous_ttl, current_count, current_ttl = window()
end
return {acquired, previous_count, previous_ttl, current_count, current_ttl}
"""

_MOVING_WINDOW = """
local timestamp = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local expiry = tonumber(ARGV[3])
local amount = tonumber(ARGV[4])
local acquired = 0
local entry = redis.call('lindex', KEYS[1], limit - amount)
if amount <= limit and not (entry and tonumber(entry) >= timestamp - expiry) then
    for i = 1, amount do
        redis.call('lpush', KEYS[1], timestamp)
    end
    redis.call('ltrim', KEYS[1], 0, limit - 1)
    redis.call('expire', KEYS[1], expiry)
    acquired = 1
end
local entries = redis.call('lrange', KEYS[1], 0, limit - 1)
local count, oldest = 0, timestamp
for i = 1, #entries do
    local value = tonumber(entries[i])
    if value >= timestamp - expiry then
        count = i
        oldest = value
    end
end
return {acquired, tostring(oldest), count}
"""


def _one_trip(strategy: RateLimiter) -> OneTrip | None:
    """The single-round-trip hit for a Redis storage; None for storages without scripts (memory)."""
    storage = strategy.storage
    if not isinstance(storage, RedisStorage):
        return None
    connection = storage.get_connection()
    # A cluster routes each key to its own node: its pipelines are not one round trip, keep plain calls.
    run = ScriptPipeline(connection).run if isinstance(connection, Redis) else _run_alone
    if isinstance(strategy, SlidingWindowCounterRateLimiter):
        script = connection.register_script(_SLIDING_WINDOW.encode())

        def sliding(item: RateLimitItem, key: str, cost: int) -> tuple[bool, WindowStats]:
            expiry = item.get_expiry()
            keys = [storage.prefixed_key(f"{{{key}}}/-1"), storage.prefixed_key(f"{{{key}}}")]
            acquired, previous, previous_ttl, current, current_ttl = run(script, keys, [item.amount, expiry, cost])
            return bool(acquired), _sliding_stats(item, int(previous), previous_ttl / 1000,
                                                  int(current), current_ttl / 1000)

        return sliding
    if isinstance(strategy, FixedWindowRateLimiter):
        script = connection.register_script(_FIXED_WINDOW.encode())

        def fixed(item: RateLimitItem, key: str, cost: int) -> tuple[bool, WindowStats]:
            current, ttl = run(script, [storage.prefixed_key(key)], [item.get_expiry(), cost])
            stats = WindowStats(time.time() + max(0, ttl) / 1000, max(0, item.amount - int(current)))
            return int(current) <= item.amount, stats

        return fixed
    if isinstance(strategy, MovingWindowRateLimiter):
        script = connection.register_script(_MOVING_WINDOW.encode())

        def moving(item: RateLimitItem, key: str, cost: int) -> tuple[bool, WindowStats]:
            now = time.time()
            acquired, oldest, count = run(script, [storage.prefixed_key(key)],
                                          [now, item.amount, item.get_expiry(), cost])
            start = float(oldest) if int(count) else now
            return bool(acquired), WindowStats(start + item.get_expiry(), item.amount - int(count))

        return moving
    return None


def _run_alone(script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """One script call in its own round trip."""
    return script(keys, args)


def _sliding_stats(item: RateLimitItem, previous: int, previous_expires_in: float, current: int,
                   current_expires_in: float) -> WindowStats:
    """The same numbers limits' SlidingWindowCounterRateLimiter.get_window_stats computes."""
    expiry = item.get_expiry()
    weighted = previous * previous_expires_in / expiry + current
    remaining = max(0, item.amount - math.floor(weighted))
    now = time.time()
    if not (previous or current):
        return WindowStats(now, remaining)
    previous_reset_in = previous_expires_in % (expiry / previous) if previous else math.inf
    current_reset_in = current_expires_in % expiry if current else math.inf
    return WindowStats(now + min(previous_reset_in, current_reset_in), remaining)
