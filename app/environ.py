"""The WSGI environ keys the layers pass down, and two readings of the raw environ (a leaf: stdlib only).

The edge sets some keys, the policies and the transport others, the access log and the metrics read
them all. Each layer imports the names from here, so none has to import another layer for a string.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, urlsplit

__all__ = [
    "API_KEY_ENVIRON", "CACHE_ENVIRON", "CONSUMER_ENVIRON", "DRAINING_ENVIRON", "DRAIN_SIGNAL_ENVIRON", "PATH_SAFE",
    "RATE_LIMIT_ENVIRON", "TUNNEL_ENVIRON",
    "REQUEST_ID_ENVIRON", "ROUTE_ENVIRON", "TRACE_ENVIRON", "UPSTREAM_DURATION_ENVIRON", "UPSTREAM_ENVIRON",
    "connection_tokens", "raw_target",
]

#: Where the request id sits in the WSGI environ for every layer below the edge.
REQUEST_ID_ENVIRON = "frontdesk.request_id"
#: Set by the transport so the access log can name the upstream and target that answered.
UPSTREAM_ENVIRON = "frontdesk.upstream"
#: Set by the transport: seconds the upstream took to answer with its response head.
UPSTREAM_DURATION_ENVIRON = "frontdesk.upstream_duration"
#: Set by the auth, cache and rate-limit layers (consumer id, never a credential; hit/miss; decision).
CONSUMER_ENVIRON = "frontdesk.consumer"
CACHE_ENVIRON = "frontdesk.cache"
RATE_LIMIT_ENVIRON = "frontdesk.rate_limit"
#: Set by a Flask hook: the matched rule, for the access log and the metrics' route label.
ROUTE_ENVIRON = "frontdesk.route"
#: Set by the edge: the request's span (app/observability/tracing.py), read by every layer that makes a child span.
TRACE_ENVIRON = "frontdesk.trace"
#: Set by the auth hook: the API key, moved off the headers before any view can forward it.
API_KEY_ENVIRON = "frontdesk.api_key"
#: Set by the worker (worker.py, which cannot import the app) while it drains: /readyz answers 503.
DRAINING_ENVIRON = "frontdesk.draining"
#: Set by the worker (worker.py): a gevent Event set when the worker begins to drain; open tunnels
#: then get their grace period.
DRAIN_SIGNAL_ENVIRON = "frontdesk.drain_signal"
#: Set by a WebSocket tunnel: its figures (bytes each way, why it closed), for the access log at its close.
TUNNEL_ENVIRON = "frontdesk.tunnel"

#: Characters a path may carry unencoded when the gateway rebuilds it; "%" keeps escapes the caller already made.
PATH_SAFE = "/!$&'()*+,;=:@-._~%"


def connection_tokens(value: str | None) -> frozenset[str]:
    """The field names a Connection field lists: they are hop-by-hop too."""
    if not value:
        return frozenset()
    return frozenset(token.strip().lower() for token in value.split(",") if token.strip())


def raw_target(environ: Mapping[str, object]) -> tuple[str, str, str]:
    """The path and query exactly as the client sent them (absolute-form reduced to origin-form)."""
    uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if isinstance(uri, str) and uri:
        if not uri.startswith("/"):
            parts = urlsplit(uri)
            return parts.path or "/", "?", parts.query
        return uri.partition("?")
    path = quote(str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", "")), safe=PATH_SAFE)
    return path, "?", str(environ.get("QUERY_STRING", ""))
