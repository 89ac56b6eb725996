"""The worker's own tier: a TLRUCache bounded by bytes, and the purge marks every worker applies.

A purge or an invalidation does not search the cache: it leaves a *mark* (path, prefix or tag,
with the time), and an entry whose upstream call went out before a matching mark is a miss.
The marks travel between one instance's workers through an append-only journal file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable

from cachetools import TLRUCache

from app.observability import metrics
from app.caching.entry import CachedResponse, VarySpec, size_of

__all__ = ["Journal", "LocalStore", "Marks"]

Item = CachedResponse | VarySpec
KINDS = ("path", "prefix", "tag")
_ROTATE_BYTES = 1 << 20

log = logging.getLogger("frontdesk.cache")


class Marks:
    """Purges by path, prefix and tag, remembered as long as an entry they cover could still live."""

    def __init__(self) -> None:
        self.paths: dict[str, float] = {}
        self.tags: dict[str, float] = {}
        self.prefixes: dict[str, float] = {}
        self.horizon = 0.0  # the longest TTL stored so far: marks older than that cover nothing

    def add(self, kind: str, value: str, at: float) -> None:
        """Remember one purge."""
        marks = {"path": self.paths, "prefix": self.prefixes, "tag": self.tags}[kind]
        marks[value] = max(at, marks.get(value, 0.0))
        if len(self.paths) + len(self.tags) + len(self.prefixes) > 4096:
            self.prune(at)

    def prune(self, now: float) -> None:
        """Forget marks that no live entry can predate."""
        oldest = now - self.horizon - 1
        for marks in (self.paths, self.tags, self.prefixes):
            for value in [value for value, at in marks.items() if at < oldest]:
                del marks[value]

    def covers(self, entry: CachedResponse) -> bool:
        """Whether a purge or invalidation came after this entry's upstream call went out."""
        at = entry.requested_at
        if self.paths.get(entry.path, -1.0) >= at:
            return True
        if any(self.tags.get(tag, -1.0) >= at for tag in entry.tags):
            return True
        return any(mark >= at and entry.path.startswith(prefix) for prefix, mark in self.prefixes.items())


class LocalStore:
    """Entries and vary specs of one worker, bounded by bytes, each expiring at its own time."""

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.marks = Marks()
        # getsizeof charges each item its bytes; an item larger than the whole cache is refused.
        self._cache: TLRUCache[str, Item] = TLRUCache(
            maxsize=max_bytes, ttu=lambda _key, item, _now: item.expires, timer=clock, getsizeof=size_of)
        # cachetools is not thread-safe; under gevent nothing here yields, but threads may share an app.
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Bytes currently charged."""
        with self._lock:
            return int(self._cache.currsize)

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    def get(self, key: str) -> Item | None:
        """A live item, or None (an entry a later purge covers is dropped on the way)."""
        with self._lock:
            item = self._cache.get(key)
            if isinstance(item, CachedResponse) and self.marks.covers(item):
                del self._cache[key]
                return None
            return item

    def set(self, key: str, item: Item) -> None:
        """Store an item; a too-large one is simply not stored."""
        with self._lock:
            if isinstance(item, CachedResponse):
                self.marks.horizon = max(self.marks.horizon, item.expires - self.clock())
            before = len(self._cache) + (0 if key in self._cache else 1)
            try:
                self._cache[key] = item
            except ValueError:
                return  # larger than max_bytes
            for _ in range(before - len(self._cache)):  # what made room for it (expired or least recent)
                metrics.record_cache(None, "eviction")
            metrics.set_cache_bytes(int(self._cache.currsize))

    def pop(self, key: str) -> None:
        """Forget one item."""
        with self._lock:
            self._cache.pop(key, None)

    def clear(self) -> None:
        """Forget everything (a journal this worker could not follow)."""
        with self._lock:
            self._cache.clear()


class Journal:
    """An append-only file of purge marks shared by one instance's workers; each reads what it has not seen."""

    def __init__(self, path: str, store: LocalStore) -> None:
        self.path = path
        self.store = store
        self._position = (-1, 0)  # (inode, offset) read so far
        try:
            stat = os.stat(path)
            self._position = (stat.st_ino, stat.st_size)  # earlier marks predate this worker's entries
        except FileNotFoundError:
            pass

    def publish(self, kind: str, value: str, at: float) -> None:
        """Mark here at once, and append for the other workers."""
        self.store.marks.add(kind, value, at)
        line = json.dumps([kind, value, at]).encode() + b"\n"
        try:
            # O_APPEND: each short write lands whole at the end, whichever worker writes.
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, line)
                size = os.fstat(descriptor).st_size
            finally:
                os.close(descriptor)
            if size > _ROTATE_BYTES:
                # A new inode tells every worker to drop its whole local tier: over-invalidating is safe.
                os.replace(self._fresh_file(), self.path)
        except OSError as error:
            log.warning("cache journal unavailable", extra={"fields": {"path": self.path, "cause": str(error)}})

    def _fresh_file(self) -> str:
        fresh = f"{self.path}.{os.getpid()}"
        os.close(os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        return fresh

    def poll(self) -> None:
        """Apply the marks other workers appended since the last look (one stat when there are none)."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return
        inode, offset = self._position
        if (stat.st_ino, stat.st_size) == self._position:
            return
        if stat.st_ino != inode and inode != -1 or stat.st_size < offset:
            self.store.clear()
            offset = 0
        elif stat.st_ino != inode:
            offset = 0
        try:
            with open(self.path, "rb") as file:
                file.seek(offset)
                data = file.read(stat.st_size - offset)
        except OSError:
            return
        complete = data.rfind(b"\n") + 1  # a line being written is read next time
        for line in data[:complete].splitlines():
            try:
                kind, value, at = json.loads(line)
            except ValueError:
                continue
            if kind in KINDS and isinstance(value, str) and isinstance(at, (int, float)):
                self.store.marks.add(kind, value, float(at))
        self._position = (stat.st_ino, offset + complete)
