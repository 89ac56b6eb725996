"""One reading of a Redis URI for every shared state, and the client it names (plain, cluster or sentinel)."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from app.config import ConfigError

__all__ = ["SCHEMES", "RedisTarget", "client_options", "connect", "parse_redis_uri", "refresh_topology",
           "without_password"]

#: The schemes a shared state takes (the limits library's spellings, so one URI works for both).
SCHEMES = ("redis", "rediss", "unix", "redis+unix", "redis+cluster", "redis+sentinel")
_EXPECTED = ("redis://host:port/db, rediss://..., unix:///path, redis+cluster://host:port[,host:port] "
             "or redis+sentinel://host:port[,host:port]/service_name")


@dataclass(frozen=True)
class RedisTarget:
    """Where a shared state lives: one server, a cluster (seed nodes) or a sentinel-watched service."""

    kind: str  # "single", "cluster" or "sentinel"
    uri: str
    locations: tuple[tuple[str, int], ...] = ()  # cluster seed nodes or sentinels
    service: str = ""  # the sentinel service name
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never a password in a log line or a traceback
        return f"RedisTarget({self.kind}, {without_password(self.uri)!r})"


def without_password(uri: str) -> str:
    """The URI as logs and errors may show it: credentials replaced."""
    if "@" not in uri:
        return uri
    scheme, _, rest = uri.partition("://")
    return f"{scheme}://<credentials>@{rest.rpartition('@')[2]}"


def parse_redis_uri(key: str, uri: object) -> RedisTarget:
    """Check ``uri`` now (scheme, hosts, ports, service name); a bad one stops the start naming ``key``."""
    if not isinstance(uri, str):
        raise ConfigError(key, "<not a string>", _EXPECTED)
    scheme = uri.partition("://")[0]
    if "://" not in uri or scheme not in SCHEMES:
        raise ConfigError(key, without_password(uri), _EXPECTED)
    if scheme not in ("redis+cluster", "redis+sentinel"):
        try:
            # redis-py's own reading (port, database, query options), the one the client will use (untyped there).
            redis.connection.parse_url(uri.replace("redis+unix://", "unix://", 1))  # type: ignore[no-untyped-call]
        except ValueError as error:
            raise ConfigError(key, without_password(uri), f"a valid Redis URI ({error})") from None
        return RedisTarget("single", uri)
    parsed = urllib.parse.urlsplit(uri)
    netloc = parsed.netloc.rpartition("@")[2]
    locations = []
    for location in netloc.split(","):
        host, _, port = location.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(key, without_password(uri), f"host:port pairs separated by commas ({_EXPECTED})")
        locations.append((host, int(port)))
    service = parsed.path.strip("/")
    if scheme == "redis+sentinel" and not service:
        raise ConfigError(key, without_password(uri), "a service name after the sentinels (.../mymaster)")
    if scheme == "redis+cluster" and service:
        raise ConfigError(key, without_password(uri), "no database or path: a cluster has database 0 only")
    username = urllib.parse.unquote(parsed.username) if parsed.username else None
    password = urllib.parse.unquote(parsed.password) if parsed.password else None
    return RedisTarget("cluster" if scheme == "redis+cluster" else "sentinel", uri, tuple(locations), service,
                       username, password)


def client_options(timeout: float) -> dict[str, Any]:
    """redis-py options for a guarded client (the rate limiter hands them to limits' storage too)."""
    # redis-py waits forever and retries by default: one bounded attempt, the caller's guard retries later.
    return {"socket_connect_timeout": timeout, "socket_timeout": timeout, "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0}


def connect(target: RedisTarget, timeout: float) -> redis.Redis | RedisCluster:
    """A client of ``target`` with a socket timeout on every call and no retries of its own.

    A cluster client reads the slot map from a seed node here: call it where an outage is handled.
    """
    options = client_options(timeout)
    if target.username:
        options["username"] = target.username
    if target.password:
        options["password"] = target.password
    if target.kind == "single":
        return redis.Redis.from_url(target.uri.replace("redis+unix://", "unix://", 1), **options)
    if target.kind == "cluster":
        # No retry of its own: a failed call refreshes the slot map, the guard's next probe uses it.
        nodes = [ClusterNode(host, port) for host, port in target.locations]  # type: ignore[no-untyped-call]
        cluster: RedisCluster = RedisCluster(startup_nodes=nodes, **options)
        return cluster
    # redis-py leaves Sentinel untyped; master_for gives a Redis that asks the sentinels again after a failure.
    sentinel = Sentinel(list(target.locations), sentinel_kwargs=options, **options)  # type: ignore[no-untyped-call]
    master: redis.Redis = sentinel.master_for(target.service)  # type: ignore[no-untyped-call]
    return master


def refresh_topology(client: object) -> None:
    """Make a cluster client re-read the slot map (a no-op for any other client).

    redis-py refreshes it only when a call fails: a worker whose last refresh came before a replica's
    promotion keeps sending that slot's keys to the dead primary until one of them fails. The outage
    guard calls this before each probe, so the probe that ends an outage finds the new primaries.
    """
    if isinstance(client, RedisCluster):
        client.nodes_manager.initialize()
