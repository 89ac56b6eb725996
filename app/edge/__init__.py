"""The WSGI edge, the first layer a request meets: trusted hops, request id, access log (wsgi), protections (guard)."""

from __future__ import annotations

from app.edge.wsgi import (
    SPOOFABLE,
    EdgeSettings,
    RequestLog,
    accept_request_id,
    read_edge_settings,
    scrub_client_fields,
    wrap_wsgi,
)

__all__ = [
    "SPOOFABLE", "EdgeSettings", "RequestLog", "accept_request_id", "read_edge_settings", "scrub_client_fields",
    "wrap_wsgi",
]
