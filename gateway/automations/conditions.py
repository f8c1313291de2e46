"""Conditions of automations, and whether a trigger's state still holds: pure functions of
what the engine knows (values, uplink, last firings) and the time.

Split from :mod:`gateway.automations.engine`.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.automations.daytime import in_window
from gateway.automations.model import PERSON_PREFIX, PRESENCE_METRIC, same_value
from gateway.config import ConditionDef, LocationSection, TriggerDef
from gateway.model import Value


def condition_holds(
    c: ConditionDef,
    aid: str,
    *,
    now: float,
    location: LocationSection,
    values: Mapping[tuple[str, str], Value],
    uplink: bool | None,
    last_fired: Mapping[str, float],
) -> bool:
    """Whether condition ``c`` of automation ``aid`` holds at ``now`` given what is known."""
    if c.type == "time":
        return in_window(location, c, now)
    if c.type == "state":
        value = values.get((c.device, c.metric))
        if value is None:
            return False
        if c.state is not None and not same_value(value, c.state):
            return False
        if c.above is not None or c.below is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            if c.above is not None and not value > c.above:
                return False
            if c.below is not None and not value < c.below:
                return False
        return True
    if c.type == "presence":
        home = values.get((PERSON_PREFIX + c.person, PRESENCE_METRIC)) is True
        return home == (c.state == "home")
    if c.type == "uplink":
        return uplink is not None and uplink == (c.state == "up")
    last = last_fired.get(c.automation or aid)
    return last is None or now - last >= c.seconds


def trigger_holds(trig: TriggerDef, values: Mapping[tuple[str, str], Value]) -> bool:
    """Whether the state a trigger waits for still holds (a saved "for" after a restart)."""
    value = values.get((trig.device, trig.metric))
    if value is None:
        return False
    if trig.type == "threshold":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return value > trig.above if trig.above is not None else value < (trig.below or 0)
    return trig.to is None or same_value(value, trig.to)
