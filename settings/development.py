"""Development: the embedded demo (three local services) that ``make run`` starts."""

from __future__ import annotations

from typing import Any

from settings.base import Base


class Development(Base):
    """Human-readable logs and the demo services on their fixed local ports."""

    LOG: dict[str, Any] = {"level": "DEBUG", "format": "human"}

    UPSTREAMS: dict[str, Any] = {
        # Two instances of the users service, to show round-robin balancing.
        "users": {"targets": ["http://127.0.0.1:9101", "http://127.0.0.1:9102"]},
        "orders": {"targets": ["http://127.0.0.1:9201"], "timeout": 1.0},
        # The catalog answers gzip and sets cookies: both must pass through untouched.
        "catalog": {"targets": ["http://127.0.0.1:9301"]},
    }

    ROUTES: list[dict[str, Any]] = [
        {
            "path": "/api/orders/<path:rest>",
            "methods": ["GET", "POST"],
            "upstream": "orders",
            "upstream_path": "/orders/{rest}",
        },
        {"path": "/api/orders", "methods": ["GET", "POST"], "upstream": "orders", "upstream_path": "/orders"},
        {"path": "/api/catalog/<path:rest>", "upstream": "catalog", "upstream_path": "/catalog/{rest}"},
    ]
