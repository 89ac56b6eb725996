"""Upstreams and forwarding: settings, the Session and its pools, and the transport."""

from __future__ import annotations

from app.proxy.discovery import Resolver
from app.proxy.paths import UpstreamPath, check_path
from app.proxy.policy import Resilience
from app.proxy.settings import Target, UpstreamSettings, read_upstreams
from app.proxy.transport import ProxyResponse
from app.proxy.upstream import Upstream, Upstreams, upstreams

__all__ = [
    "ProxyResponse",
    "Resilience",
    "Resolver",
    "Target",
    "Upstream",
    "UpstreamPath",
    "UpstreamSettings",
    "Upstreams",
    "check_path",
    "read_upstreams",
    "upstreams",
]
