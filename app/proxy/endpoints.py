"""One address of one target with its pool, and what is known about its health."""

from __future__ import annotations

import logging
from collections.abc import Callable

from urllib3 import HTTPConnectionPool

from app.observability import metrics
from app.proxy.breaker import CLOSED, CircuitBreaker
from app.proxy.policy import EjectPolicy, HealthPolicy, Resilience
from app.proxy.settings import Target

__all__ = ["FAILING_STATUSES", "Endpoint"]

log = logging.getLogger("frontdesk.proxy")

#: Upstream statuses that count as a failed call for ejection and the breaker: the target
#: itself is in trouble (overloaded, or a proxy in front of it cannot reach it). A 500 is left
#: out: it is usually one endpoint's bug, not a sick instance.
FAILING_STATUSES = frozenset({502, 503, 504})


class Endpoint:
    """A target at one resolved address: calls go to ``pool``, the Host header stays ``target.netloc``."""

    __slots__ = (
        "target", "address", "pool", "key", "label", "weight", "in_flight", "healthy", "_passes", "_fails",
        "_failures_in_row", "ejected_until", "breaker", "_eject", "_health", "clock", "upstream", "_published",
    )

    def __init__(self, target: Target, address: str, pool: HTTPConnectionPool, resilience: Resilience,
                 clock: Callable[[], float], upstream: str = "") -> None:
        self.upstream = upstream  # the upstream's name, for the metrics
        self.target = target
        self.address = address
        self.pool = pool
        self.key = f"{target.url}@{address}"
        #: How logs name it: the URL, plus the address when a host name was resolved.
        self.label = target.url if address == target.host else f"{target.url} ({address})"
        self.weight = target.weight
        self.in_flight = 0
        self.healthy = True  # until an active check says otherwise: a new target gets traffic
        self._passes = self._fails = self._failures_in_row = 0
        self.ejected_until = 0.0
        self.clock = clock
        self._eject: EjectPolicy | None = resilience.eject
        self._health: HealthPolicy | None = resilience.health
        self.breaker = CircuitBreaker(resilience.breaker, clock) if resilience.breaker else None
        self._published: tuple[bool, str] | None = None
        self.publish()

    def __repr__(self) -> str:
        return f"<Endpoint {self.key}>"

    def available(self, now: float) -> bool:
        """Whether calls may go here now: healthy, not ejected, breaker not open."""
        return (self.healthy and now >= self.ejected_until
                and (self.breaker is None or self.breaker.available()))

    def retry_after(self, now: float) -> float:
        """Seconds until this endpoint could take calls again (a guess for Retry-After)."""
        waits = [self.ejected_until - now]
        if self.breaker is not None:
            waits.append(self.breaker.retry_after())
        if not self.healthy and self._health is not None:
            waits.append(self._health.interval * self._health.healthy_after)
        return max(0.0, *waits)

    def admit(self) -> int | None:
        """A breaker ticket for one call (0 without a breaker), or None when the breaker refuses."""
        ticket = 0 if self.breaker is None else self.breaker.allow()
        self.publish()  # allow() may have moved an open breaker to half-open; an ejection may have ended
        return ticket

    def publish(self) -> None:
        """Report availability and breaker state to the metrics, only when they changed."""
        now = self.clock()
        available = self.healthy and now >= self.ejected_until and (self.breaker is None or self.breaker.available())
        state = (available, CLOSED if self.breaker is None else self.breaker.state)
        if state != self._published:
            self._published = state
            metrics.set_target_state(self.upstream, self.label, *state)

    def record_call(self, ticket: int, success: bool) -> None:
        """The outcome of a real call admitted with ``ticket``: feeds passive ejection and the breaker."""
        if self.breaker is not None:
            before = self.breaker.state
            self.breaker.record(ticket, success)
            if self.breaker.state != before:
                log.warning("breaker changed", extra={"fields": {"target": self.label, "state": self.breaker.state}})
        if success:
            self._failures_in_row = 0
            self.publish()  # a half-open breaker may just have closed
            return
        self._failures_in_row += 1
        if self._eject is not None and self._failures_in_row >= self._eject.failures:
            self.ejected_until = self.clock() + self._eject.seconds
            log.warning("target ejected", extra={"fields": {"target": self.label, "seconds": self._eject.seconds}})
            # Back after the pause with a clean slate: it must fail ``failures`` times again.
            self._failures_in_row = 0
        self.publish()

    def release(self, ticket: int) -> None:
        """Give back a call's ticket with no verdict on the target (the client failed, or nobody knows)."""
        if self.breaker is not None:
            self.breaker.release(ticket)
        self.publish()

    def record_check(self, passed: bool) -> None:
        """The outcome of an active health check."""
        policy = self._health
        if policy is None:
            return
        if passed:
            self._fails = 0
            self._passes += 1
            if not self.healthy and self._passes >= policy.healthy_after:
                self.healthy = True
                self.ejected_until = 0.0  # a target that passes its checks is back for good
        else:
            self._passes = 0
            self._fails += 1
            if self.healthy and self._fails >= policy.unhealthy_after:
                self.healthy = False
        self.publish()
