"""Auth policies on views: ``@public``, ``@require_jwt``, ``@require_api_key``, ``@require_auth``.

Each is the auth layer of the view's policy record (app/policies.py), so start-up can refuse a route
that has none, and auth runs first wherever the decorator is written.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask

from app.observability import metrics
from app.auth.errors import InsufficientScope, InvalidCredentials, KeysUnavailable
from app.auth.settings import check_scope
from app.config import ConfigError, problems_of
from app.current import current_gateway, current_globals, current_request
from app.environ import CONSUMER_ENVIRON
from app.policies import add_policy, route_policy

__all__ = [
    "EXTENSION", "PUBLIC", "SCHEMES", "AuthPolicy", "apply_policy", "check_policies", "policy_of", "public",
    "read_route_policy", "require_api_key", "require_auth", "require_jwt",
]

#: Where the auth runtime lives in ``app.extensions``.
EXTENSION = "frontdesk.auth"
#: The schemes a route may accept, by the names used in settings and decorators.
SCHEMES = ("jwt", "api_key")

View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class AuthPolicy:
    """What a route asks of its callers: nothing (public), or a scheme and every one of ``scopes``."""

    public: bool
    schemes: tuple[str, ...] | None  # None: whichever schemes are configured
    scopes: tuple[str, ...]


#: The policy of a route anyone may call.
PUBLIC = AuthPolicy(public=True, schemes=None, scopes=())


def policy_of(view: Callable[..., Any]) -> AuthPolicy | None:
    """The policy a registered view was given, or None."""
    policies = route_policy(view).settings("auth")
    policy = policies[0] if policies else None
    return policy if isinstance(policy, AuthPolicy) else None


def public(view: View) -> View:
    """Mark a view as open to anyone: a decision written down, adding no layer."""
    return add_policy(view, "auth", PUBLIC, _guard)


def require_auth(*, schemes: Iterable[str] | None = None, scopes: Iterable[str] = ()) -> Callable[[View], View]:
    """Let a request through only with a valid credential of ``schemes`` holding every scope in ``scopes``."""
    return apply_policy(_policy("require_auth", schemes, scopes))


def require_jwt(*, scopes: Iterable[str] = ()) -> Callable[[View], View]:
    """Let a request through only with a valid bearer token holding every scope in ``scopes``."""
    return require_auth(schemes=("jwt",), scopes=scopes)


def require_api_key(*, scopes: Iterable[str] = ()) -> Callable[[View], View]:
    """Let a request through only with a known API key whose consumer has every scope in ``scopes``."""
    return require_auth(schemes=("api_key",), scopes=scopes)


def apply_policy(policy: AuthPolicy) -> Callable[[View], View]:
    """The decorator that enforces ``policy`` (``public`` for a public one)."""
    def decorate(view: View) -> View:
        return add_policy(view, "auth", policy, _guard)

    return decorate


def _guard(policies: tuple[Any, ...], view: Callable[..., Any]) -> Callable[..., Any]:
    """The auth layer: ``view`` runs only for a caller the policy lets through (a public one adds nothing)."""
    policy: AuthPolicy = policies[0]
    if policy.public:
        return view

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        served = current_request()
        rule = served.url_rule
        route = rule.rule if rule is not None else None
        try:
            principal = current_gateway().extensions[EXTENSION].authenticate(policy, served.environ)
        except InvalidCredentials as error:
            metrics.record_auth(route, "invalid" if error.presented else "missing")
            raise
        except InsufficientScope:
            metrics.record_auth(route, "forbidden")
            raise
        except KeysUnavailable:
            metrics.record_auth(route, "idp_unavailable")
            raise
        metrics.record_auth(route, "ok")
        current_globals().principal = principal
        # The access log names the caller (never its credential).
        served.environ[CONSUMER_ENVIRON] = principal.consumer or principal.subject
        return view(*args, **kwargs)

    return guarded


def _policy(key: str, schemes: Iterable[str] | None, scopes: Iterable[str]) -> AuthPolicy:
    if isinstance(scopes, str) or isinstance(schemes, str):
        raise ConfigError(key, scopes if isinstance(scopes, str) else schemes, "a list, not a single string")
    chosen = None if schemes is None else tuple(schemes)
    if chosen is not None and (not chosen or any(scheme not in SCHEMES for scheme in chosen)):
        raise ConfigError(f"{key}.schemes", list(chosen), "a non-empty list of " + ", ".join(SCHEMES))
    return AuthPolicy(public=False, schemes=chosen, scopes=tuple(check_scope(f"{key}.scopes", s) for s in scopes))


def read_route_policy(key: str, value: object) -> AuthPolicy:
    """A declared route's ``auth``: "public", or a table with ``scopes`` and optional ``schemes``."""
    expected = '"public" or a table { scopes = [...], schemes = ["jwt", "api_key"] }'
    if value == "public":
        return PUBLIC
    if not isinstance(value, dict) or not set(value) <= {"scopes", "schemes"}:
        raise ConfigError(key, value, expected)
    scopes, schemes = value.get("scopes", []), value.get("schemes")
    if not isinstance(scopes, list) or not (schemes is None or isinstance(schemes, list)):
        raise ConfigError(key, value, expected)
    return _policy(key, schemes, scopes)


def check_policies(app: Flask, configured: Iterable[str]) -> None:
    """Refuse to start when a route has no policy, or needs a scheme that is not configured."""
    available = tuple(configured)
    problems = problems_of(app)
    for rule in app.url_map.iter_rules():
        policy = policy_of(app.view_functions[rule.endpoint])
        where = f"auth policy of {rule.rule}"
        if policy is None:
            problems.report(ConfigError(where, rule.endpoint, "@public, @require_jwt, @require_api_key or "
                                        "@require_auth on the view (auth = ... on a declared route): none is "
                                        "public by accident"), after="ROUTE_DEFAULTS")
            continue
        if policy.public:
            continue
        missing = [scheme for scheme in policy.schemes or () if scheme not in available]
        if missing or not available:
            problems.report(ConfigError(where, rule.endpoint,
                                        f"configured schemes for it ([auth.jwt] / [auth.api_keys]); missing: "
                                        f"{', '.join(missing or policy.schemes or SCHEMES)}"), after="AUTH")
