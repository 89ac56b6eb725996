"""HTTP dates as RFC 9110 5.6.7 defines them, strictly: anything else is invalid (an invalid Expires is stale)."""

from __future__ import annotations

import calendar
import re
import time

__all__ = ["http_date"]

_DAYS = "mon|tue|wed|thu|fri|sat|sun"
_LONG_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH = "|".join(_MONTHS)
_TIME = r"(\d{2}):(\d{2}):(\d{2})"
# Names are matched without regard to case (the suite's optimal tests), everything else exactly.
_IMF = re.compile(rf"(?:{_DAYS}), (\d{{2}}) ({_MONTH}) (\d{{4}}) {_TIME} GMT", re.IGNORECASE)
_RFC850 = re.compile(rf"(?:{_LONG_DAYS}), (\d{{2}})-({_MONTH})-(\d{{2}}) {_TIME} GMT", re.IGNORECASE)
_ASCTIME = re.compile(rf"(?:{_DAYS}) ({_MONTH}) ([ \d]\d) {_TIME} (\d{{4}})", re.IGNORECASE)


def http_date(value: str, now: float | None = None) -> float | None:
    """Seconds since the epoch for an IMF-fixdate, RFC 850 or asctime date; None when it is none of them."""
    value = value.strip()
    if match := _IMF.fullmatch(value):
        day, month, year, hour, minute, second = match.groups()
    elif match := _RFC850.fullmatch(value):
        day, month, short_year, hour, minute, second = match.groups()
        year = str(_full_year(int(short_year), now))
    elif match := _ASCTIME.fullmatch(value):
        month, day, hour, minute, second, year = match.groups()
    else:
        return None
    try:
        parts = (int(year), _MONTHS.index(month.lower()) + 1, int(day), int(hour), int(minute), int(second))
        if not (1 <= parts[2] <= 31 and parts[3] < 24 and parts[4] < 60 and parts[5] < 61):
            return None
        return float(calendar.timegm((*parts, 0, 0, 0)))
    except (ValueError, OverflowError):
        return None


def _full_year(short: int, now: float | None) -> int:
    """RFC 9110 5.6.7: a two-digit year more than 50 years ahead is the most recent past year ending so."""
    this_year = time.gmtime(now if now is not None else time.time()).tm_year
    year = this_year - this_year % 100 + short
    return year - 100 if year > this_year + 50 else year
