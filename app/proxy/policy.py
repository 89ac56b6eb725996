"""Resilience settings of one upstream: balancing, health checks, ejection, retries, breaker, discovery."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.config import ConfigError, Section

__all__ = [
    "BALANCERS",
    "BreakerPolicy",
    "EjectPolicy",
    "HealthPolicy",
    "Resilience",
    "RetryPolicy",
    "read_resilience",
]

#: The balancing modes ``balance`` accepts.
BALANCERS = ("round_robin", "least_in_flight", "hash")
# Where the hash mode takes its key: the client address, or a request header.
_HASH_ON = re.compile(r"client|header:[A-Za-z0-9-]{1,64}")
# Conditions a retry may be taken on, besides listed statuses.
_CONDITIONS = ("connect", "timeout", "reset")
_IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True)
class HealthPolicy:
    """Active checks: GET ``path`` on every target every ``interval`` seconds."""

    path: str = "/health"
    interval: float = 5.0
    timeout: float = 1.0
    healthy_after: int = 2  # consecutive passes that bring an unhealthy target back
    unhealthy_after: int = 3  # consecutive failures that take a healthy target out


@dataclass(frozen=True)
class EjectPolicy:
    """Passive ejection: ``failures`` consecutive failed calls take a target out for ``seconds``."""

    failures: int = 5
    seconds: float = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed attempt is tried again on another target."""

    attempts: int = 2  # retries after the first try
    conditions: frozenset[str] = frozenset({"connect"})
    statuses: frozenset[int] = frozenset()
    methods: frozenset[str] = frozenset(_IDEMPOTENT)
    backoff: float = 0.05  # base delay, doubled per retry, jittered
    buffer: int = 64 * 1024  # request bodies up to this size are held so they can be replayed


@dataclass(frozen=True)
class BreakerPolicy:
    """A circuit breaker per target: opens on ``failure_ratio`` over ``window`` seconds."""

    failure_ratio: float = 0.5
    min_requests: int = 20
    window: float = 10.0
    open_for: float = 15.0


@dataclass(frozen=True)
class Resilience:
    """Everything that decides which target gets a call and what happens when it fails."""

    balance: str = "round_robin"
    hash_on: str = "client"
    health: HealthPolicy | None = None
    eject: EjectPolicy | None = None
    retries: RetryPolicy | None = None
    breaker: BreakerPolicy | None = None
    critical: bool = False
    resolve_interval: float = 30.0


def read_resilience(section: Section, defaults: Section | None = None) -> Resilience:
    """Read the resilience keys of one table (each optional); a key it lacks comes from ``defaults``.

    A key is taken whole from one table or the other: a ``retries`` table in [upstreams.NAME]
    replaces the one in [upstream_defaults], it is not merged with it.
    """
    def source(key: str) -> Section:
        if defaults is not None and not section.has(key) and defaults.has(key):
            return defaults
        return section

    def table(key: str) -> Section | None:
        return source(key).table(key) if source(key).has(key) else None

    health, eject, retries, breaker = (table(key) for key in ("health", "eject", "retries", "breaker"))
    return Resilience(
        balance=source("balance").string("balance", "round_robin", choices=BALANCERS),
        hash_on=source("hash_on").string("hash_on", "client", pattern=_HASH_ON.pattern,
                                         expected='"client" or "header:NAME"'),
        health=_health(health) if health else None,
        eject=_eject(eject) if eject else None,
        retries=_retries(retries) if retries else None,
        breaker=_breaker(breaker) if breaker else None,
        critical=source("critical").boolean("critical", False),
        resolve_interval=source("resolve_interval").seconds("resolve_interval", 30.0),
    )


def _health(section: Section) -> HealthPolicy:
    path = section.string("path", "/health", pattern=r"/[!-~]*", expected="a path starting with /")
    policy = HealthPolicy(
        path=path,
        interval=section.seconds("interval", 5.0),
        timeout=section.seconds("timeout", 1.0),
        healthy_after=section.integer("healthy_after", 2, minimum=1),
        unhealthy_after=section.integer("unhealthy_after", 3, minimum=1),
    )
    section.done()
    return policy


def _eject(section: Section) -> EjectPolicy:
    policy = EjectPolicy(failures=section.integer("failures", 5, minimum=1), seconds=section.seconds("seconds", 30.0))
    section.done()
    return policy


def _retries(section: Section) -> RetryPolicy:
    conditions: set[str] = set()
    statuses: set[int] = set()
    for item in section.strings("on", ["connect"], allow_empty=False):
        if item in _CONDITIONS:
            conditions.add(item)
        elif item.isdigit() and 500 <= int(item) <= 599:
            statuses.add(int(item))
        else:
            # 429 is refused by name: retrying a "slow down" makes the overload it reports worse.
            raise ConfigError(section.key("on"), item, "connect, timeout, reset or a 5xx status (never 429)")
    methods = tuple(method.upper() for method in section.strings("methods", _IDEMPOTENT, allow_empty=False))
    for method in methods:
        if method not in _METHODS:
            raise ConfigError(section.key("methods"), method, "one of " + ", ".join(_METHODS))
    policy = RetryPolicy(
        attempts=section.integer("attempts", 2, minimum=1),
        conditions=frozenset(conditions),
        statuses=frozenset(statuses),
        methods=frozenset(methods),
        backoff=section.seconds("backoff", 0.05),
        buffer=section.integer("buffer", 64 * 1024, minimum=0),
    )
    section.done()
    return policy


def _breaker(section: Section) -> BreakerPolicy:
    ratio = section.raw("failure_ratio", 0.5)
    if isinstance(ratio, str):
        try:
            ratio = float(ratio)
        except ValueError:
            pass
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio <= 1:
        raise ConfigError(section.key("failure_ratio"), ratio, "a ratio > 0 and <= 1")
    policy = BreakerPolicy(
        failure_ratio=float(ratio),
        min_requests=section.integer("min_requests", 20, minimum=1),
        window=section.seconds("window", 10.0),
        open_for=section.seconds("open_for", 15.0),
    )
    section.done()
    return policy
