"""The status page's plain parts: histogram quantiles, chart geometry, the rate series."""

from __future__ import annotations

import pytest

from app.observability.metrics import BUCKETS
from app.operators.status.charts import duration, histogram_bars, ratio, sparkline
from app.operators.status.series import RateSeries
from app.operators.status.traffic import RouteTraffic, Traffic, quantile


def traffic(requests: float, errors: float = 0.0, route: str = "/r") -> Traffic:
    """Counters as the metrics would give them."""
    figures = RouteTraffic(route, by_class={"2xx": requests - errors, "5xx": errors})
    return Traffic(routes={route: figures})


@pytest.mark.parametrize(("q", "counts", "expected"), [
    (0.5, [0, 10, 0], 1.5),  # bounds (1, 2): all in (1, 2], the median halfway
    (0.9, [10, 0, 0], 0.9),  # the first bucket starts at 0
    (0.99, [0, 0, 10], 2.0),  # above the highest bound: the highest bound
    (0.5, [0, 0, 0], None),
])
def test_quantiles_interpolate_inside_their_bucket(q: float, counts: list[float], expected: float | None) -> None:
    assert quantile(q, (1.0, 2.0), counts) == expected


def test_histogram_bars_scale_to_the_tallest_and_keep_single_requests_visible() -> None:
    counts = [0.0] * (len(BUCKETS) + 1)
    counts[3], counts[5], counts[-1] = 400.0, 1.0, 100.0
    bars = histogram_bars(counts, BUCKETS, width=170, height=36)
    assert len(bars) == len(BUCKETS) + 1
    assert bars[3].height == 36 and bars[3].y == 0
    assert bars[5].height == 1.8  # sqrt(1/400) of the height: small, but there
    assert bars[-1].height == 18  # sqrt(100/400)
    assert bars[0].height == 0
    assert bars[3].title == "≤ 5 ms: 400" and bars[-1].title == "> 60 s: 100"
    assert all(bar.x + bar.width <= 170 for bar in bars)


def test_sparkline_spans_the_width_with_the_peak_near_the_top() -> None:
    line = sparkline([0.0, 5.0, 10.0], width=100, height=40)
    assert line.points == "0.0,40.0 50.0,21.0 100.0,2.0"
    assert line.peak == 10.0
    assert sparkline([]).points == ""
    assert sparkline([4.0], width=100, height=40).points == "0.0,2.0 100.0,2.0"  # one rate: a level line


def test_ratios_and_durations_read_as_people_read_them() -> None:
    assert ratio(1, 4) == 0.25 and ratio(0, 0) is None
    assert [duration(s) for s in (0.0004, 0.025, 1.5, None)] == ["0.4 ms", "25 ms", "1.5 s", "–"]


def test_the_rate_series_needs_two_readings_and_samples_at_most_once_a_second() -> None:
    now = [0.0]
    series = RateSeries(lambda: now[0], window=60.0)
    series.record(traffic(100))
    assert series.rate() is None and series.points() == []
    now[0] = 0.5
    series.record(traffic(150))  # too soon: ignored
    now[0] = 10.0
    series.record(traffic(300, errors=20))
    assert series.rate() == 20.0 and series.rate("/r") == 20.0 and series.rate("/other") == 0.0
    assert series.error_rate() == 2.0
    now[0] = 20.0
    series.record(traffic(300, errors=20))
    assert series.points() == [20.0, 0.0]
    assert series.rate() == 10.0  # over the whole window: 200 requests in 20 s
    assert series.span() == 20.0


def test_the_rate_window_moves_and_counters_never_give_negative_rates() -> None:
    now = [0.0]
    series = RateSeries(lambda: now[0], window=30.0)
    for at, requests in ((0, 0), (20, 200), (40, 400), (60, 300)):
        now[0] = at
        series.record(traffic(requests))
    # The baseline is the oldest reading within 30 s of the latest (t=40): a drop reads as 0, not negative.
    assert series.rate() == 0.0
    assert series.points() == [10.0, 10.0, 0.0]
