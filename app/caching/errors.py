"""The cache's own errors, rendered as problem+json by the one handler."""

from __future__ import annotations

from werkzeug.exceptions import BadRequest, GatewayTimeout, Unauthorized

from app.errors import GatewayError, PROBLEM_BASE

__all__ = ["BadPurge", "CacheOnlyIfCached", "CacheWaitTimeout", "PurgeRefused", "RevalidationFailed"]


class CacheWaitTimeout(GatewayError, GatewayTimeout):
    """This request waited for another one's upstream call to the same resource, and it did not finish in time."""

    problem = PROBLEM_BASE + "cache-wait-timeout"


class RevalidationFailed(GatewayError, GatewayTimeout):
    """A stored answer that must be revalidated (must-revalidate, no-cache...) could not be: never served stale."""

    problem = PROBLEM_BASE + "revalidation-failed"


class CacheOnlyIfCached(GatewayError, GatewayTimeout):
    """The request said only-if-cached, and no stored answer may serve it (RFC 9111 5.2.1.7)."""

    problem = PROBLEM_BASE + "only-if-cached"


class PurgeRefused(GatewayError, Unauthorized):
    """The purge endpoint needs its own bearer credential."""

    problem = PROBLEM_BASE + "purge-refused"
    extra_headers = (("WWW-Authenticate", 'Bearer realm="frontdesk-cache"'),)


class BadPurge(GatewayError, BadRequest):
    """A purge request that does not name exactly one path, prefix or tag."""

    problem = PROBLEM_BASE + "bad-purge"
