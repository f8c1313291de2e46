"""Trigger matching: whether an input fires an automation's trigger, with the per-trigger
state (a threshold's side, a device gone stale) and the "for" and "stale" timers it sets.

Split from :mod:`gateway.automations.engine`, which fires what matches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.automations.daytime import next_clock
from gateway.automations.model import PERSON_PREFIX, PRESENCE_METRIC, Input, same_value, show
from gateway.automations.timers import TimerQueue
from gateway.config import AutomationDef, LocationSection, TriggerDef
from gateway.model import Value

#: Device id -> (chain of automations whose command went to it, until when it counts).
Causes = dict[str, tuple[tuple[str, ...], float]]


@dataclass(slots=True)
class TriggerState:
    side: str | None = None  # threshold: "high"/"low"
    stale: bool = False


class TriggerMatcher:
    def __init__(self, timers: TimerQueue, causes: Causes) -> None:
        self.timers = timers
        self.causes = causes
        self._states: dict[tuple[str, int], TriggerState] = {}

    def state(self, aid: str, i: int) -> TriggerState:
        return self._states.setdefault((aid, i), TriggerState())

    def forget(self, aid: str, count: int) -> None:
        """Drop the state of an automation's ``count`` triggers (its definition changed)."""
        for i in range(count):
            self._states.pop((aid, i), None)

    def schedule_clock(
        self,
        defs: Mapping[str, AutomationDef],
        location: LocationSection,
        now: float,
        last_seen: Mapping[str, float],
    ) -> None:
        """Set the timers of time, sun and stale triggers that have none yet."""
        for aid, auto in defs.items():
            for i, trig in enumerate(auto.triggers):
                key = ("clock", aid, i)
                if trig.type in ("time", "sun") and key not in self.timers:
                    when = next_clock(location, trig, now)
                    if when is not None:
                        self.timers.set(key, when)
                if trig.type == "stale" and ("stale", aid, i) not in self.timers:
                    seen = last_seen.get(trig.device, now)
                    self.timers.set(("stale", aid, i), max(seen, now) + trig.after_s)

    def match(self, aid: str, i: int, trig: TriggerDef, inp: Input, prev: Value | None) -> str:
        """The trigger's description when ``inp`` fires it now, "" otherwise (starts or
        cancels a "for" timer as a side effect)."""
        t = trig.type
        if t == "uplink":
            if inp.kind == "uplink" and (trig.to == "up") == bool(inp.value):
                return f"uplink {trig.to}"
            return ""
        if t == "stale":
            if inp.device != trig.device:
                return ""
            st = self.state(aid, i)
            self.timers.cancel(("stale", aid, i))
            self.timers.set(("stale", aid, i), inp.ts + trig.after_s)
            if st.stale:
                st.stale = False
                if trig.to == "back":
                    return f"{trig.device} back ({inp.describe()})"
            return ""
        if t == "event":
            if inp.kind != "event" or inp.device != trig.device or inp.value != trig.action:
                return ""
            if trig.button is not None and inp.button != trig.button:
                return ""
            return inp.describe()
        if inp.kind != "reading":
            return ""
        device, metric = trig.device, trig.metric
        want: Value | None = trig.to
        if t == "presence":
            device, metric = PERSON_PREFIX + trig.person, PRESENCE_METRIC
            want = trig.to == "home"
        if inp.device != device or inp.name != metric:
            return ""
        value = inp.value
        assert value is not None
        if t == "threshold":
            return self._threshold(aid, i, trig, inp, value)
        # state and presence
        if prev is None or same_value(prev, value):
            return ""
        for_key = ("for", aid, i)
        pending = self.timers.pending(for_key)
        if want is not None and not same_value(value, want):
            for k in pending:
                self.timers.cancel(k)
            return ""
        for k in pending:
            self.timers.cancel(k)
        desc = f"{inp.describe()} (was {show(prev)})"
        if trig.for_s:
            chain = self.chain_of(inp)
            self.timers.set((*for_key, desc, inp.seq, chain), inp.ts + trig.for_s)
            return ""
        return desc

    def _threshold(self, aid: str, i: int, trig: TriggerDef, inp: Input, value: Value) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return ""
        st = self.state(aid, i)
        if trig.above is not None:
            high = value > trig.above
            low = value < trig.above - trig.hysteresis
        else:
            assert trig.below is not None
            high = value < trig.below
            low = value > trig.below + trig.hysteresis
        side = "high" if high else "low" if low else st.side
        was, st.side = st.side, side
        for_key = ("for", aid, i)
        if side == "low":
            for k in self.timers.pending(for_key):
                self.timers.cancel(k)
        if was == "low" and side == "high":
            limit = f"above {trig.above:g}" if trig.above is not None else f"below {trig.below:g}"
            desc = f"{inp.describe()} ({limit})"
            if trig.for_s:
                self.timers.set((*for_key, desc, inp.seq, self.chain_of(inp)), inp.ts + trig.for_s)
                return ""
            return desc
        return ""

    def chain_of(self, inp: Input) -> tuple[str, ...]:
        """The automations that caused ``inp`` (a command to its device shortly before)."""
        if not inp.device:
            return ()
        cause = self.causes.get(inp.device)
        return cause[0] if cause is not None and inp.ts <= cause[1] else ()


def index_by_device(automations: Iterable[AutomationDef]) -> dict[str, tuple[str, ...]]:
    """Device id -> ids of the automations with a trigger that an input from it can match."""
    out: dict[str, list[str]] = {}
    for auto in automations:
        devices = {
            PERSON_PREFIX + t.person if t.type == "presence" else t.device for t in auto.triggers
        }
        for device in devices:
            out.setdefault(device, []).append(auto.id)
    return {device: tuple(ids) for device, ids in out.items()}
