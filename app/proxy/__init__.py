"""Upstreams and forwarding: settings, the Session and its pools, and the transport.

This module is the transport's public API: the layers above (policies, composition, operators)
import from ``app.proxy`` only, never from its modules (an import-linter contract in setup.cfg).
"""

from __future__ import annotations

from app.proxy.attempts import call as call_upstream
from app.proxy.breaker import HALF_OPEN, OPEN
from app.proxy.client import UpstreamState
from app.proxy.discovery import Resolver
from app.proxy.endpoints import Endpoint
from app.proxy.headers import request_headers
from app.proxy.paths import UpstreamPath, check_path
from app.proxy.policy import Resilience
from app.proxy.relay import TunnelFigures, TunnelLimits
from app.proxy.settings import Target, UpstreamSettings, read_tunnel_limits, read_upstreams
from app.proxy.transport import ProxyResponse, UpstreamRequest
from app.proxy.tunnel import is_upgrade
from app.proxy.upstream import Upstream, Upstreams, start_attempt, upstreams

__all__ = [
    "HALF_OPEN",
    "OPEN",
    "Endpoint",
    "ProxyResponse",
    "Resilience",
    "Resolver",
    "Target",
    "TunnelFigures",
    "TunnelLimits",
    "Upstream",
    "UpstreamPath",
    "UpstreamRequest",
    "UpstreamSettings",
    "UpstreamState",
    "Upstreams",
    "call_upstream",
    "check_path",
    "is_upgrade",
    "read_tunnel_limits",
    "read_upstreams",
    "request_headers",
    "start_attempt",
    "upstreams",
]
