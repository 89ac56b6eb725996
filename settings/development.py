"""Development: the embedded demo (three local services) that ``make run`` starts."""

from __future__ import annotations

from typing import Any

from settings.base import Base


class Development(Base):
    """Human-readable logs and the demo services on their fixed local ports."""

    LOG: dict[str, Any] = {"level": "DEBUG", "format": "human"}

    # The sample route families in blueprints/, served by the demo only.
    GATEWAY: dict[str, Any] = {"blueprints": ["blueprints.users:bp", "blueprints.web:bp", "blueprints.mobile:bp"]}

    UPSTREAMS: dict[str, Any] = {
        # Two instances of the users service, to show round-robin balancing.
        "users": {"targets": ["http://127.0.0.1:9101", "http://127.0.0.1:9102"]},
        "orders": {"targets": ["http://127.0.0.1:9201"], "timeout": 1.0},
        # The catalog answers gzip and sets cookies: both must pass through untouched.
        "catalog": {"targets": ["http://127.0.0.1:9301"]},
    }

    # The demo identity provider (examples/demo/idp.py) signs with keys it makes at start and
    # serves them as a JWKS; `python -m examples.demo.token --scope orders:read` asks it for a token.
    AUTH: dict[str, Any] = {
        **Base.AUTH,
        "jwt": {
            "issuer": "https://idp.demo.frontdesk/",
            "audience": "frontdesk",
            "algorithms": ["RS256", "ES256"],
            "jwks_url": "http://127.0.0.1:9401/.well-known/jwks.json",
            "forward_claims": ["email"],
        },
        "api_keys": {
            "header": "X-API-Key",
            # The key is "demo-batch-key-0123456789abcdef0123456789abcdef" (a demo: real keys are random).
            "consumers": {"batch": {
                "key_sha256": "cf86b95cec45c312c4c73c75b7472aaa2399dcc005a8d0b392a650ea152be2c0",
                "scopes": ["orders:read", "users:read"],
                "plan": "free",
            }},
        },
    }

    ROUTES: list[dict[str, Any]] = [
        {"path": "/api/orders/<path:rest>", "methods": ["GET"], "upstream": "orders",
         "upstream_path": "/orders/{rest}", "auth": {"scopes": ["orders:read"]}},
        {"path": "/api/orders/<path:rest>", "methods": ["POST"], "upstream": "orders",
         "upstream_path": "/orders/{rest}", "auth": {"scopes": ["orders:write"]}},
        {"path": "/api/orders", "methods": ["GET"], "upstream": "orders", "upstream_path": "/orders",
         "auth": {"scopes": ["orders:read"]}},
        {"path": "/api/orders", "methods": ["POST"], "upstream": "orders", "upstream_path": "/orders",
         "auth": {"scopes": ["orders:write"]}},
        # The catalog is open to anyone: a decision, written down.
        {"path": "/api/catalog/<path:rest>", "methods": ["GET"], "upstream": "catalog",
         "upstream_path": "/catalog/{rest}", "auth": "public"},
    ]
