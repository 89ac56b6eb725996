"""Scenarios: contenders under wrk in interleaved rounds, and the streamed download with its memory watch."""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any, TypeVar

from bench.harness.load import WrkResult, run_wrk
from bench.harness.procs import Service, rss_mb

__all__ = ["Contender", "Scenario", "download", "fetch_once", "rotated", "run_scenario"]

T = TypeVar("T")


@dataclass(frozen=True)
class Contender:
    """One server measured in a scenario, and the request it is sent."""

    name: str
    service: Service
    path: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The full URL wrk requests."""
        return self.service.url + self.path


@dataclass(frozen=True)
class Scenario:
    """Contenders measured side by side with the same load."""

    key: str
    title: str
    connections: int
    contenders: tuple[Contender, ...]
    #: At least this many seconds per contender and round: a 1 s upstream needs several round trips per run.
    min_seconds: int = 0


def fetch_once(contender: Contender) -> int:
    """One request, its body read; the status (the route works before wrk hammers it)."""
    host, port = contender.service.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", contender.path, headers=contender.headers)
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _figures(runs: list[tuple[WrkResult, float]], rss: list[float]) -> dict[str, Any]:
    """Medians over the rounds; errors are summed (one error in any round counts)."""
    return {
        "rps": _median([result.rps for result, _ in runs]),
        "p50_ms": _median([result.p50_ms for result, _ in runs]),
        "p90_ms": _median([result.p90_ms for result, _ in runs]),
        "p99_ms": _median([result.p99_ms for result, _ in runs]),
        "cpu_us_per_request": _median([cpu for _, cpu in runs]),
        "requests": sum(result.requests for result, _ in runs),
        "socket_errors": sum(result.socket_errors for result, _ in runs),
        "http_errors": sum(result.http_errors for result, _ in runs),
        "rss_mb_per_worker": round(_median(rss), 1),
        "rounds": [{"rps": round(result.rps, 1), "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
                    "cpu_us_per_request": round(cpu, 1), "requests": result.requests,
                    "socket_errors": result.socket_errors, "http_errors": result.http_errors}
                   for result, cpu in runs],
    }


def rotated(items: Sequence[T], round_: int) -> list[T]:
    """``items`` in the order of round ``round_``: each round starts one further along.

    No contender always runs right after the same neighbour, whose wrk stop (its connections closed,
    its upstream connections dropped) is still being cleaned up.
    """
    start = round_ % len(items)
    return [*items[start:], *items[:start]]


def run_scenario(scenario: Scenario, script: Path, rounds: int, seconds: int, warmup: int) -> dict[str, Any]:
    """Every contender once per round, rounds interleaved in a rotating order; medians per contender.

    CPU per request is the delta of utime + stime over the contender's processes (master and workers)
    divided by the requests wrk completed: the server's own cost, whatever the load generator's.
    """
    seconds = max(seconds, scenario.min_seconds)
    for contender in scenario.contenders:
        status = fetch_once(contender)
        if status != 200:
            raise RuntimeError(f"{scenario.key}: {contender.name} answered {status} to {contender.path}")
        if warmup:
            run_wrk(script, contender.url, scenario.connections, warmup, contender.headers)
    runs: dict[str, list[tuple[WrkResult, float]]] = {contender.name: [] for contender in scenario.contenders}
    for round_ in range(rounds):
        for contender in rotated(scenario.contenders, round_):
            contender.service.check_alive()
            before = contender.service.cpu_seconds()
            result = run_wrk(script, contender.url, scenario.connections, seconds, contender.headers)
            cpu = contender.service.cpu_seconds() - before
            runs[contender.name].append((result, cpu / result.requests * 1e6 if result.requests else 0.0))
    return {
        "title": scenario.title,
        "connections": scenario.connections,
        "contenders": {contender.name: _figures(runs[contender.name], contender.service.worker_rss_mb())
                       for contender in scenario.contenders},
    }


class _PeakRss:
    """Samples the RSS of some processes every few milliseconds from a thread; the highest per process."""

    def __init__(self, pids: list[int]) -> None:
        self.peaks = {pid: rss_mb(pid) for pid in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            for pid in self.peaks:
                self.peaks[pid] = max(self.peaks[pid], rss_mb(pid))

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _download_once(contender: Contender, expected: int) -> tuple[float, float]:
    """Stream the whole body, in 1 MiB reads; (seconds, peak RSS growth of any worker in MiB)."""
    pids = contender.service.workers()
    before = {pid: rss_mb(pid) for pid in pids}
    host, port = contender.service.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    with _PeakRss(pids) as peak:
        started = time.perf_counter()
        connection.request("GET", contender.path)
        answer = connection.getresponse()
        received = 0
        while chunk := answer.read(1 << 20):
            received += len(chunk)
        elapsed = time.perf_counter() - started
    connection.close()
    if answer.status != 200 or received != expected:
        raise RuntimeError(f"download via {contender.name}: status {answer.status}, {received} of {expected} bytes")
    return elapsed, max(peak.peaks[pid] - before[pid] for pid in pids)


def download(contenders: tuple[Contender, ...], expected: int, rounds: int) -> dict[str, Any]:
    """The big body through each contender once per round (after one unmeasured warm-up download).

    Memory growth is the highest, over rounds and worker processes, of (peak VmRSS during the download −
    VmRSS just before it), sampled every 5 ms: what serving one large answer costs the worker that serves it.
    """
    for contender in contenders:
        _download_once(contender, expected)
    samples: dict[str, list[tuple[float, float]]] = {contender.name: [] for contender in contenders}
    for _ in range(rounds):
        for contender in contenders:
            samples[contender.name].append(_download_once(contender, expected))
    return {
        "title": f"{expected // (1 << 20)} MiB streamed download",
        "bytes": expected,
        "contenders": {
            name: {"mib_per_s": round(_median([expected / (1 << 20) / seconds for seconds, _ in runs]), 1),
                   "seconds": round(_median([seconds for seconds, _ in runs]), 3),
                   "rss_growth_mb": round(max(growth for _, growth in runs), 1),
                   "rss_growth_mb_rounds": [round(growth, 1) for _, growth in runs]}
            for name, runs in samples.items()},
    }
