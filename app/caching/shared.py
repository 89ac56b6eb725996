"""The optional shared tier in Redis (one server, a cluster or a sentinel-watched service): entries any worker
or instance stored, the fleet's single-flight locks, and the indexes purges read instead of scanning.

Every call goes through the tier's :class:`OutageGuard` (app/sharedstate): a deadline per call, and after
a failure the tier is left alone for ``shared_retry`` seconds, so an outage costs one timeout per worker,
not one per request; every method then degrades to "nothing there" and the local tier serves.

Keys and slots (decisions 94-96): an entry and its lock are one key each; a path's and a tag's index
are one set each; the paths stored so far are two sorted sets under one hash tag, ``{frontdesk:cache:paths}``,
so the script that records a path and forgets expired ones touches one slot. A prefix purge reads
that sorted set by lexical range: no SCAN, which on a cluster would have to visit every primary.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar, cast

from redis import Redis
from redis.cluster import RedisCluster

from app.caching.entry import CachedResponse, VarySpec, decode, encode
from app.sharedstate import OutageGuard, RedisTarget, Unreachable, connect, refresh_topology

__all__ = ["PATHS", "SharedStore"]

Item = CachedResponse | VarySpec
_T = TypeVar("_T")
_PREFIX = "frontdesk:cache:"
#: Every path with a stored entry (all scores 0, read by lexical range) and when each one's last entry expires.
PATHS = (_PREFIX + "{paths}", _PREFIX + "{paths}:expiry")
_PRUNE_EACH = 16  # expired paths a store forgets on the way: the sorted sets stay the size of what lives

# KEYS: the two PATHS sets. ARGV: path, its entry's expiry (ms), now (ms).
_RECORD_PATH = """
redis.call('zadd', KEYS[1], 0, ARGV[1])
redis.call('zadd', KEYS[2], 'GT', ARGV[2], ARGV[1])
local gone = redis.call('zrangebyscore', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, %d)
if #gone > 0 then
    redis.call('zrem', KEYS[1], unpack(gone))
    redis.call('zrem', KEYS[2], unpack(gone))
end
return #gone
""" % _PRUNE_EACH
# KEYS: one index. Its members, and the index gone in the same step (a store meanwhile starts a new one).
_TAKE = """
local members = redis.call('smembers', KEYS[1])
redis.call('del', KEYS[1])
return members
"""
# KEYS: a lock. ARGV: the holder's token, and "" (delete: waiters look again) or milliseconds of "pass".
_RELEASE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then
    return 0
end
if ARGV[2] == '' then
    redis.call('del', KEYS[1])
else
    redis.call('set', KEYS[1], 'pass', 'PX', ARGV[2])
end
return 1
"""

log = logging.getLogger("frontdesk.cache")


class SharedStore:
    """Redis as a second tier; every method degrades to "nothing there" while Redis is unreachable."""

    def __init__(self, target: RedisTarget, timeout: float, retry: float, clock: Callable[[], float] = time.time,
                 guard: OutageGuard | None = None) -> None:
        self.target = target
        self.timeout = timeout
        self.clock = clock
        self.guard = guard or OutageGuard("shared cache", "serving from each worker's local tier until it answers",
                                          retry, timeout, logger=log, on_probe=lambda: refresh_topology(self._client))
        self._client: Redis | RedisCluster | None = None
        # One greenlet builds the client (a cluster's reads the slot map); the others wait for it, in their deadline.
        self._building = threading.Lock()
        self._held: dict[str, bytes] = {}  # the locks this worker holds: key -> its token

    @property
    def available(self) -> bool:
        """False while a failure is being waited out."""
        return self.guard.up

    def _redis(self) -> Redis | RedisCluster:
        # Built on first use, under the guard: a cluster client reads the slot map when it is made.
        if self._client is None:
            with self._building:
                if self._client is None:
                    self._client = connect(self.target, self.timeout)
        return self._client

    def _run(self, work: Callable[[Redis | RedisCluster], _T], degraded: _T) -> _T:
        try:
            return self.guard.call(lambda: work(self._redis()))
        except Unreachable:
            return degraded

    def get(self, key: str) -> Item | None:
        """An item, or None when absent, expired, unreadable, or Redis is down."""
        data = self._run(lambda client: client.get(_PREFIX + key), None)
        if not isinstance(data, bytes):
            return None
        item = decode(data)
        return item if item is not None and item.expires > self.clock() else None

    def set(self, key: str, item: Item) -> None:
        """Store an item until it expires; a response is indexed by path and tags, and its path recorded."""
        now = self.clock()
        ttl = math.ceil((item.expires - now) * 1000)
        if ttl <= 0:
            return

        def store(client: Redis | RedisCluster) -> None:
            # Not a transaction: on a cluster these keys live in different slots (each command is one key).
            with client.pipeline(transaction=False) as pipe:
                pipe.set(_PREFIX + key, encode(item), px=ttl)
                if isinstance(item, CachedResponse):
                    for index in (f"path:{item.path}", *(f"tag:{tag}" for tag in item.tags)):
                        pipe.sadd(_PREFIX + index, key)
                        # An index lives as long as its longest entry; stale members point at nothing.
                        pipe.pexpire(_PREFIX + index, ttl, gt=True)
                        pipe.pexpire(_PREFIX + index, ttl, nx=True)
                    # EVAL by name: a cluster's pipeline has no eval() but routes the command by its keys.
                    pipe.execute_command("EVAL", _RECORD_PATH, 2, *PATHS, item.path, int(item.expires * 1000),
                                         int(now * 1000))
                pipe.execute()

        self._run(store, None)

    def delete(self, key: str) -> None:
        """Forget one item (its index entries point at nothing and expire with their index)."""
        self._run(lambda client: client.delete(_PREFIX + key), None)

    def claim(self, key: str, seconds: float) -> str:
        """Fleet-wide single flight: "lead" (this caller fetches; also when Redis is down), "pass" or "busy"."""
        lock = _PREFIX + "lock:" + key
        token = b"busy:" + os.urandom(12).hex().encode()

        def take(client: Redis | RedisCluster) -> bytes | None:
            if client.set(lock, token, nx=True, px=math.ceil(seconds * 1000)):
                return token
            return cast("bytes | None", client.get(lock)) or b""

        state = self._run(take, None)
        if state is None:
            return "lead"  # Redis is down: each worker is its own fleet until it is back
        if state == token:
            self._held[key] = token
            return "lead"
        if state == b"":  # the lock ended between the two calls
            return self.claim(key, seconds) if self.available else "lead"
        return "pass" if state == b"pass" else "busy"

    def release(self, key: str, shareable: bool, pass_seconds: float) -> None:
        """End this worker's flight, if it holds the key's lock: waiters look again (the answer was stored, or
        failed), or go upstream themselves for ``pass_seconds`` ("pass"). A lock another caller took after
        ours expired is left alone; without a lock (Redis was down) there is nothing to do."""
        token = self._held.pop(key, None)
        if token is None:
            return
        lock = _PREFIX + "lock:" + key
        argument = "" if shareable else str(math.ceil(pass_seconds * 1000))
        self._run(lambda client: client.eval(_RELEASE, 1, lock, token, argument), None)

    def purge(self, kind: str, value: str) -> int:
        """Delete the entries of a path, a path prefix or a tag; how many keys went (-1: Redis is down)."""
        return self._run(lambda client: _purge(client, kind, value), -1)


def _purge(client: Redis | RedisCluster, kind: str, value: str) -> int:
    if kind == "prefix":
        # Every path starting with the prefix: UTF-8 never contains the byte 0xff, so it closes the range.
        start = b"[" + value.encode()
        paths = cast("list[bytes]", client.zrangebylex(PATHS[0], start, b"(" + value.encode() + b"\xff"))
        indexes = [(_PREFIX + "path:").encode() + path for path in paths]
    else:
        indexes = [(_PREFIX + f"{kind}:{value}").encode()]
    with client.pipeline(transaction=False) as pipe:
        for index in indexes:
            pipe.execute_command("EVAL", _TAKE, 1, index)
        taken = cast("list[list[bytes]]", pipe.execute()) if indexes else []
    members = {_PREFIX.encode() + member for found in taken for member in found}
    # A cluster's client splits a many-key DEL by slot; one server deletes them in one call.
    deleted = cast(int, client.delete(*members)) if members else 0
    return deleted + sum(1 for found in taken if found)
