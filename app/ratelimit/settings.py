"""The [ratelimit] section, read once into frozen settings and checked at start-up."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from limits import parse_many
from limits.strategies import STRATEGIES

from app.config import ConfigError, Section
from app.sharedstate import parse_redis_uri, without_password

__all__ = ["HEADER_MODES", "RateLimitSettings", "check_limits", "read_ratelimit", "worker_count"]

#: Which rate limit headers a response carries.
HEADER_MODES = ("ietf", "legacy", "both", "none")
_SCHEMES = ("memory", "redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster")
_PLAN_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_CLAIM_NAME = r"[A-Za-z0-9_.:-]+"


@dataclass(frozen=True)
class RateLimitSettings:
    """Where counters live, how they count, what happens when the storage is gone, what clients see."""

    storage_uri: str
    strategy: str
    default: tuple[str, ...]  # app-wide, per client address, before anything else
    on_storage_error: str  # "open": let requests through uncounted; "closed": answer 503
    storage_timeout: float  # seconds one request may wait for the storage, at most
    retry_interval: float  # seconds between attempts to reach a storage found unreachable
    headers: str
    exact: bool  # refuse to start when counters would be per worker (memory:// and several workers)
    key_prefix: str
    plans: Mapping[str, tuple[str, ...]]
    plan_claim: str  # the JWT claim naming the caller's plan (API keys carry theirs)
    default_plan: str | None  # for callers whose credential names no plan, or an unknown one

    @property
    def shared_storage(self) -> bool:
        """Whether every worker and instance counts in the same place."""
        return not self.storage_uri.startswith("memory://")


def check_limits(key: str, value: object) -> tuple[str, ...]:
    """A list of limit strings ("20/second", "1000 per day"), each parsed now so a typo stops the start."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(key, value, 'a list of limits like ["20/second", "1000/day"]')
    for item in value:
        try:
            if not isinstance(item, str) or not item.strip() or not parse_many(item):
                raise ValueError(item)
        except ValueError:
            raise ConfigError(key, item, 'a limit like "20/second", "60 per minute" or "1000/day"') from None
    return tuple(value)


def read_ratelimit(config: Mapping[str, Any]) -> RateLimitSettings:
    """Read and check the [ratelimit] section."""
    section = Section("ratelimit", config["RATELIMIT"])
    storage_uri = section.string("storage_uri", "memory://")
    scheme = storage_uri.partition("://")[0]
    if "://" not in storage_uri or scheme not in _SCHEMES:
        raise ConfigError(section.key("storage_uri"), without_password(storage_uri),
                          "a URI with one of the schemes " + ", ".join(s + "://" for s in _SCHEMES))
    if scheme != "memory":
        parse_redis_uri(section.key("storage_uri"), storage_uri)  # the reading the cache's shared_uri gets too
    raw_plans = section.raw("plans", {})
    if not isinstance(raw_plans, Mapping):
        raise ConfigError(section.key("plans"), raw_plans, 'a table of plans (free = ["60/minute"])')
    plans: dict[str, tuple[str, ...]] = {}
    for name, value in raw_plans.items():
        key = f"{section.key('plans')}.{name}"
        if not re.fullmatch(_PLAN_NAME, name):
            raise ConfigError(key, name, "a plan name of letters, digits and ._-")
        plans[name] = check_limits(key, value)
    default_plan = section.optional_string("default_plan")
    if default_plan is not None and default_plan not in plans:
        raise ConfigError(section.key("default_plan"), default_plan,
                          "the name of a [ratelimit.plans] entry (" + (", ".join(plans) or "none defined") + ")")
    settings = RateLimitSettings(
        storage_uri=storage_uri,
        strategy=section.string("strategy", "sliding-window-counter", choices=tuple(STRATEGIES)),
        default=check_limits(section.key("default"), section.raw("default", [])),
        on_storage_error=section.string("on_storage_error", "open", choices=("open", "closed")),
        storage_timeout=section.seconds("storage_timeout", 0.2),
        retry_interval=section.seconds("retry_interval", 1.0),
        headers=section.string("headers", "ietf", choices=HEADER_MODES),
        exact=section.boolean("exact", False),
        key_prefix=section.string("key_prefix", "frontdesk", pattern=r"[A-Za-z0-9_.:-]{1,64}",
                                  expected="letters, digits and _.:- (64 at most)"),
        plans=plans,
        plan_claim=section.string("plan_claim", "plan", pattern=_CLAIM_NAME, expected="a claim name"),
        default_plan=default_plan,
    )
    section.done()
    return settings


def worker_count(environ: Mapping[str, str] = os.environ) -> int:
    """The worker processes gunicorn starts, computed as gunicorn.conf.py does."""
    raw = environ.get("GATEWAY_WORKERS", "")
    try:
        return max(1, int(raw))
    except ValueError:
        return os.cpu_count() or 1
