"""Composition: parallel upstream calls, partial answers, shaping, XML to JSON (through app.proxy's public API).

Views import ``Call`` and ``parallel`` from here (docs/aggregation.md); declared aggregates are
``app.compose.aggregate``.
"""

from __future__ import annotations

from app.compose.calls import (
    DEFAULT_CONCURRENCY,
    AggregateFailed,
    AggregateTimeout,
    Call,
    PartFailure,
    Results,
    parallel,
)

__all__ = [
    "DEFAULT_CONCURRENCY", "AggregateFailed", "AggregateTimeout", "Call", "PartFailure", "Results", "parallel",
]
