"""Sunrise and sunset offline: NOAA's solar position equations (the "General Solar Position
Calculations" of NOAA's Global Monitoring Laboratory, after Meeus' Astronomical Algorithms).

Accuracy about a minute at latitudes within ±60°; the atmospheric refraction and the sun's
radius are the standard 0.833° below the horizon. Pure functions of UTC dates.
"""

from __future__ import annotations

import datetime as dt
import math

_ZENITH = 90.833
_J2000 = 2451545.0
_UNIX_EPOCH_JD = 2440587.5


def _julian_day(unix: float) -> float:
    return unix / 86400.0 + _UNIX_EPOCH_JD


def _declination_and_eot(jd: float) -> tuple[float, float]:
    """Solar declination (radians) and the equation of time (minutes) at a Julian day."""
    t = (jd - _J2000) / 36525.0
    l0 = math.radians((280.46646 + t * (36000.76983 + t * 0.0003032)) % 360.0)
    m = math.radians(357.52911 + t * (35999.05029 - 0.0001537 * t))
    e = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    center = (
        math.sin(m) * (1.914602 - t * (0.004817 + 0.000014 * t))
        + math.sin(2 * m) * (0.019993 - 0.000101 * t)
        + math.sin(3 * m) * 0.000289
    )
    omega = math.radians(125.04 - 1934.136 * t)
    apparent = math.radians(math.degrees(l0) + center - 0.00569 - 0.00478 * math.sin(omega))
    seconds = 21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))
    obliquity = math.radians(23.0 + (26.0 + seconds / 60.0) / 60.0 + 0.00256 * math.cos(omega))
    declination = math.asin(math.sin(obliquity) * math.sin(apparent))
    y = math.tan(obliquity / 2) ** 2
    eot = 4 * math.degrees(
        y * math.sin(2 * l0)
        - 2 * e * math.sin(m)
        + 4 * e * y * math.sin(m) * math.cos(2 * l0)
        - 0.5 * y * y * math.sin(4 * l0)
        - 1.25 * e * e * math.sin(2 * m)
    )
    return declination, eot


def sun_event(day: dt.date, latitude: float, longitude: float, *, rising: bool) -> float | None:
    """Unix time of sunrise (``rising``) or sunset on the UTC ``day``, or None when the sun
    does not cross the horizon that day (polar day or night)."""
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
    lat = math.radians(latitude)
    minutes = 720.0 - 4.0 * longitude  # first guess: solar noon
    for _ in range(3):  # evaluate the sun's position at the estimate, twice refined
        declination, eot = _declination_and_eot(_julian_day(midnight + minutes * 60.0))
        cos_ha = math.cos(math.radians(_ZENITH)) / (
            math.cos(lat) * math.cos(declination)
        ) - math.tan(lat) * math.tan(declination)
        if not -1.0 <= cos_ha <= 1.0:
            return None
        ha = math.degrees(math.acos(cos_ha))
        minutes = 720.0 - 4.0 * (longitude + (ha if rising else -ha)) - eot
    return midnight + minutes * 60.0


def sun_times_local(
    day: dt.date, latitude: float, longitude: float, tz: dt.tzinfo
) -> tuple[float | None, float | None]:
    """Sunrise and sunset (unix times) of the local calendar ``day`` in ``tz``."""
    out: list[float | None] = []
    for rising in (True, False):
        found: float | None = None
        for delta in (-1, 0, 1):  # the UTC day of a local event may differ by one
            t = sun_event(day + dt.timedelta(days=delta), latitude, longitude, rising=rising)
            if t is not None and dt.datetime.fromtimestamp(t, tz).date() == day:
                found = t
                break
        out.append(found)
    return out[0], out[1]
