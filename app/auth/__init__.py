"""Authentication and authorization at the front door: JWT (static keys or JWKS) and API keys."""

from __future__ import annotations

from app.auth.extension import Auth, AuthRuntime, auth, take_credentials
from app.auth.policy import (
    PUBLIC,
    AuthPolicy,
    apply_policy,
    policy_of,
    public,
    read_route_policy,
    require_api_key,
    require_auth,
    require_jwt,
)
from app.auth.principal import Principal
from app.auth.settings import AuthSettings, read_auth

__all__ = [
    "PUBLIC", "Auth", "AuthPolicy", "AuthRuntime", "AuthSettings", "Principal", "apply_policy",
    "auth", "policy_of", "public", "read_auth", "read_route_policy", "require_api_key", "require_auth",
    "require_jwt", "take_credentials",
]
