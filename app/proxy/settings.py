"""The [upstreams.NAME] tables, read once into frozen settings."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from app.config import ConfigError, Problems, Section
from app.proxy.policy import Resilience, read_resilience
from app.proxy.relay import TunnelLimits

__all__ = ["Target", "UpstreamSettings", "read_tunnel_limits", "read_upstreams"]

_NAME = r"[a-z][a-z0-9_-]{0,62}"
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_WEIGHT = 1000


@dataclass(frozen=True)
class Target:
    """One address an upstream is served at: ``scheme://host:port``, no path."""

    url: str
    scheme: str
    host: str
    port: int
    netloc: str  # as sent in the Host header
    weight: int = 1  # share of the traffic relative to the other targets


@dataclass(frozen=True)
class UpstreamSettings:
    """One upstream service and how to talk to it."""

    name: str
    targets: tuple[Target, ...]
    connect_timeout: float
    read_timeout: float
    timeout: float
    max_in_flight: int
    pool_size: int
    preserve_host: bool
    forward_authorization: bool
    resilience: Resilience = Resilience()


def read_upstreams(config: Mapping[str, Any], problems: Problems | None = None) -> dict[str, UpstreamSettings]:
    """Every declared upstream by name, with [upstream_defaults] under each.

    Each upstream is read on its own: a bad one goes to ``problems`` and is left out.
    """
    problems = problems or Problems()
    defaults_section = Section("upstream_defaults", config["UPSTREAM_DEFAULTS"])
    read_resilience(defaults_section)  # checked once here, so an error names [upstream_defaults]
    defaults = _read_options(defaults_section, every=True)
    upstreams = {}
    for section in Section("upstreams", config["UPSTREAMS"]).tables():
        try:
            upstreams[section.path.split(".", 1)[1]] = _read_upstream(section, config, defaults)
        except ConfigError as error:
            problems.report(error)
    return upstreams


def _read_upstream(section: Section, config: Mapping[str, Any], defaults: dict[str, Any]) -> UpstreamSettings:
    name = section.path.split(".", 1)[1]
    if not _is_name(name):
        raise ConfigError(section.path, name, "an upstream name of lower-case letters, digits, - and _")
    targets = _targets(section)
    resilience = read_resilience(section, Section("upstream_defaults", config["UPSTREAM_DEFAULTS"]))
    options = {**defaults, **_read_options(section, every=False)}
    return UpstreamSettings(name=name, targets=targets, resilience=resilience, **options)


# Each option's reader; the same ones check [upstream_defaults] and every [upstreams.NAME].
_OPTIONS: dict[str, Callable[[Section, str], Any]] = {
    "connect_timeout": Section.seconds,
    "read_timeout": Section.seconds,
    "timeout": Section.seconds,
    "max_in_flight": lambda section, key: section.integer(key, minimum=1),
    "pool_size": lambda section, key: section.integer(key, minimum=1),
    "preserve_host": Section.boolean,
    "forward_authorization": Section.boolean,
}


def _read_options(section: Section, every: bool) -> dict[str, Any]:
    options = {key: read(section, key) for key, read in _OPTIONS.items() if every or section.has(key)}
    section.done()
    return options


def _is_name(name: str) -> bool:
    return re.fullmatch(_NAME, name) is not None


def _is_host(host: str | None) -> bool:
    """A DNS name or an IP address (urlsplit accepts spaces and worse)."""
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return re.fullmatch(_HOSTNAME, host) is not None


def _targets(section: Section) -> tuple[Target, ...]:
    """``targets``: URLs, or ``{ url = ..., weight = N }`` tables for weighted balancing."""
    raw = section.raw("targets")
    if not isinstance(raw, list) or not any(isinstance(item, dict) for item in raw):
        return tuple(_target(section.key("targets"), url) for url in section.strings("targets", allow_empty=False))
    targets = []
    for index, item in enumerate(raw):
        if isinstance(item, str) and item:
            targets.append(_target(section.key("targets"), item))
            continue
        table = Section(f"{section.key('targets')}[{index}]", item)
        url = table.string("url", expected="an http:// or https:// URL")
        weight = table.integer("weight", 1, minimum=1)
        if weight > _MAX_WEIGHT:  # the hash ring holds points per unit of weight
            raise ConfigError(table.key("weight"), weight, f"a whole number from 1 to {_MAX_WEIGHT}")
        table.done()
        targets.append(replace(_target(table.key("url"), url), weight=weight))
    return tuple(targets)


def _target(key: str, url: str) -> Target:
    expected = "an http:// or https:// URL with a host and no path, query or credentials"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(key, url, expected) from None
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not _is_host(parts.hostname)
        or port == 0
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ConfigError(key, url, expected)
    port = _DEFAULT_PORTS[parts.scheme] if port is None else port
    host = parts.hostname
    assert host is not None
    shown_host = f"[{host}]" if ":" in host else host
    netloc = shown_host if port == _DEFAULT_PORTS[parts.scheme] else f"{shown_host}:{port}"
    return Target(url=f"{parts.scheme}://{shown_host}:{port}", scheme=parts.scheme, host=host, port=port,
                  netloc=netloc)


def read_tunnel_limits(key: str, value: object) -> TunnelLimits:
    """A declared route's ``websocket``: true (the default limits) or a table of limits."""
    defaults = TunnelLimits()
    if value is True:
        return defaults
    if value is False or not isinstance(value, Mapping):
        raise ConfigError(key, value, "true, or a table of max_tunnels, idle_timeout, max_lifetime, drain_grace")
    section = Section(key, value)
    limits = TunnelLimits(
        max_tunnels=section.integer("max_tunnels", defaults.max_tunnels, minimum=1),
        idle_timeout=section.seconds("idle_timeout", defaults.idle_timeout),
        max_lifetime=section.seconds("max_lifetime", defaults.max_lifetime),
        drain_grace=section.seconds("drain_grace", defaults.drain_grace),
    )
    section.done()
    return limits
