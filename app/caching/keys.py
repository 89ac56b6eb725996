"""Cache keys: the route, method, raw path, normalised query, scope, and the headers a response varies on.

A lookup takes two steps: the URL's key finds the *vary spec* (which request headers the stored
responses vary on), then the variant key adds those headers' values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

__all__ = ["ALWAYS_VARY", "normalise_query", "url_key", "variant_key", "vary_spec"]

#: Compressed and plain bodies are different representations: never one for the other.
ALWAYS_VARY = ("accept-encoding",)
_SEPARATOR = "\x00"


def normalise_query(raw_query: str) -> str:
    """The query's parameters sorted as sent (encoding untouched), empty members dropped."""
    if not raw_query:
        return ""
    return "&".join(sorted(member for member in raw_query.split("&") if member))


def url_key(route: str, origin: str, raw_path: str, raw_query: str, consumer: str | None) -> str:
    """The key of one URL (``origin`` is scheme://host as the client used it) on one route, for one consumer."""
    # HEAD is answered from a stored GET, and only GET is stored: the method is always GET.
    parts = ("GET", route, origin.lower(), raw_path, normalise_query(raw_query), consumer or "")
    return _digest(parts)


def vary_spec(route_vary: Iterable[str], response_vary: Iterable[str]) -> tuple[str, ...]:
    """The request headers a stored response varies on: the route's, the upstream's, Accept-Encoding."""
    return tuple(sorted({*ALWAYS_VARY, *(name.lower() for name in route_vary),
                         *(name.strip().lower() for name in response_vary if name.strip())}))


def variant_key(url: str, spec: Iterable[str], environ: Mapping[str, object]) -> str:
    """The key of the variant this request selects among the URL's stored responses."""
    parts = [url]
    for name in spec:
        value = environ.get("HTTP_" + name.upper().replace("-", "_"))
        # An absent header and an empty one are different requests; whitespace is not significant.
        parts.append(name + ("=" + " ".join(str(value).split()) if value is not None else "!"))
    return _digest(parts)


def _digest(parts: Iterable[str]) -> str:
    # A fixed-size key: a long query cannot make the index larger than the entries it points to.
    return hashlib.sha256(_SEPARATOR.join(parts).encode("utf-8", "surrogateescape")).hexdigest()
