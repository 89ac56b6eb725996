"""The metrics endpoint: a gateway endpoint with its own access control, never forwarded or rate limited."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import Forbidden, Unauthorized

from app.admin import BearerToken, admin_authorized
from app.observability import metrics
from app.auth import public
from app.config import ConfigError, Section
from app.errors import GatewayError, PROBLEM_BASE

__all__ = ["MetricsSettings", "Network", "ScrapeForbidden", "ScrapeUnauthorized", "address_allowed",
           "build_metrics_blueprint", "read_metrics_settings", "read_networks"]

# The exposition format prometheus-client writes (text 0.0.4); scrapers accept it by default.
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class MetricsSettings:
    """The [metrics] section."""

    enabled: bool
    path: str
    token: str | None
    allow_from: tuple[Network, ...]


def read_metrics_settings(config: Mapping[str, Any]) -> MetricsSettings:
    """Read and check the [metrics] section."""
    section = Section("metrics", config["METRICS"])
    enabled = section.boolean("enabled")
    path = section.string("path", pattern=r"/[A-Za-z0-9._~/-]*", expected="a path starting with / (no variables)")
    token = section.optional_string("token")
    if token is not None and len(token) < 16:
        raise ConfigError(section.key("token"), "<hidden>", "a token of at least 16 characters")
    allow_from = read_networks(section, "allow_from")
    section.done()
    return MetricsSettings(enabled=enabled, path=path, token=token, allow_from=allow_from)


def read_networks(section: Section, name: str) -> tuple[Network, ...]:
    """A list of client networks (CIDR, IPv4 or IPv6) for an endpoint's own address gate."""
    networks = []
    for value in section.strings(name):
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ConfigError(section.key(name), value, "IP networks such as 10.0.0.0/8 or ::1/128") from None
    return tuple(networks)


class ScrapeUnauthorized(GatewayError, Unauthorized):
    """The scrape did not carry the configured bearer token."""

    problem = PROBLEM_BASE + "metrics-unauthorized"
    extra_headers = (("WWW-Authenticate", 'Bearer realm="metrics"'),)


class ScrapeForbidden(GatewayError, Forbidden):
    """The scrape came from an address outside ``allow_from``."""

    problem = PROBLEM_BASE + "metrics-forbidden"


def check_scrape(settings: MetricsSettings, address: str | None, authorization: str | None) -> None:
    """Raise unless the client's address is allowed and it sent the token (when one is configured)."""
    if settings.allow_from and not address_allowed(settings.allow_from, address):
        raise ScrapeForbidden("Metrics are not served to this address.")
    if settings.token is not None and not admin_authorized(authorization, BearerToken(settings.token)):
        raise ScrapeUnauthorized("Scrapes must send the metrics bearer token.")


def address_allowed(networks: tuple[Network, ...], address: str | None) -> bool:
    """Whether ``address`` (REMOTE_ADDR as the edge trusts it) is in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def build_metrics_blueprint(settings: MetricsSettings) -> Blueprint:
    """The endpoint's blueprint, with no policy decorators: registered beside the health endpoints."""
    blueprint = Blueprint("metrics", __name__)

    def scrape() -> Response:
        """Every worker's metrics in the Prometheus text format."""
        # REMOTE_ADDR is the client as the edge trusts it (ProxyFix applied trusted hops only).
        check_scrape(settings, request.remote_addr, request.headers.get("Authorization"))
        response = Response(metrics.render(), content_type=_CONTENT_TYPE)
        response.headers["Cache-Control"] = "no-store"
        return response

    # Public to the auth layer: the endpoint has its own access control (check_scrape above).
    blueprint.add_url_rule(settings.path, endpoint="scrape", view_func=public(scrape), methods=["GET"])
    return blueprint
