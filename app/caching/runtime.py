"""One worker's cache: the tiers, the single-flight table, and the lookup → fetch → store steps."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.caching.entry import CachedResponse, VarySpec
from app.caching.local import Journal, LocalStore
from app.caching.refresh import Refreshes
from app.caching.settings import CacheSettings
from app.caching.shared import SharedStore

__all__ = ["CacheRuntime", "Flight"]

Item = CachedResponse | VarySpec


@dataclass
class Flight:
    """One upstream call that concurrent misses for the same key wait for."""

    done: threading.Event = field(default_factory=threading.Event)
    waiters: int = 0
    # The answer could not be shared (private, credentials, Set-Cookie...): waiters go upstream themselves
    # at once. A failure leaves it False, so waiters take over one at a time instead.
    pass_through: bool = False
    # The upstream failed and the leader served the stale entry (stale-if-error): waiters may do the same.
    stale_error: bool = False


class CacheRuntime:
    """Tiers and flights of one app (one worker); the clock is injected for tests."""

    def __init__(self, settings: CacheSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.local = LocalStore(settings.max_bytes, clock)
        self.journal = Journal(settings.journal, self.local)
        self.shared = (SharedStore(settings.shared, settings.shared_timeout, settings.shared_retry, clock)
                       if settings.shared is not None else None)
        self.flights: dict[str, Flight] = {}
        self.refreshes = Refreshes(settings.wait_timeout)
        self.in_use: bool | None = None  # whether any view of the app is cached; None until first needed

    def get(self, key: str) -> Item | None:
        """From the local tier, else the shared one (then kept locally for a while)."""
        item = self.local.get(key)
        if item is not None or self.shared is None:
            return item
        item = self.shared.get(key)
        if isinstance(item, CachedResponse) and self.local.marks.covers(item):
            return None  # this instance purged it; the shared copy will go with the purge's delete
        if item is not None:
            self.local.set(key, self._local_copy(item))
        return item

    def set(self, key: str, item: Item) -> None:
        """Into both tiers."""
        self.local.set(key, self._local_copy(item))
        if self.shared is not None:
            self.shared.set(key, item)

    def _local_copy(self, item: Item) -> Item:
        # With a shared tier, another instance's purge reaches this worker's copy only by expiry.
        if self.shared is None:
            return item
        return dataclasses.replace(item, expires=min(item.expires, self.clock() + self.settings.local_ttl))

    def drop(self, key: str) -> None:
        """Forget one entry in both tiers."""
        self.local.pop(key)
        if self.shared is not None:
            self.shared.delete(key)

    def release(self, key: str, flight: Flight) -> None:
        """End a flight: forget it (unless another took its key) and wake its waiters."""
        if self.flights.get(key) is flight:
            del self.flights[key]
        flight.done.set()

    def close(self) -> None:
        """End what this runtime runs in the background (stale-while-revalidate refreshes)."""
        self.refreshes.close()

    def purge(self, kind: str, value: str) -> int | None:
        """Purge a path, prefix or tag in every worker of this instance and in the shared tier."""
        self.journal.publish(kind, value, self.clock())
        return self.shared.purge(kind, value) if self.shared is not None else None
