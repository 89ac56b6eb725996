"""The [cache] table and a route's cache policy, read once into frozen settings."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.config import ConfigError, Section
from app.sharedstate import RedisTarget, parse_redis_uri

__all__ = ["FRESHNESS", "SCOPES", "CacheSettings", "RouteCache", "read_cache", "read_route_cache", "route_cache"]

#: Who may share a stored response: anyone (credentialed requests only when the upstream says
#: ``public``), or only the verified consumer that caused it to be stored.
SCOPES = ("public", "consumer")
#: What a response without explicit freshness gets: the route's ttl, or only the RFC's heuristic (4.2.2).
FRESHNESS = ("route", "upstream")
_HEADER_NAME = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_MIN_PURGE_TOKEN = 32


@dataclass(frozen=True)
class CacheSettings:
    """How much each worker keeps, the optional shared tier, and the purge endpoint."""

    max_bytes: int
    max_item_bytes: int
    shared: RedisTarget | None  # shared_uri, read: one server, a cluster or a sentinel-watched service
    shared_timeout: float  # seconds for a Redis connect or reply before the tier counts as down
    shared_retry: float  # seconds the shared tier is left alone after a failure
    local_ttl: float  # with a shared tier: how long a worker keeps its own copy (other instances' purges)
    wait_timeout: float  # how long concurrent misses wait for the one upstream call (and a refresh may run)
    targeted_fields: tuple[str, ...]  # RFC 9213 fields the cache obeys instead of Cache-Control, first present wins
    stale_keep: float  # how long past its freshness an entry is kept for revalidation and stale serving
    max_waiters: int  # waiters per key beyond which a request goes upstream itself
    surrogate_header: str
    purge_token: str | None
    admin_path: str  # the purge endpoint is <admin_path>/purge, the worker's statistics <admin_path>/stats
    journal: str  # the file through which one instance's workers share purges and invalidations


@dataclass(frozen=True)
class RouteCache:
    """One route's cache policy: the TTL ceiling, the request headers it varies on, the scope."""

    ttl: float
    vary: tuple[str, ...]
    scope: str
    freshness: str = "route"  # "route": no explicit freshness gets ttl; "upstream": only RFC 9111 4.2.2 heuristics
    stale_while_revalidate: float | None = None  # seconds; None: as the upstream says; shortened by the upstream
    stale_if_error: float | None = None  # seconds; None: as the upstream says; shortened by the upstream
    ignore_client_no_cache: bool = False  # a client's no-cache is not a revalidation (cache-busting floods)

    def as_dict(self) -> dict[str, Any]:
        """Every option, JSON-ready (the route inventory, the OpenAPI document)."""
        return {"ttl": self.ttl, "vary": list(self.vary), "scope": self.scope, "freshness": self.freshness,
                "stale_while_revalidate": self.stale_while_revalidate, "stale_if_error": self.stale_if_error,
                "ignore_client_no_cache": self.ignore_client_no_cache}

    def summary(self) -> str:
        """One line for people (``flask gateway routes``, the status page): the options set beside the defaults."""
        parts = [f"ttl {self.ttl:g} s", self.scope]
        if self.vary:
            parts.append("vary " + " ".join(self.vary))
        if self.freshness != "route":
            parts.append(f"freshness {self.freshness}")
        if self.stale_while_revalidate is not None:
            parts.append(f"stale-while-revalidate {self.stale_while_revalidate:g} s")
        if self.stale_if_error is not None:
            parts.append(f"stale-if-error {self.stale_if_error:g} s")
        if self.ignore_client_no_cache:
            parts.append("ignores client no-cache")
        return ", ".join(parts)


def route_cache(key: str, ttl: float, vary: object, scope: str, **options: object) -> RouteCache:
    """A checked policy; ``key`` names it in errors (a decorator or a [[routes]] entry)."""
    given = {name: value for name, value in options.items() if value is not None}
    return _read_policy(Section(key, {"ttl": ttl, "vary": list(vary) if isinstance(vary, tuple) else vary,
                                      "scope": scope, **given}))


def read_route_cache(key: str, value: object) -> RouteCache:
    """A declared route's ``cache = { ttl, vary, scope }``."""
    return _read_policy(Section(key, value))


def _read_policy(section: Section) -> RouteCache:
    ttl = section.seconds("ttl")
    vary = section.strings("vary", ())
    for name in vary:
        if not _is_header_name(name) or name.lower() in ("*", "cookie", "authorization"):
            raise ConfigError(section.key("vary"), name, "request header names (never *, Cookie or Authorization: "
                                                         "credentials are handled by scope)")
    scope = section.string("scope", "public", choices=SCOPES)
    freshness = section.string("freshness", "route", choices=FRESHNESS)
    swr = _window(section, "stale_while_revalidate")
    sie = _window(section, "stale_if_error")
    ignore = section.boolean("ignore_client_no_cache", False)
    section.done()
    return RouteCache(ttl=ttl, vary=tuple(sorted({name.lower() for name in vary})), scope=scope,
                      freshness=freshness, stale_while_revalidate=swr, stale_if_error=sie,
                      ignore_client_no_cache=ignore)


def _fields(section: Section, name: str) -> tuple[str, ...]:
    """Header names, in order (the first one a response carries wins)."""
    names = section.strings(name, ())
    for field in names:
        if not _is_header_name(field) or field.lower() == "cache-control":
            raise ConfigError(section.key(name), field, "header names other than Cache-Control")
    return names


def _window(section: Section, name: str) -> float | None:
    """A stale window in seconds (0 turns stale serving off), or None when the route leaves it to the upstream."""
    if not section.has(name):
        return None
    value = section.raw(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 86400:
        raise ConfigError(section.key(name), value, "a number of seconds >= 0 and < 86400")
    return float(value)


def _is_header_name(name: str) -> bool:
    return re.fullmatch(_HEADER_NAME, name) is not None


def read_cache(config: Mapping[str, Any]) -> CacheSettings:
    """Read and check [cache]."""
    section = Section("cache", config["CACHE"])
    max_bytes = section.integer("max_bytes", minimum=1024)
    max_item_bytes = section.integer("max_item_bytes", minimum=1)
    if max_item_bytes > max_bytes:
        raise ConfigError(section.key("max_item_bytes"), max_item_bytes, f"at most max_bytes ({max_bytes})")
    shared_uri = section.raw("shared_uri", "")
    # The rate limiter's reading of its storage_uri: one URI form for every shared state.
    shared = parse_redis_uri(section.key("shared_uri"), shared_uri) if shared_uri != "" else None
    purge_token = section.raw("purge_token", "")
    if not isinstance(purge_token, str) or (purge_token and len(purge_token) < _MIN_PURGE_TOKEN):
        raise ConfigError(section.key("purge_token"), "<hidden>",
                          f'"" (no purge endpoint) or a secret of at least {_MIN_PURGE_TOKEN} characters '
                          "(set GATEWAY_CACHE__PURGE_TOKEN)")
    admin_path = section.string("admin_path", pattern=r"(/[A-Za-z0-9_.-]+)+",
                                expected="a plain path starting with /, without a trailing /")
    surrogate_header = section.string("surrogate_header", pattern=_HEADER_NAME, expected="a header name")
    journal = section.raw("journal", "")
    if not isinstance(journal, str):
        raise ConfigError(section.key("journal"), journal, "a file path, or \"\" for one per gunicorn master")
    settings = CacheSettings(
        max_bytes=max_bytes, max_item_bytes=max_item_bytes, shared=shared,
        shared_timeout=section.seconds("shared_timeout"), shared_retry=section.seconds("shared_retry"),
        local_ttl=section.seconds("local_ttl"), wait_timeout=section.seconds("wait_timeout"),
        stale_keep=section.seconds("stale_keep"), targeted_fields=_fields(section, "targeted_fields"),
        max_waiters=section.integer("max_waiters", minimum=1), surrogate_header=surrogate_header,
        purge_token=purge_token or None, admin_path=admin_path,
        # Workers of one gunicorn master share their parent's pid: one journal per instance.
        journal=journal or os.path.join(tempfile.gettempdir(), f"frontdesk-cache-{os.getppid()}.journal"),
    )
    section.done()
    return settings
