"""Freshness rules without Flask: strict HTTP dates, targeted fields (RFC 9213), heuristics, stale windows."""

from __future__ import annotations

import pytest

from app.caching.dates import http_date
from app.caching.policy import decide

NOW = 1_700_000_000.0
DATE = "Tue, 14 Nov 2023 22:13:20 GMT"  # NOW as an HTTP date


@pytest.mark.parametrize(("value", "valid"), [
    ("Thu, 18 Aug 2050 02:01:18 GMT", True),
    ("Thursday, 18-Aug-50 02:01:18 GMT", True),  # RFC 850
    ("Thu Aug  8 02:01:18 2050", True),  # asctime
    ("THU, 18 AUG 2050 02:01:18 gMT", True),  # names in any case
    ("Thu, 18 Aug 2050 02:01:18 UTC", False),
    ("Thu, 18 Aug 50 02:01:18 GMT", False),
    ("Thu 18 Aug 2050 02:01:18 GMT", False),
    ("Thu, 18  Aug  2050 02:01:18 GMT", False),
    ("Thu, 18-Aug-2050 02:01:18 GMT", False),
    ("Thu, 18 Aug 2050 02.01.18 GMT", False),
    ("Thu, 18 Aug 2050 2:01:18 GMT", False),
    ("Thu, 32 Aug 2050 02:01:18 GMT", False),
    ("0", False),
])
def test_http_dates_are_parsed_strictly(value: str, valid: bool) -> None:
    assert (http_date(value) is not None) is valid


def test_an_rfc850_year_is_at_most_50_years_ahead() -> None:
    assert http_date("Thursday, 18-Aug-50 02:01:18 GMT", NOW) == http_date("Thu, 18 Aug 2050 02:01:18 GMT")
    assert http_date("Sunday, 06-Nov-94 08:49:37 GMT", NOW) == http_date("Sun, 06 Nov 1994 08:49:37 GMT")


def _decide(*headers: tuple[str, str], ttl: float = 3600, freshness: str = "route",
            windows: tuple[float | None, float | None] = (None, None)) -> tuple[float, str | None, float, float]:
    decision = decide(200, [("Date", DATE), *headers], ttl, credentials=False, consumer_scoped=False, now=NOW,
                      freshness=freshness, windows=windows, targeted=("Frontdesk-Cache-Control", "CDN-Cache-Control"))
    return decision.ttl, decision.reason, decision.stale_while_revalidate, decision.stale_if_error


@pytest.mark.parametrize(("headers", "expected"), [
    ((("Expires", "Thu, 18 Aug 2050 2:01:18 GMT"),), (0, "stale", 0, 0)),  # invalid: expired whatever the ttl
    ((("Expires", "Tue, 14 Nov 2023 22:14:20 GMT"), ("Expires", "Tue, 14 Nov 2023 22:14:20 GMT")), (0, "stale", 0, 0)),
    ((("Expires", "Tue, 14 Nov 2023 22:14:20 GMT"),), (60, None, 0, 0)),
    ((("CDN-Cache-Control", "max-age=30"), ("Cache-Control", "max-age=10")), (30, None, 0, 0)),
    ((("CDN-Cache-Control", "max-age=0"), ("Expires", "Tue, 14 Nov 2023 23:13:20 GMT")), (0, "stale", 0, 0)),
    ((("CDN-Cache-Control", "no-store"), ("Cache-Control", "max-age=100")), (0, "no-store", 0, 0)),
    ((("CDN-Cache-Control", "max-age=100"), ("Cache-Control", "no-store")), (100, None, 0, 0)),
    ((("CDN-Cache-Control", "max-age=100"), ("Frontdesk-Cache-Control", "max-age=5")), (5, None, 0, 0)),
    ((("Cache-Control", "max-age=10, stale-while-revalidate=30, stale-if-error=60"),), (10, None, 30, 60)),
    ((("Cache-Control", "max-age=10, must-revalidate, stale-if-error=60"), ("ETag", '"e"')), (10, None, 0, 0)),
    ((("Cache-Control", "no-cache"), ("ETag", '"e"')), (0, None, 0, 0)),  # stored, revalidated on every use
    ((("Cache-Control", "max-age=0"), ("Last-Modified", DATE)), (0, None, 0, 0)),
])
def test_freshness_table(headers: tuple[tuple[str, str], ...], expected: tuple[float, str | None, float, float]
                         ) -> None:
    assert _decide(*headers) == expected


def test_upstream_freshness_stores_only_what_the_upstream_made_cacheable() -> None:
    assert _decide(freshness="upstream")[1] == "no-freshness"
    # 10 % of the 10 000 s since Last-Modified; the route's ttl stays the ceiling.
    modified = ("Last-Modified", "Tue, 14 Nov 2023 19:26:40 GMT")
    assert _decide(modified, freshness="upstream")[:2] == (1000, None)
    assert _decide(modified, freshness="upstream", ttl=300)[:2] == (300, None)
    assert _decide(freshness="route")[:2] == (3600, None)


def test_route_windows_are_shortened_by_the_upstream() -> None:
    control = ("Cache-Control", "max-age=10, stale-while-revalidate=5")
    assert _decide(control, windows=(60, 60))[2:] == (5, 60)
    assert _decide(control, windows=(0, None))[2:] == (0, 0)
    assert _decide(("Cache-Control", "max-age=10"), windows=(60, 30))[2:] == (60, 30)


@pytest.mark.parametrize(("value", "used"), [
    ("max-age=30", True),
    ("foobar, max-age=30", True),  # unknown directives are fine
    ("max-age=30;x=1", True),  # parameters are allowed and ignored
    ("max-age=30, &&&&&", False),  # not a Structured Field dictionary: Cache-Control applies
    ('max-age="30"', False),  # max-age must be an integer
    ("MaX-aGe=30", False),  # keys are lower case
    ("max-age= 30", False),
    ("max-age", False),
])
def test_an_invalid_targeted_field_is_ignored(value: str, used: bool) -> None:
    ttl, reason, _, _ = _decide(("CDN-Cache-Control", value), ("Cache-Control", "no-store"))
    assert ((ttl, reason) == (30, None)) is used
    assert (reason == "no-store") is not used
