"""The one outage policy of every shared state: a deadline per call, up or down, one log line each way.

A call runs under a deadline (``gevent.Timeout``: socket timeouts alone do not bound a cluster's
topology refresh or a sentinel's master lookup). A failure marks the store down and is logged once;
while it is down, callers do not wait: one caller per ``retry_interval`` probes it, the others are
told at once that it is unreachable. The first success logs the recovery with the outage's length.
``frontdesk_shared_state_up{store}`` follows the state, ``frontdesk_shared_state_outages_total{store}``
counts the outages. What a caller does without the store (pass uncounted, answer 503, serve from the local tier) is its
own policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import gevent
from redis.exceptions import RedisClusterException, RedisError

from app.observability import metrics

__all__ = ["REDIS_ERRORS", "OutageGuard", "Unreachable"]

_T = TypeVar("_T")


class Unreachable(Exception):
    """The store did not answer (or is waited out): the caller applies its degraded behaviour."""


class _Deadline(Exception):
    """The store did not answer within the guard's timeout."""


#: What a Redis call raises when the store, or a node of it, is gone. A cluster's own exceptions
#: (no node reachable, a slot without a node) are not RedisErrors.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)


class OutageGuard:
    """Tracks whether one store is down: logs the start and the end once, paces the retries."""

    def __init__(self, name: str, consequence: str, retry_interval: float, timeout: float = 0.0,
                 logger: logging.Logger | None = None, clock: Callable[[], float] = time.monotonic,
                 errors: tuple[type[BaseException], ...] = REDIS_ERRORS,
                 on_probe: Callable[[], object] | None = None) -> None:
        self.name = name  # "rate limit storage", "shared cache"
        self.consequence = consequence  # what the down line tells the operator
        self.retry_interval = retry_interval
        self.timeout = timeout
        self.log = logger or logging.getLogger("frontdesk")
        self.clock = clock
        self.errors: tuple[type[BaseException], ...] = (_Deadline, *errors)
        self.on_probe = on_probe  # runs first in a probe, in its deadline: a cluster client re-reads its slot map
        self.down_since: float | None = None
        self._retry_at = 0.0
        self.store = name.replace(" ", "_")  # the metrics' label: rate_limit_storage, shared_cache
        metrics.set_shared_state(self.store, True)

    @property
    def up(self) -> bool:
        """Whether the last call succeeded (or none failed yet)."""
        return self.down_since is None

    def should_try(self) -> bool:
        """Whether to call the store now; while it is down, one caller per interval probes it."""
        if self.down_since is None:
            return True
        now = self.clock()
        if now < self._retry_at:
            return False
        self._retry_at = now + self.retry_interval  # the others keep failing fast meanwhile
        return True

    def call(self, work: Callable[[], _T]) -> _T:
        """``work()`` within the deadline; :class:`Unreachable` when the store is down or just failed."""
        if not self.should_try():
            raise Unreachable(self.name)
        probe = self.on_probe if self.down_since is not None else None
        try:
            with gevent.Timeout(self.timeout or None, _Deadline(f"no answer within {self.timeout:g} s")):
                if probe is not None:
                    probe()
                result = work()
        except self.errors as error:
            self.failed(error)
            raise Unreachable(self.name) from error
        self.succeeded()
        return result

    def failed(self, error: BaseException) -> None:
        """Record a failed call; the first one of an outage is logged."""
        now = self.clock()
        self._retry_at = now + self.retry_interval
        if self.down_since is None:
            self.down_since = now
            metrics.set_shared_state(self.store, False, began=True)
            self.log.error(f"{self.name} unreachable; {self.consequence}",
                           extra={"fields": {"error": type(error).__name__, "detail": str(error)[:200],
                                             "retry_in": self.retry_interval}})

    def succeeded(self) -> None:
        """Record a successful call; the end of an outage is logged."""
        if self.down_since is not None:
            seconds = round(self.clock() - self.down_since, 3)
            self.down_since = None
            metrics.set_shared_state(self.store, True)
            self.log.warning(f"{self.name} reachable again", extra={"fields": {"outage_seconds": seconds}})
