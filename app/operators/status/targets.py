"""Each upstream and its targets as this worker knows them, next to what every worker reports in the metrics."""

from __future__ import annotations

from dataclasses import dataclass

from app.proxy import HALF_OPEN, OPEN, Endpoint, upstreams
from app.operators.status.traffic import TargetTraffic, Traffic

__all__ = ["TargetView", "UpstreamView", "upstream_views"]

_CIRCUIT_NAMES = {0.0: "closed", 1.0: "half-open", 2.0: "open"}


@dataclass(frozen=True)
class TargetView:
    """One endpoint (a target at one address)."""

    label: str  # as the metrics and logs name it
    state: str  # this worker: "up", "unhealthy", "ejected", "open", "half-open"
    detail: str  # e.g. "back in 12 s", "4 of 20 calls failed"
    in_flight: int
    everywhere: TargetTraffic  # the summed metrics: availability and breaker in the worst worker, calls
    circuit_everywhere: str  # the worst worker's breaker, or "–" when no worker reported one

    @property
    def calls(self) -> float:
        """Calls made to it by every worker."""
        return sum(self.everywhere.calls.values())

    @property
    def failed_calls(self) -> float:
        """Calls that did not end with an answer below 500."""
        return self.calls - self.everywhere.calls.get("ok", 0.0)


@dataclass(frozen=True)
class UpstreamView:
    """One upstream: how it balances and checks, its calls in flight, its targets."""

    name: str
    balance: str
    checks: str  # what watches it: active checks, passive ejection, breaker
    critical: bool
    in_flight: int  # this worker
    in_flight_everywhere: float
    rejected: float  # answered 503 at max_in_flight, every worker
    targets: tuple[TargetView, ...]
    p50: float | None
    p95: float | None


def upstream_views(traffic: Traffic) -> list[UpstreamView]:
    """Every upstream of the current app, in name order."""
    views = []
    for name in sorted(upstreams.settings()):
        state = upstreams.state(name)
        now = state.clock()
        resilience = state.settings.resilience
        watched = []
        if resilience.health is not None:
            watched.append(f"GET {resilience.health.path} every {resilience.health.interval:g} s")
        if resilience.eject is not None:
            watched.append(f"ejected after {resilience.eject.failures} failures for {resilience.eject.seconds:g} s")
        if resilience.breaker is not None:
            watched.append(f"breaker at {resilience.breaker.failure_ratio:.0%} of ≥ {resilience.breaker.min_requests}"
                           f" calls in {resilience.breaker.window:g} s")
        latency = traffic.upstream_latency.get(name)
        views.append(UpstreamView(
            name=name, balance=resilience.balance, checks="; ".join(watched) or "none (every target always used)",
            critical=resilience.critical, in_flight=state.in_flight,
            in_flight_everywhere=traffic.in_flight.get(name, 0.0), rejected=traffic.rejected.get(name, 0.0),
            targets=tuple(_target(name, endpoint, now, traffic) for endpoint in state.endpoints),
            p50=latency.quantile(0.5) if latency else None, p95=latency.quantile(0.95) if latency else None))
    return views


def _target(upstream: str, endpoint: Endpoint, now: float, traffic: Traffic) -> TargetView:
    everywhere = traffic.target(upstream, endpoint.label)
    breaker = endpoint.breaker
    detail = ""
    if breaker is not None:
        calls, failures = breaker.counts(now)
        detail = f"{failures} of {calls} calls failed in the window"
    if not endpoint.healthy:
        state = "unhealthy"
    elif now < endpoint.ejected_until:
        state, detail = "ejected", f"back in {endpoint.ejected_until - now:.0f} s"
    elif breaker is not None and breaker.state == OPEN:
        state, detail = "open", f"probe in {breaker.retry_after():.0f} s"
    elif breaker is not None and breaker.state == HALF_OPEN:
        state = "half-open"
    else:
        state = "up"
    circuit = _CIRCUIT_NAMES.get(everywhere.circuit, "–") if everywhere.circuit is not None else "–"
    return TargetView(label=endpoint.label, state=state, detail=detail, in_flight=endpoint.in_flight,
                      everywhere=everywhere, circuit_everywhere=circuit)
