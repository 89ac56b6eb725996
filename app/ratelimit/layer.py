"""The limit layer: ``limiter.limit`` and ``limiter.shared_limit`` record their limits in the view's policy record.

Wherever the decorator is written, the limits are counted after auth and before the schema and
the cache (app/policies.py). Limits that never change are resolved once and counted directly
(decision 52); the others are Flask-Limiter's own decorator, applied at the limit layer's place.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Blueprint
from flask_limiter import RateLimitExceeded, RouteLimit

from app.current import current_gateway, current_request
from app.policies import add_policy, route_policy
from app.ratelimit.runtime import EXTENSION, RateLimitRuntime

if TYPE_CHECKING:
    from flask_limiter import Limiter
    # What iterating a RouteLimit gives; Flask-Limiter does not export it. Named here once (the inventory
    # takes it from this module), for the type checker only.
    from flask_limiter._limits import RuntimeLimit as RuntimeLimit

__all__ = ["PolicyLimit", "policy_limit", "route_limits_of"]


@dataclasses.dataclass(unsafe_hash=True, kw_only=True)
class PolicyLimit(RouteLimit):
    """Flask-Limiter's route limit, recorded as the view's limit layer instead of wrapping where it is written.

    On a Blueprint it is Flask-Limiter's blueprint limit, unchanged.
    """

    def __call__(self, obj: Any) -> Any:
        """Record this limit on the view ``obj`` (or limit the Blueprint ``obj``)."""
        if isinstance(obj, Blueprint):
            return super().__call__(obj)
        return add_policy(obj, "limit", self, _limited)


def policy_limit(limit: RouteLimit, limiter: Limiter) -> PolicyLimit:
    """The same limit as a ``PolicyLimit``."""
    fields = {field.name: getattr(limit, field.name) for field in dataclasses.fields(RouteLimit) if field.init}
    return PolicyLimit(limiter=limiter, **fields)


def route_limits_of(view: Callable[..., Any]) -> tuple[RuntimeLimit, ...]:
    """The fixed limits a registered view counts itself (the inventory lists them)."""
    return _resolve(tuple(limit for limit in route_policy(view).settings("limit") if _fixed(limit)))


def _limited(limits: tuple[Any, ...], view: Callable[..., Any]) -> Callable[..., Any]:
    """The limit layer: the fixed limits counted directly, then Flask-Limiter's check of the others."""
    inner = view
    for limit in limits:
        if not _fixed(limit):
            # Flask-Limiter keeps them by the view's qualified name and checks them all in its innermost wrapper.
            inner = RouteLimit.__call__(limit, inner)
    fixed = _resolve(tuple(limit for limit in limits if _fixed(limit)))
    if not fixed:
        return inner

    @functools.wraps(inner)
    def counted(*args: Any, **kwargs: Any) -> Any:
        if current_request().method != "OPTIONS":  # a CORS preflight never spends a quota (limiter's filter)
            _count(fixed)
        return inner(*args, **kwargs)

    return counted


def _fixed(limit: RouteLimit) -> bool:
    """Whether the limit's rate, key, scope and cost never depend on the request: resolvable once."""
    return (isinstance(limit.limit_provider, str) and not limit.shared and limit.scope is None
            and not limit.per_method and limit.methods is None and limit.exempt_when is None
            and limit.deduct_when is None and limit.on_breach is None and limit.cost in (None, 1)
            and not limit.meta_limits and limit.error_message is None)


def _resolve(limits: tuple[RouteLimit, ...]) -> tuple[RuntimeLimit, ...]:
    """Flask-Limiter's own limit objects, smallest window first (its order)."""
    return tuple(sorted((resolved for limit in limits for resolved in limit), key=lambda resolved: resolved.limit))


def _count(resolved: tuple[RuntimeLimit, ...]) -> None:
    """Count each limit as Flask-Limiter's decorator does, under the same storage keys; stop at the first breach."""
    runtime: RateLimitRuntime = current_gateway().extensions[EXTENSION]
    prefix = runtime.settings.key_prefix
    served = current_request()
    endpoint, method = served.endpoint or "", served.method
    for limit in resolved:
        identifiers: tuple[str, ...] = (limit.key_func(), limit.scope_for(endpoint, method))
        if not all(identifiers):
            continue  # as Flask-Limiter does: a limit whose key is empty is not counted
        if prefix:
            identifiers = (prefix, *identifiers)
        if not runtime.strategy.hit(limit.limit, *identifiers):
            raise RateLimitExceeded(limit)
