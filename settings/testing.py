"""Testing: what each test overrides starts from nothing but safe defaults."""

from __future__ import annotations

from typing import Any

from settings.base import Base

# Port 9 (discard) on loopback: nothing listens there, so a test that forgets to point an
# upstream at its own backend gets a 502, never somebody else's service.
_NOWHERE = "http://127.0.0.1:9"


class Testing(Base):
    """Flask's testing mode; quiet logs unless a test asks for them."""

    TESTING = True
    LOG: dict[str, Any] = {"level": "WARNING", "format": "json"}

    # No code blueprints: a test builds exactly the ones it tests (create_app(blueprints=...)).

    # Two upstreams the tests' declared routes and the sample families name, pointed nowhere; a test
    # that calls one points it at its own backend.
    UPSTREAMS: dict[str, Any] = {
        "users": {"targets": [_NOWHERE]},
        "orders": {"targets": [_NOWHERE]},
    }

    # An API-key consumer for the testing kit's api_key(). The key is published test data
    # ("frontdesk-test-key-" and 16 zeros), not a secret.
    AUTH: dict[str, Any] = {
        **Base.AUTH,
        "api_keys": {
            "header": "X-API-Key",
            "consumers": {"tests": {
                "key_sha256": "d88d8621fda74a4f0afc0e3eb50fedc1f8e6475617f5e2c0d69e50083faf7f59",
                "scopes": ["users:read", "users:write", "orders:read"],
                "plan": "free",
            }},
        },
    }
