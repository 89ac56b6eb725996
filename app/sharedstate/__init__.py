"""What instances share through Redis, however it is deployed: one URI parser and client factory, one outage policy.

The rate limiter and the cache's shared tier both take ``redis://``, ``rediss://``, ``unix://``,
``redis+unix://``, ``redis+cluster://host:port[,host:port]`` and ``redis+sentinel://host:port[,...]/service``,
checked by :func:`parse_redis_uri`; both call Redis through an :class:`OutageGuard` (a deadline per call,
up/down with a retry interval, one log line each way).
"""

from app.sharedstate.outage import REDIS_ERRORS, OutageGuard, Unreachable
from app.sharedstate.uri import (
    SCHEMES,
    RedisTarget,
    client_options,
    connect,
    parse_redis_uri,
    refresh_topology,
    without_password,
)

__all__ = ["REDIS_ERRORS", "SCHEMES", "OutageGuard", "RedisTarget", "Unreachable", "client_options", "connect",
           "parse_redis_uri", "refresh_topology", "without_password"]
