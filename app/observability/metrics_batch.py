"""Metric updates gathered in memory and written to prometheus-client at most once a second.

In multiprocess mode every ``inc`` or ``observe`` is a lock, a pid check and a write into a
memory-mapped file; a proxied request made eight of them, the largest part of the metrics'
cost (docs/decisions.md). Here a request adds to plain dictionaries and a background flusher
writes the sums: a scrape sees another worker's counts at most ``interval`` seconds late, and
the scraping worker's own counts exactly (the endpoint flushes first). A worker that exits
normally flushes at exit; one killed with SIGKILL loses at most its last interval.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any
from app.internals import switch

__all__ = ["Batch"]

_HISTOGRAMS = switch("prometheus-histogram")


class Batch:
    """Pending increments, histogram observations and gauge values, keyed by metric child."""

    def __init__(self, interval: float = 1.0) -> None:
        """``interval``: seconds between two flushes."""
        self.interval = interval
        self._lock = threading.Lock()
        self._counts: dict[Any, float] = {}
        self._histograms: dict[Any, list[float]] = {}
        self._gauges: dict[Any, float] = {}
        self._flusher: threading.Thread | None = None
        # A forked child starts with nothing pending and its own flusher.
        os.register_at_fork(after_in_child=self._forget)

    def count(self, child: Any, amount: float = 1.0) -> None:
        """Add ``amount`` to a counter child."""
        with self._lock:
            self._counts[child] = self._counts.get(child, 0.0) + amount
        if self._flusher is None:
            self._start()

    def observe(self, child: Any, bounds: Sequence[float], value: float) -> None:
        """One observation of a histogram child whose upper bounds (without +Inf) are ``bounds``."""
        if not _HISTOGRAMS.on:  # prometheus-client is not the version this was written for (app/internals.py)
            child.observe(value)
            return
        index = bisect_left(bounds, value)  # the first bucket whose bound is >= value, as observe()
        with self._lock:
            pending = self._histograms.get(child)
            if pending is None:
                pending = self._histograms[child] = [0.0] * (len(bounds) + 2)
            pending[0] += value
            pending[index + 1] += 1
        if self._flusher is None:
            self._start()

    def set(self, child: Any, value: float) -> None:
        """A gauge child's current value (the last one set before a flush is written)."""
        with self._lock:
            self._gauges[child] = value
        if self._flusher is None:
            self._start()

    def flush(self) -> None:
        """Write everything pending to the metric children."""
        with self._lock:
            counts, self._counts = self._counts, {}
            histograms, self._histograms = self._histograms, {}
            gauges, self._gauges = self._gauges, {}
        for child, amount in counts.items():
            child.inc(amount)
        for child, pending in histograms.items():
            # prometheus-client has no public call for "n observations in bucket i"; these are
            # the two attributes its own observe() writes (checked against the pinned version).
            child._sum.inc(pending[0])
            for index, number in enumerate(pending[1:]):
                if number:
                    child._buckets[index].inc(number)
        for child, value in gauges.items():
            child.set(value)

    def _start(self) -> None:
        with self._lock:
            if self._flusher is not None:
                return
            # Under gevent's patching this thread is a greenlet of the worker's own loop.
            self._flusher = threading.Thread(target=self._run, name="frontdesk-metrics-flush", daemon=True)
        self._flusher.start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._counts, self._histograms, self._gauges = {}, {}, {}
        self._flusher = None
