"""The optional shared tier in Redis: entries any worker or instance stored, with path and tag indexes.

Every call has short socket timeouts; a failure logs once, then the tier is left alone for
``shared_retry`` seconds, so an outage costs one timeout per worker, not one per request.
"""

from __future__ import annotations

from typing import cast

import logging
import math
import time
from collections.abc import Callable

import redis

from app.caching.entry import CachedResponse, VarySpec, decode, encode

__all__ = ["SharedStore"]

Item = CachedResponse | VarySpec
_PREFIX = "frontdesk:cache:"

log = logging.getLogger("frontdesk.cache")


class SharedStore:
    """Redis as a second tier; every method degrades to "nothing there" while Redis is unreachable."""

    def __init__(self, uri: str, timeout: float, retry: float, clock: Callable[[], float] = time.time) -> None:
        self.client = redis.Redis.from_url(uri, socket_connect_timeout=timeout, socket_timeout=timeout,
                                           retry_on_timeout=False, health_check_interval=0)
        self.retry = retry
        self.clock = clock
        self._down_until = 0.0

    @property
    def available(self) -> bool:
        """False while a recent failure is being waited out."""
        return time.monotonic() >= self._down_until

    def _failed(self, error: redis.RedisError) -> None:
        if self.available:
            log.warning("shared cache unavailable: serving from the local tier",
                        extra={"fields": {"cause": type(error).__name__, "retry_in": self.retry}})
        self._down_until = time.monotonic() + self.retry

    def get(self, key: str) -> Item | None:
        """An item, or None when absent, expired, unreadable, or Redis is down."""
        if not self.available:
            return None
        try:
            data = self.client.get(_PREFIX + key)
        except redis.RedisError as error:
            self._failed(error)
            return None
        if not isinstance(data, bytes):
            return None
        item = decode(data)
        return item if item is not None and item.expires > self.clock() else None

    def set(self, key: str, item: Item) -> None:
        """Store an item until it expires, indexed by path and tags when it is a response."""
        if not self.available:
            return
        ttl = math.ceil((item.expires - self.clock()) * 1000)
        if ttl <= 0:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.set(_PREFIX + key, encode(item), px=ttl)
                if isinstance(item, CachedResponse):
                    for index in (f"path:{item.path}", *(f"tag:{tag}" for tag in item.tags)):
                        pipe.sadd(_PREFIX + index, key)
                        # An index lives as long as its longest entry; stale members point at nothing.
                        pipe.pexpire(_PREFIX + index, ttl, gt=True)
                        pipe.pexpire(_PREFIX + index, ttl, nx=True)
                pipe.execute()
        except redis.RedisError as error:
            self._failed(error)

    def delete(self, key: str) -> None:
        """Forget one item (its index entries point at nothing and expire with their index)."""
        if not self.available:
            return
        try:
            self.client.delete(_PREFIX + key)
        except redis.RedisError as error:
            self._failed(error)

    def claim(self, key: str, seconds: float) -> str:
        """Fleet-wide single flight: "lead" (this caller fetches; also when Redis is down), "pass" or "busy"."""
        if not self.available:
            return "lead"
        lock = _PREFIX + "lock:" + key
        try:
            if self.client.set(lock, b"busy", nx=True, px=math.ceil(seconds * 1000)):
                return "lead"
            state = self.client.get(lock)
        except redis.RedisError as error:
            self._failed(error)
            return "lead"
        if state is None:
            return self.claim(key, seconds) if self.available else "lead"
        return "pass" if state == b"pass" else "busy"

    def release(self, key: str, shareable: bool, pass_seconds: float) -> None:
        """End a flight: waiters retry (the answer was stored, or failed), or go upstream ("pass") for a while."""
        if not self.available:
            return
        lock = _PREFIX + "lock:" + key
        try:
            if shareable:
                self.client.delete(lock)
            else:
                self.client.set(lock, b"pass", px=math.ceil(pass_seconds * 1000))
        except redis.RedisError as error:
            self._failed(error)

    def purge(self, kind: str, value: str) -> int:
        """Delete the entries of a path, a path prefix or a tag; how many keys went (-1: Redis is down)."""
        try:
            if kind == "prefix":
                pattern = _PREFIX + "path:" + _glob_escape(value) + "*"
                indexes = [_bytes(name) for name in self.client.scan_iter(match=pattern, count=500)]
            else:
                indexes = [(_PREFIX + f"{kind}:{value}").encode()]
            deleted = 0
            for index in indexes:
                # redis-py types its sync client's answers as "Awaitable | value"; this client is sync.
                stored = cast("set[bytes]", self.client.smembers(index))
                members = [_PREFIX.encode() + _bytes(member) for member in stored]
                deleted += cast(int, self.client.delete(*members, index) if members else self.client.delete(index))
            return deleted
        except redis.RedisError as error:
            self._failed(error)
            return -1


def _glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
