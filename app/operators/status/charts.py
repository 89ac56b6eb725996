"""Chart geometry for the page's inline SVG: computed here, drawn by the template. No chart library, no JavaScript.

Every chart is an ``<svg>`` with a ``viewBox`` and a ``<title>``, so it scales, reads in a screen reader,
and shows its numbers on hover without a script.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Bar", "Sparkline", "duration", "histogram_bars", "ratio", "sparkline"]


@dataclass(frozen=True)
class Bar:
    """One bar of a bar chart, in the chart's own units (its viewBox)."""

    x: float
    y: float
    width: float
    height: float
    title: str  # shown on hover: what the bar counts


@dataclass(frozen=True)
class Sparkline:
    """A polyline of rates over time, and its highest value (the chart's top)."""

    points: str  # the polyline's points attribute: "x,y x,y ..."
    peak: float
    width: float
    height: float


def histogram_bars(counts: Sequence[float], bounds: Sequence[float], *, width: float = 170.0,
                   height: float = 36.0, gap: float = 1.0) -> list[Bar]:
    """One bar per latency bucket (``counts`` has one more than ``bounds``: the overflow), the tallest full height.

    Heights are on a square-root scale: the usual latency distribution has one dominant bucket,
    and a linear scale would flatten the slow tail that is the reason to look at it.
    """
    slot = width / len(counts)
    tallest = max(counts, default=0.0)
    bars = []
    for index, count in enumerate(counts):
        label = f"≤ {duration(bounds[index])}" if index < len(bounds) else f"> {duration(bounds[-1])}"
        bar_height = height * math.sqrt(count / tallest) if tallest > 0 else 0.0
        if count > 0:
            bar_height = max(bar_height, 1.0)  # one request still shows
        bars.append(Bar(x=round(index * slot, 2), y=round(height - bar_height, 2), width=round(slot - gap, 2),
                        height=round(bar_height, 2), title=f"{label}: {count:g}"))
    return bars


def sparkline(values: Sequence[float], *, width: float = 240.0, height: float = 40.0) -> Sparkline:
    """A line through ``values`` spread over ``width``, zero at the bottom, the peak 2 units below the top.

    A single value (the first two readings) is a level line across the width: one point draws nothing.
    """
    peak = max(values, default=0.0)
    scale = (height - 2.0) / peak if peak > 0 else 0.0
    if len(values) == 1:
        values = [values[0], values[0]]
    step = width / (len(values) - 1) if len(values) > 1 else 0.0
    points = " ".join(f"{index * step:.1f},{height - value * scale:.1f}" for index, value in enumerate(values))
    return Sparkline(points=points, peak=peak, width=width, height=height)


def ratio(part: float, whole: float) -> float | None:
    """``part / whole`` between 0 and 1, or None when there is nothing to divide."""
    if whole <= 0:
        return None
    return min(1.0, max(0.0, part / whole))


def duration(seconds: float | None) -> str:
    """A duration the way a person reads it: 0.8 ms, 25 ms, 1.5 s."""
    if seconds is None:
        return "–"
    if seconds < 0.001:
        return f"{seconds * 1000:.2g} ms"
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    return f"{seconds:.3g} s"
