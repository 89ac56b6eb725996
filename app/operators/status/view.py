"""What the page shows, gathered into plain rows the template only lays out."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from app.operators.inventory import RouteInfo
from app.observability.metrics import BUCKETS, UNMATCHED
from app.operators.status.charts import Bar, Sparkline, histogram_bars, ratio, sparkline
from app.operators.status.recent import ErrorRecord
from app.operators.status.series import RateSeries
from app.operators.status.targets import UpstreamView, upstream_views
from app.operators.status.traffic import RouteTraffic, Traffic

__all__ = ["Overview", "PolicyRow", "StatusPage", "TrafficRow", "build_page"]


@dataclass(frozen=True)
class PolicyRow:
    """One route of the inventory, its policies written out."""

    rule: str
    methods: str
    kind: str
    endpoint: str
    upstreams: str
    auth: str
    limits: tuple[str, ...]
    cache: str
    summary: str


@dataclass(frozen=True)
class TrafficRow:
    """One route template's traffic (every worker)."""

    route: str
    figures: RouteTraffic
    rate: float | None  # requests per second over the series' window
    error_ratio: float | None  # 5xx share of the answers
    client_error_ratio: float | None  # 4xx share
    cache_ratio: float | None  # hits among hits and misses; None when the route has no cache lookups
    p50: float | None
    p95: float | None
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Overview:
    """The gateway at a glance."""

    requests: float
    rate: float | None
    error_rate: float | None
    error_ratio: float | None
    cache_ratio: float | None
    cache_lookups: float
    cache_bytes: float
    limited: float
    spark: Sparkline
    spark_span: float  # seconds the sparkline covers


@dataclass(frozen=True)
class StatusPage:
    """Everything the template needs."""

    generated_at: float
    worker: int
    metrics_enabled: bool
    overview: Overview
    policies: tuple[PolicyRow, ...]
    traffic: tuple[TrafficRow, ...]
    upstreams: tuple[UpstreamView, ...]
    errors: tuple[ErrorRecord, ...]
    errors_kept: int
    refresh: int


def build_page(routes: tuple[RouteInfo, ...], traffic: Traffic, series: RateSeries,
               errors: list[ErrorRecord], *, errors_kept: int, refresh: int, metrics_enabled: bool) -> StatusPage:
    """The page's content from the inventory, the summed metrics, this worker's series and error ring
    (inside the app's context: the upstreams are the current app's)."""
    overview = Overview(
        requests=traffic.requests, rate=series.rate(), error_rate=series.error_rate(),
        error_ratio=ratio(traffic.server_errors, traffic.requests),
        cache_ratio=ratio(traffic.cache_hits, traffic.cache_lookups), cache_lookups=traffic.cache_lookups,
        cache_bytes=traffic.cache_bytes, limited=traffic.limited, spark=sparkline(series.points()),
        spark_span=series.span())
    rules = list(dict.fromkeys(route.rule for route in routes))
    rules += sorted(name for name in traffic.routes if name not in rules and name != UNMATCHED)
    if UNMATCHED in traffic.routes:
        rules.append(UNMATCHED)
    return StatusPage(
        generated_at=time.time(), worker=os.getpid(), metrics_enabled=metrics_enabled, overview=overview,
        policies=tuple(_policy_row(route) for route in routes),
        traffic=tuple(_traffic_row(traffic.route(rule), series) for rule in rules),
        upstreams=tuple(upstream_views(traffic)), errors=tuple(errors), errors_kept=errors_kept,
        refresh=refresh)


def _policy_row(route: RouteInfo) -> PolicyRow:
    if route.auth is None:
        auth = "none"
    elif route.auth.public:
        auth = "public"
    else:
        schemes = ", ".join(route.auth.schemes) if route.auth.schemes else "any scheme"
        auth = schemes + (": " + " ".join(route.auth.scopes) if route.auth.scopes else "")
    limits = tuple(f"{limit.rate} per {limit.per} ({limit.scope})" for limit in route.limits)
    cache = "no" if route.cache is None else route.cache.summary()
    upstream_names = ", ".join(route.upstreams)
    if route.aggregate is not None:
        upstream_names += " (parts: " + ", ".join(
            part.name + ("" if part.required else "?") for part in route.aggregate.parts) + ")"
    return PolicyRow(rule=route.rule, methods=" ".join(route.methods), kind=route.kind, endpoint=route.endpoint,
                     upstreams=upstream_names or "–", auth=auth, limits=limits, cache=cache, summary=route.summary)


def _traffic_row(figures: RouteTraffic, series: RateSeries) -> TrafficRow:
    lookups = figures.cache_hits + figures.cache_misses
    return TrafficRow(
        route=figures.route, figures=figures, rate=series.rate(figures.route),
        error_ratio=ratio(figures.server_errors, figures.requests),
        client_error_ratio=ratio(figures.client_errors, figures.requests),
        cache_ratio=ratio(figures.cache_hits, lookups), p50=figures.latency.quantile(0.5),
        p95=figures.latency.quantile(0.95), bars=tuple(histogram_bars(figures.latency.counts, BUCKETS)))
