"""The gateway's traffic as the metrics scrape sees it (every worker), read into per-route and per-target figures."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

from app.observability.metrics import BUCKETS

__all__ = ["LatencyHistogram", "RouteTraffic", "TargetTraffic", "Traffic", "quantile", "read_traffic"]

_P = "frontdesk_"


@dataclass
class LatencyHistogram:
    """Counts per bucket (not cumulative), the last one above the highest bound; and their sum in seconds."""

    counts: list[float] = field(default_factory=lambda: [0.0] * (len(BUCKETS) + 1))
    total_seconds: float = 0.0

    @property
    def count(self) -> float:
        """Observations in all buckets."""
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile in seconds, as Prometheus' histogram_quantile estimates it."""
        return quantile(q, BUCKETS, self.counts)

    def finish(self, cumulative_by_bound: dict[float, float]) -> None:
        """Per-bucket counts from the cumulative ``_bucket`` samples (by upper bound)."""
        previous = 0.0
        for index, bound in enumerate((*BUCKETS, math.inf)):
            value = cumulative_by_bound.get(bound, previous)
            self.counts[index] = max(0.0, value - previous)
            previous = value


@dataclass
class RouteTraffic:
    """One route template's requests (all methods), latency, cache and rate-limit figures."""

    route: str
    by_class: dict[str, float] = field(default_factory=dict)  # "2xx" -> count
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    cache_hits: float = 0.0
    cache_misses: float = 0.0
    limited: float = 0.0
    auth_refused: float = 0.0

    @property
    def requests(self) -> float:
        """Requests answered, every status class."""
        return sum(self.by_class.values())

    @property
    def client_errors(self) -> float:
        """4xx answers."""
        return self.by_class.get("4xx", 0.0)

    @property
    def server_errors(self) -> float:
        """5xx answers."""
        return self.by_class.get("5xx", 0.0)


@dataclass
class TargetTraffic:
    """One upstream target as every live worker reports it."""

    calls: dict[str, float] = field(default_factory=dict)  # outcome -> count
    available: float | None = None  # the least available worker's view: 0 when any worker cannot use it
    circuit: float | None = None  # the most pessimistic worker's breaker: 0 closed, 1 half-open, 2 open


@dataclass
class Traffic:
    """Everything the page shows from the metrics."""

    routes: dict[str, RouteTraffic] = field(default_factory=dict)
    targets: dict[tuple[str, str], TargetTraffic] = field(default_factory=dict)
    upstream_latency: dict[str, LatencyHistogram] = field(default_factory=dict)
    in_flight: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, float] = field(default_factory=dict)
    cache_bytes: float = 0.0

    def route(self, name: str) -> RouteTraffic:
        """The figures of one route template (zeros when it has seen no traffic)."""
        return self.routes.get(name) or RouteTraffic(name)

    def target(self, upstream: str, target: str) -> TargetTraffic:
        """The figures of one target (empty when the metrics know nothing of it yet)."""
        return self.targets.get((upstream, target)) or TargetTraffic()

    @property
    def requests(self) -> float:
        """Requests answered on every route."""
        return sum(route.requests for route in self.routes.values())

    @property
    def server_errors(self) -> float:
        """5xx answers on every route."""
        return sum(route.server_errors for route in self.routes.values())

    @property
    def cache_hits(self) -> float:
        """Cache hits on every route."""
        return sum(route.cache_hits for route in self.routes.values())

    @property
    def cache_lookups(self) -> float:
        """Cache hits and misses on every route."""
        return sum(route.cache_hits + route.cache_misses for route in self.routes.values())

    @property
    def limited(self) -> float:
        """Requests refused by a rate limit on every route."""
        return sum(route.limited for route in self.routes.values())


def read_traffic(families: Iterable[Metric]) -> Traffic:
    """Read the gateway's families (``app.observability.metrics.families()``) into per-route and per-target figures."""
    traffic = Traffic()
    route_buckets: dict[str, dict[float, float]] = defaultdict(dict)
    upstream_buckets: dict[str, dict[float, float]] = defaultdict(dict)
    for family in families:
        for sample in family.samples:
            _read_sample(traffic, sample.name, sample.labels, sample.value, route_buckets, upstream_buckets)
    for route, cumulative in route_buckets.items():
        traffic.routes.setdefault(route, RouteTraffic(route)).latency.finish(cumulative)
    for upstream, cumulative in upstream_buckets.items():
        traffic.upstream_latency.setdefault(upstream, LatencyHistogram()).finish(cumulative)
    return traffic


def _read_sample(traffic: Traffic, name: str, labels: dict[str, str], value: float,
                 route_buckets: dict[str, dict[float, float]], upstream_buckets: dict[str, dict[float, float]]) -> None:
    if not name.startswith(_P):
        return
    name = name[len(_P):]
    route = labels.get("route", "")
    if name == "requests_total":
        figures = traffic.routes.setdefault(route, RouteTraffic(route))
        figures.by_class[labels["status_class"]] = figures.by_class.get(labels["status_class"], 0.0) + value
    elif name == "request_duration_seconds_bucket":
        bound = float(labels["le"])
        route_buckets[route][bound] = route_buckets[route].get(bound, 0.0) + value
    elif name == "request_duration_seconds_sum":
        traffic.routes.setdefault(route, RouteTraffic(route)).latency.total_seconds += value
    elif name == "cache_events_total" and labels.get("event") in ("hit", "miss"):
        figures = traffic.routes.setdefault(route, RouteTraffic(route))
        if labels["event"] == "hit":
            figures.cache_hits += value
        else:
            figures.cache_misses += value
    elif name == "rate_limit_decisions_total" and labels.get("decision") == "limited":
        traffic.routes.setdefault(route, RouteTraffic(route)).limited += value
    elif name == "auth_total" and labels.get("outcome") != "ok":
        traffic.routes.setdefault(route, RouteTraffic(route)).auth_refused += value
    elif name == "upstream_requests_total":
        target = traffic.targets.setdefault((labels["upstream"], labels["target"]), TargetTraffic())
        target.calls[labels["outcome"]] = target.calls.get(labels["outcome"], 0.0) + value
    elif name == "upstream_duration_seconds_bucket":
        upstream = labels["upstream"]
        bound = float(labels["le"])
        upstream_buckets[upstream][bound] = upstream_buckets[upstream].get(bound, 0.0) + value
    elif name == "target_available":
        traffic.targets.setdefault((labels["upstream"], labels["target"]), TargetTraffic()).available = value
    elif name == "circuit_state":
        traffic.targets.setdefault((labels["upstream"], labels["target"]), TargetTraffic()).circuit = value
    elif name == "upstream_in_flight":
        traffic.in_flight[labels["upstream"]] = value
    elif name == "upstream_rejected_total":
        traffic.rejected[labels["upstream"]] = value
    elif name == "cache_bytes":
        traffic.cache_bytes = value


def quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """The ``q`` quantile of a histogram (per-bucket ``counts``, one more than ``bounds``), interpolated
    linearly inside its bucket; the highest bound when it falls above it; None without observations."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    lower = 0.0
    for bound, count in zip(bounds, counts):
        if count and seen + count >= rank:
            return lower + (bound - lower) * (rank - seen) / count
        seen += count
        lower = bound
    return bounds[-1]
