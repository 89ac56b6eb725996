"""The [edge] protections: app-wide defaults, per-route overrides, and the policy each route ends up with."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from app.config import ConfigError, Section

__all__ = [
    "CorsPolicy", "EdgeOverride", "EdgePolicy", "GuardSettings", "IPNetwork", "effective_policy",
    "read_edge_override", "read_guard_settings",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# A serialized origin (RFC 6454): scheme://host[:port], no path; "*" in the host stands for subdomains.
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[A-Za-z0-9*.\[\]:-]+")
_METHOD = re.compile(r"[A-Z]+")
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# The configuration keys a route's `edge = {...}` may set.
_OVERRIDABLE = ("max_body_bytes", "allow_ips", "deny_ips", "deny_user_agents", "cors")


@dataclass(frozen=True)
class CorsPolicy:
    """Which browser origins may call a route, and what they may send and read."""

    origins: frozenset[str]  # exact origins
    patterns: tuple[re.Pattern[str], ...]  # origins with "*" for subdomains
    any_origin: bool  # "*": every origin (never with credentials)
    methods: str  # Access-Control-Allow-Methods as sent
    method_set: frozenset[str]
    headers: str  # Access-Control-Allow-Headers as sent
    header_set: frozenset[str]  # lower case
    expose_headers: str  # "" for none
    credentials: bool
    max_age: int

    def allows(self, origin: str) -> bool:
        """Whether a request from ``origin`` gets CORS headers."""
        if self.any_origin or origin in self.origins:
            return True
        return any(pattern.fullmatch(origin) for pattern in self.patterns)


@dataclass(frozen=True)
class EdgePolicy:
    """What the edge enforces on one route (or on every request, for the app-wide defaults)."""

    max_body_bytes: int
    allow_ips: tuple[IPNetwork, ...]  # empty: every address
    deny_ips: tuple[IPNetwork, ...]
    deny_user_agents: tuple[re.Pattern[str], ...]
    cors: CorsPolicy | None  # None: the gateway does no CORS on this route

    @property
    def screens_clients(self) -> bool:
        """Whether any address or user-agent rule applies."""
        return bool(self.allow_ips or self.deny_ips or self.deny_user_agents)


@dataclass(frozen=True)
class EdgeOverride:
    """A route's `edge = {...}` table, checked but not yet merged over the app-wide defaults."""

    key: str  # where it was written, for start-up errors
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class GuardSettings:
    """The [edge] keys of the protections (trusted_proxies belongs to app/edge/wsgi.py)."""

    defaults: EdgePolicy
    cors_table: Mapping[str, Any]  # the raw [edge.cors], that route tables are merged over
    security_headers: bool
    referrer_policy: str
    hsts_max_age: int
    strip_upstream_headers: frozenset[str]  # lower case


def read_guard_settings(section: Section) -> GuardSettings:
    """Read the protections from the [edge] section (the caller calls ``done``)."""
    cors_table = section.raw("cors", {})
    if not isinstance(cors_table, Mapping):
        raise ConfigError(section.key("cors"), cors_table, "a table")
    defaults = _read_policy(section, cors_table if cors_table else None)
    return GuardSettings(
        defaults=defaults,
        cors_table=dict(cors_table),
        security_headers=section.boolean("security_headers"),
        referrer_policy=section.string("referrer_policy", pattern=r"[a-z-]+(, *[a-z-]+)*",
                                       expected="a Referrer-Policy value such as no-referrer"),
        hsts_max_age=section.integer("hsts_max_age"),
        strip_upstream_headers=frozenset(
            name.lower() for name in _header_names(section, "strip_upstream_headers")),
    )


def read_edge_override(key: str, value: object) -> EdgeOverride:
    """Check a route's `edge = {...}` table on its own (the merge happens once routes are registered)."""
    section = Section(key, value)
    for name in _OVERRIDABLE:
        section.raw(name)
    section.done()
    assert isinstance(value, Mapping)
    return EdgeOverride(key, dict(value))


def effective_policy(settings: GuardSettings, override: EdgeOverride) -> EdgePolicy:
    """The app-wide policy with a route's override applied: keys replace, deny lists add up."""
    section = Section(override.key, override.raw)
    defaults = settings.defaults
    cors: CorsPolicy | None = defaults.cors
    if section.has("cors"):
        raw = section.raw("cors")
        if raw is False:
            cors = None  # this route does no CORS even though the app does
        elif isinstance(raw, Mapping):
            cors = _read_cors(Section(section.key("cors"), {**settings.cors_table, **raw}))
        else:
            raise ConfigError(section.key("cors"), raw, "a table, or false to turn CORS off on this route")
    policy = _read_policy(section, None, defaults)
    return replace(
        policy,
        deny_ips=defaults.deny_ips + policy.deny_ips,
        deny_user_agents=defaults.deny_user_agents + policy.deny_user_agents,
        cors=cors,
    )


def _read_policy(section: Section, cors_table: Mapping[str, Any] | None,
                 defaults: EdgePolicy | None = None) -> EdgePolicy:
    def has(name: str) -> bool:
        return defaults is None or section.has(name)

    return EdgePolicy(
        max_body_bytes=section.integer("max_body_bytes", minimum=0) if has("max_body_bytes")
        else defaults.max_body_bytes if defaults else 0,
        allow_ips=_networks(section, "allow_ips") if has("allow_ips") else defaults.allow_ips if defaults else (),
        # A route's deny lists are added to the app-wide ones by the caller.
        deny_ips=_networks(section, "deny_ips") if section.has("deny_ips") or defaults is None else (),
        deny_user_agents=_patterns(section, "deny_user_agents")
        if section.has("deny_user_agents") or defaults is None else (),
        cors=_read_cors(Section(section.key("cors"), cors_table)) if cors_table is not None else None,
    )


def _networks(section: Section, name: str) -> tuple[IPNetwork, ...]:
    networks = []
    for value in section.strings(name):
        try:
            networks.append(ipaddress.ip_network(value, strict=True))
        except ValueError as error:
            raise ConfigError(section.key(name), value, f"an IPv4 or IPv6 network in CIDR form ({error})") from None
    return tuple(networks)


def _patterns(section: Section, name: str) -> tuple[re.Pattern[str], ...]:
    patterns = []
    for value in section.strings(name):
        try:
            patterns.append(re.compile(value))
        except re.error as error:
            raise ConfigError(section.key(name), value, f"a regular expression ({error})") from None
    return tuple(patterns)


def _header_names(section: Section, name: str) -> tuple[str, ...]:
    names = section.strings(name)
    for value in names:
        if not _HEADER.fullmatch(value):
            raise ConfigError(section.key(name), value, "header names")
    return names


def _read_cors(section: Section) -> CorsPolicy:
    origins = section.strings("allow_origins", allow_empty=False)
    exact, patterns, any_origin = set(), [], False
    for origin in origins:
        if origin == "*":
            any_origin = True
        elif not _ORIGIN.fullmatch(origin) or origin.endswith("/"):
            raise ConfigError(section.key("allow_origins"), origin,
                              'origins as scheme://host[:port] (lower case, no path), "*" or https://*.example.com')
        elif "*" in origin:
            # "*" stands for one or more DNS labels, never for a dot-less suffix (evil-example.com).
            parts = (re.escape(part) for part in origin.split("*"))
            patterns.append(re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*".join(parts)))
        else:
            exact.add(origin)
    credentials = section.boolean("allow_credentials", False)
    if any_origin and credentials:
        # Browsers refuse "*" with credentials, and echoing any origin instead would let every site read
        # answers made with the user's cookies.
        raise ConfigError(section.key("allow_origins"), list(origins),
                          'named origins when allow_credentials = true ("*" only without credentials)')
    methods = tuple(method.upper() for method in section.strings("allow_methods", ["GET", "HEAD", "POST"]))
    for method in methods:
        if not _METHOD.fullmatch(method):
            raise ConfigError(section.key("allow_methods"), method, "HTTP method names")
    headers = _header_names(section, "allow_headers")
    expose = _header_names(section, "expose_headers")
    max_age = section.integer("max_age", 600)
    section.done()
    return CorsPolicy(
        origins=frozenset(exact), patterns=tuple(patterns), any_origin=any_origin,
        methods=", ".join(methods), method_set=frozenset(methods),
        headers=", ".join(headers), header_set=frozenset(header.lower() for header in headers),
        expose_headers=", ".join(expose), credentials=credentials, max_age=max_age,
    )
