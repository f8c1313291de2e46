"""[location], [presence] and [[automations]] (docs/automations.md): the types the loader walks;
each class checks its own fields, :func:`check_references` the references between them."""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Literal

from gateway.config.fields import FieldError, Secret, non_negative, positive
from gateway.errors import ConfigError

if typing.TYPE_CHECKING:
    from gateway.config.schema import Config


@dataclass(frozen=True, slots=True)
class LocationSection:
    #: Degrees north (negative: south) and east (negative: west), for sunrise and sunset.
    latitude: float | None = None
    longitude: float | None = None
    #: IANA time zone of time-of-day triggers and conditions ("Europe/Paris"); empty: the
    #: system's local time.
    timezone: str = ""

    def __post_init__(self) -> None:
        if (self.latitude is None) != (self.longitude is None):
            raise FieldError("longitude", "give both latitude and longitude, or neither")
        if self.latitude is not None and not -90 <= self.latitude <= 90:
            raise FieldError("latitude", "must be between -90 and 90")
        if self.longitude is not None and not -180 <= self.longitude <= 180:
            raise FieldError("longitude", "must be between -180 and 180")
        if self.timezone:
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise FieldError("timezone", f"unknown time zone {self.timezone!r}") from None


@dataclass(frozen=True, slots=True)
class PresencePerson:
    name: str
    #: Identity Resolving Keys of the person's phones (32 hex digits, most significant first).
    irk: tuple[Secret, ...] = ()
    #: iBeacons as "UUID", "UUID/major" or "UUID/major/minor".
    ibeacon: tuple[str, ...] = ()
    #: Eddystone UIDs as "namespace" (20 hex) or "namespace/instance" (+12 hex).
    eddystone: tuple[str, ...] = ()
    #: Static or public addresses (a band in discoverable mode).
    address: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from drivers.ble.presence import PresenceConfigError, identity

        if not re.fullmatch(r"[a-z0-9_-]{1,48}", self.name):
            raise FieldError("name", "must be 1-48 characters of a-z, 0-9, '_' or '-'")
        for kind in ("ibeacon", "eddystone", "address"):
            for i, value in enumerate(getattr(self, kind)):
                try:
                    identity(kind, value)
                except PresenceConfigError as exc:
                    raise FieldError(f"{kind}[{i}]", str(exc)) from None
        for i, irk in enumerate(self.irk):
            try:
                identity("irk", irk.reveal())
            except PresenceConfigError:
                raise FieldError(f"irk[{i}]", "an IRK is 32 hex digits") from None
        if not (self.irk or self.ibeacon or self.eddystone or self.address):
            raise FieldError("name", "needs at least one irk, ibeacon, eddystone or address")


@dataclass(frozen=True, slots=True)
class PresenceSection:
    """[presence]: the tracker's timings (home_rssi, hysteresis_db, away_after_s, rssi_alpha:
    the fields and defaults of :class:`~drivers.ble.presence.PresenceTimings`, documented
    there; ``gateway.automations.timings_of`` converts) and the people to track.

    Not a subclass: that would load the BLE presence code with every config (a test keeps
    the fields and defaults the same)."""

    home_rssi: float = -90.0
    hysteresis_db: float = 6.0
    away_after_s: float = 180.0
    rssi_alpha: float = 0.3
    people: tuple[PresencePerson, ...] = ()

    def __post_init__(self) -> None:
        non_negative(self.hysteresis_db, "hysteresis_db")
        positive(self.away_after_s, "away_after_s")
        if not 0 < self.rssi_alpha <= 1:
            raise FieldError("rssi_alpha", "must be in (0, 1]")
        names: set[str] = set()
        for i, person in enumerate(self.people):
            if person.name in names:
                raise ConfigError(
                    f"duplicate name {person.name!r}", path=f"presence.people[{i}].name"
                )
            names.add(person.name)


_TIME_OF_DAY = re.compile(r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?")
_SUN_TIME = re.compile(r"(sunrise|sunset)([+-]\d+)?")
_NAME = re.compile(r"[a-z0-9_-]{1,48}")


def _clock_time(value: str, name: str, *, sun: bool) -> None:
    if _TIME_OF_DAY.fullmatch(value) or (sun and _SUN_TIME.fullmatch(value)):
        return
    what = "HH:MM[:SS], or sunrise/sunset with an optional offset in minutes (sunset-30)"
    raise FieldError(name, f"must be {what if sun else 'HH:MM[:SS]'}, not {value!r}")


TriggerType = Literal["threshold", "state", "event", "stale", "time", "sun", "presence", "uplink"]
_TRIGGER_TO: dict[str, tuple[str, ...]] = {
    "stale": ("stale", "back"),
    "presence": ("home", "away"),
    "uplink": ("down", "up"),
}


@dataclass(frozen=True, slots=True)
class TriggerDef:
    type: TriggerType
    #: Device id as in the API ("gpio-front-door", "zb-00158d...", "ble-a4c138...").
    device: str = ""
    metric: str = ""
    #: threshold: fires when the value goes above ``above`` (or below ``below``) after having
    #: been on the other side by more than ``hysteresis``.
    above: float | None = None
    below: float | None = None
    hysteresis: float = 0.0
    #: threshold/state: the new state must hold this long before the trigger fires.
    for_s: float = 0.0
    #: state: the value changed to (any change when absent); stale: "stale"/"back";
    #: presence: "home"/"away"; uplink: "down"/"up".
    to: bool | float | str | None = None
    #: event: the action (single, double, long, rotate_left...) and optionally the button.
    action: str = ""
    button: int | None = None
    #: stale: silent this many seconds.
    after_s: float = 0.0
    #: time: "HH:MM[:SS]"; sun: "sunrise" or "sunset" (offset_min minutes after, or before).
    at: str = ""
    offset_min: float = 0.0
    person: str = ""

    def __post_init__(self) -> None:
        t = self.type
        needs_device = t in ("threshold", "state", "event", "stale")
        if needs_device and not self.device:
            raise FieldError("device", f"is required for a {t} trigger")
        if t in ("threshold", "state") and not self.metric:
            raise FieldError("metric", f"is required for a {t} trigger")
        if t == "threshold" and (self.above is None) == (self.below is None):
            raise FieldError("above", "a threshold trigger needs above or below (one of them)")
        non_negative(self.hysteresis, "hysteresis")
        non_negative(self.for_s, "for_s")
        if self.for_s and t not in ("threshold", "state"):
            raise FieldError("for_s", "only goes with threshold and state triggers")
        if t == "event" and not self.action:
            raise FieldError("action", "is required for an event trigger")
        if t == "stale" and not self.after_s > 0:
            raise FieldError("after_s", "a stale trigger needs after_s > 0")
        if t in _TRIGGER_TO and self.to not in _TRIGGER_TO[t]:
            raise FieldError("to", f"must be one of {', '.join(_TRIGGER_TO[t])}")
        if t == "time":
            _clock_time(self.at, "at", sun=False)
        if t == "sun" and self.at not in ("sunrise", "sunset"):
            raise FieldError("at", "must be sunrise or sunset")
        if t == "presence" and not self.person:
            raise FieldError("person", "is required for a presence trigger")


ConditionType = Literal["time", "state", "presence", "not_fired", "uplink"]


@dataclass(frozen=True, slots=True)
class ConditionDef:
    type: ConditionType
    #: time: from ``after`` until ``before`` (may span midnight); "HH:MM[:SS]" or
    #: "sunrise"/"sunset" with an optional offset in minutes ("sunset-30").
    after: str = ""
    before: str = ""
    #: time: only on these days (mon..sun); empty: every day.
    weekdays: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = ()
    device: str = ""
    metric: str = ""
    #: state: the current value equals ``state``, or lies above/below.
    #: presence: "home"/"away"; uplink: "up"/"down".
    state: bool | float | str | None = None
    above: float | None = None
    below: float | None = None
    person: str = ""
    #: not_fired: the automation (default: this one) did not fire in the last ``seconds``.
    automation: str = ""
    seconds: float = 0.0

    def __post_init__(self) -> None:
        t = self.type
        if t == "time":
            if not (self.after or self.before or self.weekdays):
                raise FieldError("after", "a time condition needs after, before or weekdays")
            for name in ("after", "before"):
                if getattr(self, name):
                    _clock_time(getattr(self, name), name, sun=True)
        if t == "state":
            if not self.device or not self.metric:
                raise FieldError("device", "a state condition needs device and metric")
            if self.state is None and self.above is None and self.below is None:
                raise FieldError("state", "a state condition needs state, above or below")
        if t == "presence":
            if not self.person:
                raise FieldError("person", "is required for a presence condition")
            if self.state not in ("home", "away"):
                raise FieldError("state", "must be home or away")
        if t == "uplink" and self.state not in ("up", "down"):
            raise FieldError("state", "must be up or down")
        if t == "not_fired" and not self.seconds > 0:
            raise FieldError("seconds", "a not_fired condition needs seconds > 0")


ActionType = Literal["command", "delay", "publish", "run", "if", "choose", "sequence"]


@dataclass(frozen=True, slots=True)
class ChoiceDef:
    conditions: tuple[ConditionDef, ...] = ()
    actions: tuple[ActionDef, ...] = ()


@dataclass(frozen=True, slots=True)
class ActionDef:
    type: ActionType
    #: command: a device id and on/off/toggle/pulse (pulse: ``seconds`` long).
    device: str = ""
    command: Literal["on", "off", "toggle", "pulse", ""] = ""
    #: delay: seconds to wait; pulse: its length.
    seconds: float = 0.0
    #: publish: a message published as an event of this automation (outbox: kept offline).
    message: str = ""
    #: run: another automation's actions (its conditions are checked).
    automation: str = ""
    #: if: conditions, then ``then``, else ``otherwise``.
    conditions: tuple[ConditionDef, ...] = ()
    then: tuple[ActionDef, ...] = ()
    otherwise: tuple[ActionDef, ...] = ()
    #: choose: the first choice whose conditions hold, else ``default``.
    choose: tuple[ChoiceDef, ...] = ()
    default: tuple[ActionDef, ...] = ()
    #: sequence: these actions in order.
    actions: tuple[ActionDef, ...] = ()

    def __post_init__(self) -> None:
        t = self.type
        if t == "command":
            if not self.device or not self.command:
                raise FieldError("command", "a command action needs device and command")
            if self.command == "pulse" and not 0 < self.seconds <= 3600:
                raise FieldError("seconds", "a pulse needs 0 < seconds <= 3600")
        if t == "delay" and not 0 < self.seconds <= 86400:
            raise FieldError("seconds", "a delay needs 0 < seconds <= 86400")
        if t == "publish" and not self.message:
            raise FieldError("message", "is required for a publish action")
        if t == "run" and not self.automation:
            raise FieldError("automation", "is required for a run action")
        if t == "if" and not self.conditions:
            raise FieldError("conditions", "an if action needs conditions")
        if t == "choose" and not self.choose:
            raise FieldError("choose", "a choose action needs at least one choice")
        if t == "sequence" and not self.actions:
            raise FieldError("actions", "a sequence needs actions")


@dataclass(frozen=True, slots=True)
class AutomationDef:
    id: str
    triggers: tuple[TriggerDef, ...]
    actions: tuple[ActionDef, ...]
    name: str = ""
    enabled: bool = True
    conditions: tuple[ConditionDef, ...] = ()
    #: single: a firing while a run waits in a delay is skipped; restart: the old run is
    #: cancelled; parallel: both run.
    mode: Literal["single", "restart", "parallel"] = "single"

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.id):
            raise FieldError("id", "must be 1-48 characters of a-z, 0-9, '_' or '-'")
        if not self.triggers:
            raise FieldError("triggers", "an automation needs at least one trigger")
        if not self.actions:
            raise FieldError("actions", "an automation needs at least one action")


def check_references(cfg: Config) -> None:
    """References between automations and people: unique ids, existing targets."""
    ids: dict[str, int] = {}
    people = {p.name for p in cfg.presence.people}
    for i, auto in enumerate(cfg.automations):
        if auto.id in ids:
            raise ConfigError(f"duplicate id {auto.id!r}", path=f"automations[{i}].id")
        ids[auto.id] = i
    located = cfg.location.latitude is not None
    for i, auto in enumerate(cfg.automations):
        base = f"automations[{i}]"
        for j, trig in enumerate(auto.triggers):
            if trig.type == "sun" and not located:
                raise ConfigError(
                    "sunrise/sunset need [location] latitude and longitude",
                    path=f"{base}.triggers[{j}].at",
                )
            if trig.type == "presence" and trig.person not in people:
                raise ConfigError(
                    f"no person {trig.person!r} in [presence]",
                    path=f"{base}.triggers[{j}].person",
                )
        for path, cond in _walk_conditions(auto, base):
            sun = [k for k in ("after", "before") if getattr(cond, k).startswith("sun")]
            if sun and not located:
                raise ConfigError(
                    "sunrise/sunset need [location] latitude and longitude",
                    path=f"{path}.{sun[0]}",
                )
            if cond.type == "presence" and cond.person not in people:
                raise ConfigError(f"no person {cond.person!r} in [presence]", path=f"{path}.person")
            if cond.type == "not_fired" and cond.automation and cond.automation not in ids:
                raise ConfigError(f"no automation {cond.automation!r}", path=f"{path}.automation")
        for path, act in _walk_actions(auto.actions, f"{base}.actions"):
            if act.type == "run" and act.automation not in ids:
                raise ConfigError(f"no automation {act.automation!r}", path=f"{path}.automation")


def _walk_actions(
    actions: tuple[ActionDef, ...], path: str
) -> typing.Iterator[tuple[str, ActionDef]]:
    for i, act in enumerate(actions):
        here = f"{path}[{i}]"
        yield here, act
        for name in ("then", "otherwise", "default", "actions"):
            yield from _walk_actions(getattr(act, name), f"{here}.{name}")
        for k, choice in enumerate(act.choose):
            yield from _walk_actions(choice.actions, f"{here}.choose[{k}].actions")


def _walk_conditions(auto: AutomationDef, base: str) -> typing.Iterator[tuple[str, ConditionDef]]:
    for i, cond in enumerate(auto.conditions):
        yield f"{base}.conditions[{i}]", cond
    for path, act in _walk_actions(auto.actions, f"{base}.actions"):
        for i, cond in enumerate(act.conditions):
            yield f"{path}.conditions[{i}]", cond
        for k, choice in enumerate(act.choose):
            for i, cond in enumerate(choice.conditions):
                yield f"{path}.choose[{k}].conditions[{i}]", cond
