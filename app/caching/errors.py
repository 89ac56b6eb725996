"""The cache's own errors, rendered as problem+json by the one handler."""

from __future__ import annotations

from werkzeug.exceptions import BadRequest, GatewayTimeout, Unauthorized

from app.errors import GatewayError

__all__ = ["BadPurge", "CacheWaitTimeout", "PurgeRefused"]

_BASE = "https://frontdesk.dev/problems/"


class CacheWaitTimeout(GatewayError, GatewayTimeout):
    """This request waited for another one's upstream call to the same resource, and it did not finish in time."""

    problem = _BASE + "cache-wait-timeout"


class PurgeRefused(GatewayError, Unauthorized):
    """The purge endpoint needs its own bearer credential."""

    problem = _BASE + "purge-refused"
    extra_headers = (("WWW-Authenticate", 'Bearer realm="frontdesk-cache"'),)


class BadPurge(GatewayError, BadRequest):
    """A purge request that does not name exactly one path, prefix or tag."""

    problem = _BASE + "bad-purge"
