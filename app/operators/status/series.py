"""A short time series of the request counters, sampled when the page is viewed, for rates and the sparkline.

Counters only tell totals; a rate needs two readings in time. Sampling in the background would read
every worker's metric files in every worker all the time, watched or not, so the page samples itself:
each view adds one reading (at most one a second). The readings are of the summed counters, so any
worker's series describes the whole gateway; only its sampling instants are its own.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from app.operators.status.traffic import Traffic

__all__ = ["RateSeries", "Reading"]


@dataclass(frozen=True)
class Reading:
    """The counters at one moment."""

    at: float  # the series' clock (monotonic seconds)
    requests: float
    server_errors: float
    by_route: Mapping[str, float]


class RateSeries:
    """This worker's last readings: rates over ``window`` seconds and per-interval points for the sparkline."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, spacing: float = 1.0, keep: int = 90,
                 window: float = 60.0) -> None:
        self.clock = clock
        self.spacing = spacing
        self.window = window
        self._readings: deque[Reading] = deque(maxlen=keep)

    def record(self, traffic: Traffic) -> None:
        """Add a reading of ``traffic`` now, unless the last one is less than ``spacing`` old."""
        now = self.clock()
        if self._readings and now - self._readings[-1].at < self.spacing:
            return
        self._readings.append(Reading(now, traffic.requests, traffic.server_errors,
                                      {name: route.requests for name, route in traffic.routes.items()}))

    def rate(self, route: str | None = None) -> float | None:
        """Requests per second (on ``route``, or all) over the window; None before a second reading."""
        baseline = self._baseline()
        if baseline is None:
            return None
        latest = self._readings[-1]
        if route is None:
            return _per_second(latest.requests - baseline.requests, latest.at - baseline.at)
        return _per_second(latest.by_route.get(route, 0.0) - baseline.by_route.get(route, 0.0),
                           latest.at - baseline.at)

    def error_rate(self) -> float | None:
        """5xx answers per second over the window; None before a second reading."""
        baseline = self._baseline()
        if baseline is None:
            return None
        latest = self._readings[-1]
        return _per_second(latest.server_errors - baseline.server_errors, latest.at - baseline.at)

    def points(self) -> list[float]:
        """Requests per second between consecutive readings, oldest first."""
        readings = list(self._readings)
        return [_per_second(b.requests - a.requests, b.at - a.at) for a, b in zip(readings, readings[1:])]

    def span(self) -> float:
        """Seconds from the oldest reading to the newest."""
        return self._readings[-1].at - self._readings[0].at if self._readings else 0.0

    def _baseline(self) -> Reading | None:
        """The oldest reading inside the window before the latest; else the one just before it."""
        if len(self._readings) < 2:
            return None
        latest = self._readings[-1]
        for reading in self._readings:
            if reading is not latest and latest.at - reading.at <= self.window:
                return reading
        return self._readings[-2]


def _per_second(delta: float, seconds: float) -> float:
    # A counter can only shrink when the files of dead workers are cleaned up: never a negative rate.
    return max(0.0, delta) / seconds if seconds > 0 else 0.0
