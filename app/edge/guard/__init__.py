"""Edge protections: client screening, CORS, body size limits and response headers (docs/edge.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Flask

from app.config import ConfigError, problems_of
from app.edge.guard.middleware import POLICIES, BodyTooLarge, ClientRefused, EdgeGuard
from app.edge.guard.settings import (
    CorsPolicy,
    EdgeOverride,
    EdgePolicy,
    GuardSettings,
    effective_policy,
    read_edge_override,
    read_guard_settings,
)

__all__ = [
    "BodyTooLarge", "ClientRefused", "CorsPolicy", "EdgeGuard", "EdgeOverride", "EdgePolicy", "GuardSettings",
    "apply_edge", "compile_route_policies", "edge_override_of", "edge_policy", "read_edge_override",
    "read_guard_settings",
]

View = TypeVar("View", bound=Callable[..., Any])

_ATTRIBUTE = "__frontdesk_edge__"


def apply_edge(override: EdgeOverride) -> Callable[[View], View]:
    """Mark a view with its route's edge override (enforced by the WSGI guard, before any hook)."""

    def decorate(view: View) -> View:
        setattr(view, _ATTRIBUTE, override)
        return view

    return decorate


def edge_override_of(view: Callable[..., Any]) -> EdgeOverride | None:
    """The route's own edge settings (``edge_policy`` or a declared route's ``edge``), None when it has none."""
    override = getattr(view, _ATTRIBUTE, None)
    return override if isinstance(override, EdgeOverride) else None


def edge_policy(*, max_body_bytes: int | None = None, allow_ips: Iterable[str] | None = None,
                deny_ips: Iterable[str] | None = None, deny_user_agents: Iterable[str] | None = None,
                cors: dict[str, Any] | bool | None = None) -> Callable[[View], View]:
    """Per-route [edge] settings for a code route, written right under the route decorator."""
    raw: dict[str, Any] = {}
    for name, value in (("max_body_bytes", max_body_bytes), ("allow_ips", allow_ips), ("deny_ips", deny_ips),
                        ("deny_user_agents", deny_user_agents), ("cors", cors)):
        if value is not None:
            raw[name] = list(value) if isinstance(value, (list, tuple, set, frozenset)) else value
    if cors is True:
        raise TypeError("edge_policy(cors=...) takes a table of [edge.cors] keys, or False")

    def decorate(view: View) -> View:
        return apply_edge(read_edge_override(f"edge_policy on {view.__qualname__}", raw))(view)

    return decorate


def compile_route_policies(app: Flask, settings: GuardSettings) -> None:
    """Merge each route's override over the defaults now, so a bad one stops the start (not a request)."""
    policies: dict[str, EdgePolicy] = {}
    for endpoint, view in app.view_functions.items():
        override = edge_override_of(view)
        if override is not None:
            try:
                policies[endpoint] = effective_policy(settings, override)
            except ConfigError as error:
                problems_of(app).report(error)
    app.extensions[POLICIES] = policies
