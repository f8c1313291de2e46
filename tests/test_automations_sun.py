"""Sunrise/sunset (gateway.automations.sun) against published times.

Expected values: timeanddate.com for London, as used by the astral project's test suite
(astral tests/test_sun.py, London 51.50853 N, 0.12574 W; times UTC, to the minute). Our
implementation is independent (NOAA equations); we allow 2 minutes.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from gateway.automations.sun import sun_event, sun_times_local

LONDON = (51.50853, -0.12574)


@pytest.mark.parametrize(
    ("day", "rise", "set_"),
    [
        (dt.date(2015, 1, 1), (8, 6), (16, 2)),
        (dt.date(2015, 12, 1), (7, 43), (15, 55)),
        (dt.date(2015, 12, 2), (7, 45), (15, 55)),
        (dt.date(2015, 12, 12), (7, 56), (15, 52)),
        (dt.date(2015, 12, 25), (8, 5), (15, 56)),
    ],
)
def test_london_against_published(
    day: dt.date, rise: tuple[int, int], set_: tuple[int, int]
) -> None:
    for rising, (h, m) in ((True, rise), (False, set_)):
        got = sun_event(day, *LONDON, rising=rising)
        assert got is not None
        want = dt.datetime(day.year, day.month, day.day, h, m, tzinfo=dt.UTC).timestamp()
        assert abs(got - want) <= 120, (day, rising, dt.datetime.fromtimestamp(got, dt.UTC))


def test_polar_night_and_day() -> None:
    tromso_north = (78.2232, 15.6267)  # Longyearbyen
    assert sun_event(dt.date(2023, 12, 21), *tromso_north, rising=True) is None
    assert sun_event(dt.date(2023, 6, 21), *tromso_north, rising=False) is None


def test_local_day_in_a_far_time_zone() -> None:
    tz = zoneinfo.ZoneInfo("Pacific/Auckland")
    rise, set_ = sun_times_local(dt.date(2024, 1, 10), -36.85, 174.76, tz)
    assert rise is not None and set_ is not None
    r = dt.datetime.fromtimestamp(rise, tz)
    s = dt.datetime.fromtimestamp(set_, tz)
    assert r.date() == s.date() == dt.date(2024, 1, 10)
    assert 5 <= r.hour <= 7 and 20 <= s.hour <= 21  # NZ summer, daylight saving time
