"""The gateway's Prometheus metrics and the helpers every feature records through.

Metric objects are process-wide (prometheus-client keeps them in one registry per process).
Under gunicorn ``PROMETHEUS_MULTIPROC_DIR`` is set by ``gunicorn.conf.py`` before any worker
imports this module, so every value lands in a per-worker file and a scrape sums the workers.

Every label value is bounded: route templates (never raw paths), configured upstream and
target names, and the fixed outcome sets below. Helpers refuse an outcome outside its set,
so no caller can turn a label into an open set by mistake.

Features that land later record their outcomes through the ``record_*`` helpers here; the
families exist from the start so dashboards can be written against stable names.
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from app.observability.metrics_batch import Batch

__all__ = [
    "AUTH_OUTCOMES", "BUCKETS", "CACHE_EVENTS", "RATE_LIMIT_DECISIONS", "TUNNEL_CLOSE_REASONS", "UNMATCHED",
    "UPSTREAM_OUTCOMES", "configure", "count_tunnel_bytes", "families", "flush", "method_label", "observe_request",
    "observe_upstream", "record_auth", "record_cache", "record_jwks_refresh", "record_partial_answer",
    "record_rate_limit", "record_rejected", "record_tunnel_closed", "record_tunnel_opened", "render",
    "set_cache_bytes", "set_in_flight", "set_shared_state", "set_target_state", "status_class",
]

#: Seconds: sub-millisecond (a cache hit, a refusal) up to a minute (a slow upstream's ceiling).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: The route label of a request no rule matched (404, 405, a path refused before routing).
UNMATCHED = "unmatched"

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: ok (a status below 500), 5xx, timeout, connect_error (refused, unreachable), error (reset, bad HTTP),
#: client_error (the client's body broke off, was malformed or too slow: not the upstream's doing).
UPSTREAM_OUTCOMES = frozenset({"ok", "5xx", "timeout", "connect_error", "error", "client_error"})
AUTH_OUTCOMES = frozenset({"ok", "missing", "invalid", "forbidden", "idp_unavailable"})
RATE_LIMIT_DECISIONS = frozenset({"allowed", "limited", "storage_error"})
CACHE_EVENTS = frozenset({"hit", "miss", "store", "eviction", "stampede_wait"})
#: Why a WebSocket tunnel closed: a side closed (or reset) it, or a limit (idle, lifetime, drain) ended it.
TUNNEL_CLOSE_REASONS = frozenset({"client", "upstream", "idle", "lifetime", "drain"})
_DIRECTIONS = frozenset({"up", "down"})

_PREFIX = "frontdesk_"


class _Switch:
    """Whether this process records at all ([metrics] enabled); set once by create_app."""

    on = True


_switch = _Switch()


def configure(enabled: bool) -> None:
    """Record metrics in this process, or make every helper a no-op ([metrics] enabled = false)."""
    _switch.on = enabled


#: Every helper records into this; it reaches the metric objects within a second (app/observability/metrics_batch.py).
_batch = Batch()


def flush() -> None:
    """Write this process's pending updates now (the endpoint does before each scrape; tests too)."""
    _batch.flush()


# --- The request path (recorded by app/edge/wsgi.py and app/proxy) -------------------------------
REQUESTS = Counter(_PREFIX + "requests", "Requests served, by route template, method and status class.",
                   ("route", "method", "status_class"))
REQUEST_DURATION = Histogram(_PREFIX + "request_duration_seconds",
                             "Time from the request's arrival to its last body byte, by route template.",
                             ("route",), buckets=BUCKETS)
UPSTREAM_CALLS = Counter(_PREFIX + "upstream_requests", "Calls to upstreams, by upstream, target and outcome.",
                         ("upstream", "target", "outcome"))
UPSTREAM_DURATION = Histogram(_PREFIX + "upstream_duration_seconds",
                              "Time from sending an upstream request to its response head, by upstream.",
                              ("upstream",), buckets=BUCKETS)
# livesum: the sum over live workers; a dead worker's file is removed by gunicorn.conf.py.
UPSTREAM_IN_FLIGHT = Gauge(_PREFIX + "upstream_in_flight", "Upstream calls in flight, by upstream.",
                           ("upstream",), multiprocess_mode="livesum")
UPSTREAM_REJECTED = Counter(_PREFIX + "upstream_rejected",
                            "Requests answered 503 at once because the upstream was at max_in_flight.",
                            ("upstream",))

# Per target, as the most pessimistic live worker sees it (each worker keeps its own state):
# a target open in any worker shows open, unavailable in any worker shows 0.
CIRCUIT_STATE = Gauge(_PREFIX + "circuit_state", "Circuit breaker per target: 0 closed, 1 half-open, 2 open.",
                      ("upstream", "target"), multiprocess_mode="livemax")
TARGET_AVAILABLE = Gauge(_PREFIX + "target_available",
                         "1 while a target takes calls (healthy, not ejected, breaker not open), else 0.",
                         ("upstream", "target"), multiprocess_mode="livemin")
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}
_CIRCUIT_NAMES = frozenset(CIRCUIT_STATES)

# --- Families the policy features record into -----------------------------------------------
AUTH = Counter(_PREFIX + "auth", "Authentication outcomes, by route template and outcome.", ("route", "outcome"))
JWKS_REFRESHES = Counter(_PREFIX + "jwks_refreshes", "JWKS fetches, by result (ok, failed).", ("result",))
RATE_LIMIT = Counter(_PREFIX + "rate_limit_decisions", "Rate-limit decisions, by route template and decision.",
                     ("route", "decision"))
CACHE = Counter(_PREFIX + "cache_events", "Cache hits, misses (by reason), stores, evictions and stampede waits.",
                ("route", "event", "reason"))
# Per shared state ("rate_limit_storage", "shared_cache"): 0 when any live worker finds its Redis unreachable.
SHARED_STATE_UP = Gauge(_PREFIX + "shared_state_up", "1 while a shared state's Redis answers, else 0.", ("store",),
                        multiprocess_mode="livemin")
SHARED_STATE_OUTAGES = Counter(_PREFIX + "shared_state_outages",
                               "Outages of a shared state's Redis, as each worker saw them begin (and logged them).",
                               ("store",))
CACHE_BYTES = Gauge(_PREFIX + "cache_bytes", "Bytes held by the response cache.", multiprocess_mode="livesum")
PARTIAL_ANSWERS = Counter(_PREFIX + "aggregate_partial_answers",
                          "Aggregated answers sent with at least one part missing, by route template.", ("route",))

# --- WebSocket tunnels (app/proxy/relay.py) ---------------------------------------------------
TUNNELS_OPEN = Gauge(_PREFIX + "tunnels_open", "WebSocket tunnels open now, by route template.", ("route",),
                     multiprocess_mode="livesum")
TUNNELS_OPENED = Counter(_PREFIX + "tunnels_opened", "WebSocket tunnels opened, by route template.", ("route",))
TUNNELS_CLOSED = Counter(_PREFIX + "tunnels_closed", "WebSocket tunnels closed, by route template and reason.",
                         ("route", "reason"))
TUNNEL_BYTES = Counter(_PREFIX + "tunnel_bytes", "Bytes relayed through WebSocket tunnels, by route template and "
                       "direction (up: client to upstream).", ("route", "direction"))


def status_class(status: int | None) -> str:
    """``2xx``...``5xx``; ``none`` when no status was sent (the client went away first)."""
    if status is None or not 100 <= status <= 599:
        return "none"
    return f"{status // 100}xx"


def method_label(method: str | None) -> str:
    """The method, or ``other``: clients may send any token as a method."""
    return method if method in _METHODS else "other"


# The labelled children of the hot-path metrics, by label values. ``labels()`` costs a lock and
# a few string conversions per call (about 3 µs here); the label sets are bounded, so are these.
_request_children: dict[tuple[str, str | None, int | None], tuple[Counter, Histogram]] = {}
_upstream_children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
_in_flight_children: dict[str, Gauge] = {}
# The same for the policy families (auth, rate limits, cache, rejections), by metric and label values.
_policy_children: dict[tuple[object, ...], Counter] = {}


def _count(family: Counter, labels: tuple[str, ...], allowed: frozenset[str] | None = None,
           amount: float = 1.0) -> None:
    """Count ``amount`` into ``family.labels(*labels)``; the child looked up, and the outcome (the second
    label, after the route) checked against ``allowed``, once per label set."""
    key = (family, *labels)
    child = _policy_children.get(key)
    if child is None:
        if allowed is not None:
            _check(labels[1], allowed)
        child = _policy_children[key] = family.labels(*labels)
    _batch.count(child, amount)


def observe_request(route: str | None, method: str | None, status: int | None, seconds: float) -> None:
    """Count one finished request and its duration; ``route`` is the rule template or None."""
    if not _switch.on:
        return
    key = (route or UNMATCHED, method if method in _METHODS else None, status)
    children = _request_children.get(key)
    if children is None:
        children = _request_children[key] = (
            REQUESTS.labels(key[0], method_label(method), status_class(status)), REQUEST_DURATION.labels(key[0]))
    _batch.count(children[0])
    _batch.observe(children[1], BUCKETS, seconds)


def observe_upstream(upstream: str, target: str, outcome: str, seconds: float) -> None:
    """Count one upstream call (``outcome`` from UPSTREAM_OUTCOMES) and the wait for its head."""
    if not _switch.on:
        return
    key = (upstream, target, outcome)
    children = _upstream_children.get(key)
    if children is None:
        _check(outcome, UPSTREAM_OUTCOMES)
        children = _upstream_children[key] = (UPSTREAM_CALLS.labels(*key), UPSTREAM_DURATION.labels(upstream))
    _batch.count(children[0])
    _batch.observe(children[1], BUCKETS, seconds)


def set_target_state(upstream: str, target: str, available: bool, circuit: str) -> None:
    """One target's availability and breaker state in this worker (set when they change)."""
    if not _switch.on:
        return
    _check(circuit, _CIRCUIT_NAMES)
    _batch.set(TARGET_AVAILABLE.labels(upstream, target), 1 if available else 0)
    _batch.set(CIRCUIT_STATE.labels(upstream, target), CIRCUIT_STATES[circuit])


def set_shared_state(store: str, up: bool, *, began: bool = False) -> None:
    """Whether this worker reaches ``store``'s Redis now; ``began`` counts an outage starting."""
    if not _switch.on:
        return
    _batch.set(SHARED_STATE_UP.labels(store), 1 if up else 0)
    if began:
        _count(SHARED_STATE_OUTAGES, (store,))


def set_in_flight(upstream: str, count: int) -> None:
    """This worker's calls in flight to ``upstream``."""
    if not _switch.on:
        return
    child = _in_flight_children.get(upstream)
    if child is None:
        child = _in_flight_children[upstream] = UPSTREAM_IN_FLIGHT.labels(upstream)
    _batch.set(child, count)


def record_rejected(upstream: str) -> None:
    """One request refused because ``upstream`` was at its max_in_flight."""
    if not _switch.on:
        return
    _count(UPSTREAM_REJECTED, (upstream,))


def record_auth(route: str | None, outcome: str) -> None:
    """One authentication outcome (AUTH_OUTCOMES) on a route template."""
    if not _switch.on:
        return
    _count(AUTH, (route or UNMATCHED, outcome), AUTH_OUTCOMES)


def record_jwks_refresh(ok: bool) -> None:
    """One JWKS fetch, successful or not."""
    if not _switch.on:
        return
    _batch.count(JWKS_REFRESHES.labels("ok" if ok else "failed"))


def record_rate_limit(route: str | None, decision: str) -> None:
    """One rate-limit decision (RATE_LIMIT_DECISIONS) on a route template."""
    if not _switch.on:
        return
    _count(RATE_LIMIT, (route or UNMATCHED, decision), RATE_LIMIT_DECISIONS)


def record_cache(route: str | None, event: str, reason: str = "") -> None:
    """One cache event (CACHE_EVENTS); ``reason`` qualifies a miss from a fixed set the cache defines."""
    if not _switch.on:
        return
    _count(CACHE, (route or UNMATCHED, event, reason), CACHE_EVENTS)


def set_cache_bytes(count: int) -> None:
    """Bytes this worker's cache holds now."""
    if not _switch.on:
        return
    _batch.set(CACHE_BYTES, count)


def record_partial_answer(route: str | None) -> None:
    """One aggregated answer sent with parts missing."""
    if not _switch.on:
        return
    _batch.count(PARTIAL_ANSWERS.labels(route or UNMATCHED))


def record_tunnel_opened(route: str, open_now: int) -> None:
    """One tunnel opened on ``route``; ``open_now`` of them are open in this worker."""
    if not _switch.on:
        return
    _count(TUNNELS_OPENED, (route,))
    _batch.set(TUNNELS_OPEN.labels(route), open_now)


def record_tunnel_closed(route: str, reason: str, open_now: int) -> None:
    """One tunnel closed on ``route`` (``reason`` from TUNNEL_CLOSE_REASONS); ``open_now`` remain in this worker."""
    if not _switch.on:
        return
    _count(TUNNELS_CLOSED, (route, reason), TUNNEL_CLOSE_REASONS)
    _batch.set(TUNNELS_OPEN.labels(route), open_now)


def count_tunnel_bytes(route: str, direction: str, count: int) -> None:
    """``count`` bytes relayed on ``route``'s tunnels, ``direction`` up (to the upstream) or down."""
    if not _switch.on:
        return
    _count(TUNNEL_BYTES, (route, direction), _DIRECTIONS, count)


def render() -> bytes:
    """The exposition text: summed over every worker's files under gunicorn, this process's otherwise."""
    return generate_latest(_registry())


def families() -> list[Metric]:
    """The metric families ``render`` serves, as objects (the status page reads the scrape's own view)."""
    return list(_registry().collect())


def _registry() -> CollectorRegistry:
    flush()  # this worker's own counts are exact; the others' at most a second old
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        # A fresh registry per read: the collector reads the files as they are now.
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def _check(value: str, allowed: frozenset[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {sorted(allowed)}: metric labels are a fixed set")
