"""The small JSON body every fast answer carries: the upstreams', the bare Flask endpoint's, the cache's."""

from __future__ import annotations

import json

__all__ = ["SMALL_JSON"]

#: About 300 bytes: a typical small API answer (one resource with a few fields).
SMALL_JSON = json.dumps({
    "id": "o-5001",
    "status": "shipped",
    "user_id": "u-1001",
    "items": [{"sku": "KB-3300", "qty": 1, "price": 89.99}, {"sku": "LP-0450", "qty": 2, "price": 39.0}],
    "total": 167.99,
    "currency": "EUR",
    "created": "2026-11-22T05:21:31Z",
    "note": "a small JSON body, the size most API answers have",
}, separators=(",", ":")).encode()
