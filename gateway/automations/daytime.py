"""Local time for automations: the time zone, "HH:MM" and sunrise/sunset points of a local
day, the next clock trigger, and time-window conditions. Pure (the time is a parameter).

Split from :mod:`gateway.automations.engine`; the sun's times come from :mod:`.sun`.
"""

from __future__ import annotations

import datetime as dt

from gateway.automations.sun import sun_times_local
from gateway.config import ConditionDef, LocationSection, TriggerDef

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def local_tz(location: LocationSection) -> dt.tzinfo:
    if location.timezone:
        import zoneinfo  # ~0.2 MB with sysconfig: only for a time zone of its own

        return zoneinfo.ZoneInfo(location.timezone)
    local = dt.datetime.now().astimezone().tzinfo
    return local if local is not None else dt.UTC


def clock_point(
    location: LocationSection, spec: str, day: dt.date, offset_min: float = 0.0
) -> float | None:
    """Unix time of "HH:MM[:SS]" or "sunrise"/"sunset[+-min]" on a local day."""
    tz = local_tz(location)
    if spec[0].isdigit():
        parts = [int(p) for p in spec.split(":")]
        second = parts[2] if len(parts) > 2 else 0
        local = dt.datetime(day.year, day.month, day.day, parts[0], parts[1], second)
        return local.replace(tzinfo=tz).timestamp() + offset_min * 60
    loc = location
    if loc.latitude is None or loc.longitude is None:
        return None
    name, sign, num = spec.partition("+") if "+" in spec else spec.partition("-")
    offset = offset_min + (float(num) * (1 if sign == "+" else -1) if num else 0.0)
    rise, set_ = sun_times_local(day, loc.latitude, loc.longitude, tz)
    t = rise if name == "sunrise" else set_
    return None if t is None else t + offset * 60


def next_clock(location: LocationSection, trig: TriggerDef, after: float) -> float | None:
    day = dt.datetime.fromtimestamp(after, local_tz(location)).date()
    for d in range(3):
        t = clock_point(location, trig.at, day + dt.timedelta(days=d), trig.offset_min)
        if t is not None and t > after:
            return t
    return None


def in_window(location: LocationSection, c: ConditionDef, now: float) -> bool:
    tz = local_tz(location)
    local = dt.datetime.fromtimestamp(now, tz)
    if c.weekdays and _WEEKDAYS[local.weekday()] not in c.weekdays:
        return False
    day = local.date()
    start = clock_point(location, c.after, day) if c.after else None
    end = clock_point(location, c.before, day) if c.before else None
    if (c.after and start is None) or (c.before and end is None):
        return False  # sun times unknown (no location, or polar day/night)
    if start is not None and end is not None and start > end:  # spans midnight
        return now >= start or now < end
    return (start is None or now >= start) and (end is None or now < end)


def hm(t: float, tz: dt.tzinfo) -> str:
    return dt.datetime.fromtimestamp(t, tz).strftime("%H:%M:%S")
