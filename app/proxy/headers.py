"""Header rules in both directions: drop hop-by-hop fields, add the X-Forwarded-* set and Via."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from urllib3.util import SKIP_HEADER

from app.environ import connection_tokens

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["VIA", "request_headers", "response_headers"]

#: How the gateway names itself in Via (RFC 9110 7.6.3): a pseudonym, never a version.
VIA = "1.1 frontdesk"

# RFC 9110 7.6.1, plus Proxy-Connection which old clients still send.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})
# Request headers the gateway sets itself, or that make no sense past it: the body is already
# being streamed (Expect). Every X-Forwarded-* and Forwarded field a client sends is dropped
# (those the gateway vouches for are rebuilt below), so none can be forged past it.
_REPLACED_ON_REQUEST = frozenset({"host", "expect", "via", "forwarded"})
_FORWARDED_PREFIX = "x-forwarded-"

# WSGI environ keys that are request headers but lack the HTTP_ prefix.
_UNPREFIXED = {"CONTENT_TYPE": "Content-Type", "CONTENT_LENGTH": "Content-Length"}


# Environ key -> (header name, its lower case), so each name is spelled out once per worker rather
# than once per request. Bounded: clients choose header names, and must not grow it without end.
_NAMES: dict[str, tuple[str, str]] = {}
_MAX_NAMES = 1024
_DROPPED = _HOP_BY_HOP | _REPLACED_ON_REQUEST


def _header_name(key: str) -> tuple[str, str]:
    known = _NAMES.get(key)
    if known is None:
        name = key[5:].replace("_", "-").title()
        known = (name, name.lower())
        if len(_NAMES) < _MAX_NAMES:
            _NAMES[key] = known
    return known


def request_headers(environ: WSGIEnvironment, host: str) -> dict[str, str]:
    """The headers to send upstream for this request, ``host`` being the Host to send.

    The client's Connection options were removed at the edge (``app.edge.scrub_client_fields``).
    """
    dropped = _DROPPED
    headers = {"Host": host}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name, lower = _header_name(key)
        elif key in _UNPREFIXED:
            if not value:
                continue  # WSGI servers may set these empty when the header was absent
            name = _UNPREFIXED[key]
            lower = name.lower()
        else:
            continue
        if lower not in dropped and not lower.startswith(_FORWARDED_PREFIX):
            headers[name] = value

    # The TCP peer, before ProxyFix rewrote REMOTE_ADDR (it keeps the original aside), is
    # appended to the chain the request claims.
    peer = environ.get("werkzeug.proxy_fix.orig", environ).get("REMOTE_ADDR", "")
    forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
    headers["X-Forwarded-For"] = f"{forwarded_for}, {peer}" if forwarded_for else peer
    # Scheme and host as the client used them (ProxyFix has already applied trusted hops).
    headers["X-Forwarded-Proto"] = environ.get("wsgi.url_scheme", "http")
    client_host = environ.get("HTTP_HOST")
    if client_host:
        headers["X-Forwarded-Host"] = client_host
    # urllib3 would otherwise add its own Accept-Encoding and User-Agent: send only the client's.
    headers.setdefault("Accept-Encoding", SKIP_HEADER)
    headers.setdefault("User-Agent", SKIP_HEADER)
    via = environ.get("HTTP_VIA")
    headers["Via"] = f"{via}, {VIA}" if via else VIA
    return headers


def response_headers(fields: Iterable[tuple[str, str]], connection: str | None) -> list[tuple[str, str]]:
    """The upstream's response headers minus hop-by-hop ones, duplicates (Set-Cookie) kept."""
    dropped = _HOP_BY_HOP | connection_tokens(connection)
    headers = [(name, value) for name, value in fields if name.lower() not in dropped]
    headers.append(("Via", VIA))
    return headers
