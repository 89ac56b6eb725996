"""The in-memory batch writes exactly what prometheus-client's own calls would have written."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.observability.metrics import BUCKETS
from app.observability.metrics_batch import Batch


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect() if family.name == name for s in family.samples
        if not s.name.endswith("_created")
    }


def test_batched_histogram_equals_direct_observations() -> None:
    values = [0.0, 0.0001, 0.0005, 0.00051, 0.003, 0.1, 0.75, 2.5, 59.0, 60.0, 61.0, 1e6]
    direct, batched = CollectorRegistry(), CollectorRegistry()
    expected = Histogram("h", "h", ("r",), buckets=BUCKETS, registry=direct).labels("x")
    child = Histogram("h", "h", ("r",), buckets=BUCKETS, registry=batched).labels("x")
    batch = Batch(interval=3600)
    for value in values:
        expected.observe(value)
        batch.observe(child, BUCKETS, value)
    assert _samples(batched, "h")[("h_count", (("r", "x"),))] == 0  # nothing written before a flush
    batch.flush()
    assert _samples(batched, "h") == _samples(direct, "h")


def test_counts_and_the_last_gauge_value_are_written_once_and_only_once() -> None:
    registry = CollectorRegistry()
    counter = Counter("c", "c", registry=registry)
    gauge = Gauge("g", "g", registry=registry)
    batch = Batch(interval=3600)
    for _ in range(5):
        batch.count(counter)
    batch.count(counter, 2.5)
    batch.set(gauge, 3)
    batch.set(gauge, 1)
    batch.flush()
    batch.flush()
    assert registry.get_sample_value("c_total") == 7.5
    assert registry.get_sample_value("g") == 1


def test_the_flusher_writes_without_being_asked() -> None:
    registry = CollectorRegistry()
    counter = Counter("c", "c", registry=registry)
    batch = Batch(interval=0.05)
    batch.count(counter)
    deadline = time.monotonic() + 5
    while registry.get_sample_value("c_total") != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert registry.get_sample_value("c_total") == 1
