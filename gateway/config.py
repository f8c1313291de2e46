"""Configuration: TOML (tomllib) validated into frozen typed objects.

The schema is the dataclasses below. The loader walks their type hints, so an unknown key or
a wrong type is an error naming the key path (``gpio.devices[1].pin``) and its line. Secrets
are :class:`Secret` values that never print, and may come from files (``*_file`` keys).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import socket
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gateway.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/migw/config.toml")
DEFAULT_STATE_DIR = Path("/var/lib/migw")


class Secret:
    """A string that never shows in repr, str, logs or diagnostics."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _default_gateway_id() -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", socket.gethostname().lower()).strip("-")
    return name or "migw"


@dataclass(frozen=True, slots=True)
class GatewaySection:
    #: Identifier in MQTT topics and discovery: [a-z0-9_-], defaults to the host name.
    id: str = field(default_factory=_default_gateway_id)
    state_dir: Path = DEFAULT_STATE_DIR
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9_-]{1,64}", self.id):
            raise _FieldError("id", "must be 1-64 characters of a-z, 0-9, '_' or '-'")


@dataclass(frozen=True, slots=True)
class StoreSection:
    #: Readings kept in the recent history table (oldest pruned first).
    history_max_rows: int = 200_000
    #: A write transaction commits after at most this many rows ...
    batch_max_rows: int = 500
    #: ... or this many milliseconds, whichever comes first.
    batch_max_ms: int = 100

    def __post_init__(self) -> None:
        _positive(self.history_max_rows, "history_max_rows")
        if self.history_max_rows > 100_000_000:
            raise _FieldError("history_max_rows", "must be at most 100000000")
        if not 1 <= self.batch_max_rows <= 500:
            raise _FieldError("batch_max_rows", "must be between 1 and 500")
        if not 1 <= self.batch_max_ms <= 100:
            raise _FieldError("batch_max_ms", "must be between 1 and 100")


@dataclass(frozen=True, slots=True)
class ApiSection:
    enabled: bool = True
    listen: str = "0.0.0.0"  # noqa: S104 - a LAN API on a gateway; every route but health needs a token
    port: int = 8380
    max_body_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        _port(self.port)
        if self.max_body_bytes < 1024:
            raise _FieldError("max_body_bytes", "must be >= 1024")


@dataclass(frozen=True, slots=True)
class UpstreamSection:
    #: mqtt://host:1883 or mqtts://host:8883; empty disables the uplink.
    url: str = ""
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str = ""
    username: str = ""
    password: Secret | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: Plaintext MQTT to a host that is not loopback needs this.
    allow_insecure: bool = False
    topic_prefix: str = "migw"
    keepalive: int = 60
    batch_max_readings: int = 1000
    batch_max_ms: int = 1000
    compress: bool = False
    outbox_max_bytes: int = 512 * 1024 * 1024
    outbox_ttl_days: float = 30.0
    outbox_full: Literal["drop_oldest", "reject_new"] = "drop_oldest"
    #: Backlog readings per second while draining after an outage (live data comes first).
    drain_rate: int = 5000
    #: Largest telemetry message; lower it to the broker's limit with MQTT 3.1.1 (MQTT 5
    #: brokers announce theirs). Bigger batches are split.
    max_message_bytes: int = 256 * 1024
    #: Reconnect backoff: capped exponential with full jitter, reset after a stable period.
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    reconnect_stable_s: float = 30.0

    def __post_init__(self) -> None:
        if self.url and not _is_mqtt_url(self.url):
            raise _FieldError("url", "must look like mqtt://host:1883 or mqtts://host:8883")
        if self.password is not None and self.password_file is not None:
            raise _FieldError("password_file", "give password or password_file, not both")
        if not re.fullmatch(r"[A-Za-z0-9_/-]{1,64}", self.topic_prefix):
            raise _FieldError("topic_prefix", "must be letters, digits, '_', '-' or '/'")
        _positive(self.batch_max_readings, "batch_max_readings")
        _positive(self.batch_max_ms, "batch_max_ms")
        _positive(self.outbox_max_bytes, "outbox_max_bytes")
        _positive(self.drain_rate, "drain_rate")
        if self.outbox_ttl_days <= 0:
            raise _FieldError("outbox_ttl_days", "must be > 0")
        if self.max_message_bytes < 1024:
            raise _FieldError("max_message_bytes", "must be >= 1024")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise _FieldError("reconnect_min_s", "need 0 < reconnect_min_s <= reconnect_max_s")
        _positive(self.reconnect_stable_s, "reconnect_stable_s")
        _positive(self.keepalive, "keepalive")


@dataclass(frozen=True, slots=True)
class HomeAssistantSection:
    enabled: bool = True
    discovery_prefix: str = "homeassistant"
    #: A second (LAN) broker for discovery and state; empty uses the upstream broker.
    url: str = ""
    username: str = ""
    password: Secret | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: Plaintext MQTT to a LAN broker that is not loopback needs this.
    allow_insecure: bool = False
    #: The oldest Home Assistant release that reads this discovery (docs/mqtt.md): device
    #: classes it does not know yet are left out.
    min_version: str = "2024.3"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"20\d\d\.\d{1,2}", self.min_version):
            raise _FieldError("min_version", "must be a Home Assistant release like 2024.3")
        if self.url and not _is_mqtt_url(self.url):
            raise _FieldError("url", "must look like mqtt://host:1883 or mqtts://host:8883")
        if self.password is not None and self.password_file is not None:
            raise _FieldError("password_file", "give password or password_file, not both")
        if not re.fullmatch(r"[A-Za-z0-9_/-]{1,64}", self.discovery_prefix):
            raise _FieldError("discovery_prefix", "must be letters, digits, '_', '-' or '/'")


@dataclass(frozen=True, slots=True)
class BleSection:
    enabled: bool = False
    adapter: str = "hci0"
    #: Passive scanning (BlueZ advertisement monitor); falls back to active with a log line.
    passive: bool = True
    #: Bind keys per MAC: 32 hex (MiBeacon v4/v5, BTHome, pvvx) or 24 hex (legacy v2/v3).
    keys: dict[str, Secret] = field(default_factory=dict)
    #: Files holding one key each, per MAC, for keys kept out of the config.
    key_files: dict[str, Path] = field(default_factory=dict)
    #: Repeats of one frame within this many seconds are dropped as duplicates.
    dedup_window_s: float = 60.0
    #: A non-sleepy BLE device silent for this long is unavailable.
    unavailable_after_s: float = 900.0
    #: Which sensors in range become devices: "allowlisted" (those in ``allow``, those with a
    #: bind key and those named in [devices]) or "all" (every decodable sensor in range).
    join: Literal["all", "allowlisted"] = "allowlisted"
    #: MACs always added (with join = "allowlisted").
    allow: tuple[str, ...] = ()
    #: MACs never added, whatever ``join`` says.
    ignore: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _non_negative(self.dedup_window_s, "dedup_window_s")
        _positive(self.unavailable_after_s, "unavailable_after_s")
        for name in ("allow", "ignore"):
            for i, mac in enumerate(getattr(self, name)):
                if ble_device_id(mac) is None:
                    raise _FieldError(
                        f"{name}[{i}]", f"{mac!r} is not a MAC address (A4:C1:38:12:34:56)"
                    )


_MAC_RE = re.compile(r"(?:[0-9A-Fa-f]{2}[:-]?){5}[0-9A-Fa-f]{2}")


def ble_device_id(mac_or_id: str) -> str | None:
    """``A4:C1:38:1A:2B:3C`` (or ``a4c1381a2b3c``, or ``ble-a4c1381a2b3c``) as the device id
    ``ble-a4c1381a2b3c``; None when it is not a MAC."""
    text = mac_or_id.strip().removeprefix("ble-")
    if not _MAC_RE.fullmatch(text):
        return None
    return "ble-" + re.sub(r"[^0-9a-f]", "", text.lower())


@dataclass(frozen=True, slots=True)
class ZigbeeSection:
    enabled: bool = False
    #: Prefer /dev/serial/by-id/... : it survives replugging and reboots.
    port: str = ""
    baud: int = 115200
    rtscts: bool = False
    #: 11-26; used when forming a new network only.
    channel: int = 15
    #: Send the CC2652 bootloader-skip sequence on connect.
    skip_bootloader: bool = True
    unavailable_after_s: float = 7200.0
    #: Seconds between automatic network backups into the state dir.
    backup_interval_s: float = 86400.0
    #: Aqara motion sensors send only "motion": "no motion" is reported after this many
    #: quiet seconds (the sensor re-arms after about 60 s).
    motion_clear_s: float = 90.0

    def __post_init__(self) -> None:
        _positive(self.motion_clear_s, "motion_clear_s")
        _positive(self.baud, "baud")
        _positive(self.unavailable_after_s, "unavailable_after_s")
        _positive(self.backup_interval_s, "backup_interval_s")
        if not 11 <= self.channel <= 26:
            raise _FieldError("channel", "must be 11-26")
        if self.enabled and not self.port:
            raise _FieldError("port", "is required when zigbee is enabled")


GpioKind = Literal["button", "contact", "motion", "relay", "led"]


@dataclass(frozen=True, slots=True)
class GpioDevice:
    name: str
    kind: GpioKind
    #: BCM pin number (GPIO17 is 17), or a gpiozero pin name like "BOARD11".
    pin: int | str
    #: Inputs: True when the pin reads high while active. Outputs: drive high for "on".
    active_high: bool = True
    #: Inputs: use the internal pull-up (buttons to ground). None: floating.
    pull_up: bool | None = None
    bounce_s: float = 0.05
    #: Button: held this long is a long press.
    hold_s: float = 1.0
    #: Button: a second press within this window is a double press.
    multi_press_s: float = 0.4
    #: Motion: "no motion" is reported after this many quiet seconds.
    clear_s: float = 60.0
    #: Relay/led: state at start.
    initial: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9_-]{1,48}", self.name):
            raise _FieldError("name", "must be 1-48 characters of a-z, 0-9, '_' or '-'")
        bcm_pin(self.pin)
        _non_negative(self.bounce_s, "bounce_s")
        _positive(self.hold_s, "hold_s")
        _positive(self.multi_press_s, "multi_press_s")
        _positive(self.clear_s, "clear_s")


@dataclass(frozen=True, slots=True)
class GpioSection:
    devices: tuple[GpioDevice, ...] = ()

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        names: set[str] = set()
        for i, dev in enumerate(self.devices):
            key = str(bcm_pin(dev.pin))
            if key in seen:
                raise ConfigError(
                    f"pin {dev.pin} is already used by {seen[key]!r}",
                    path=f"gpio.devices[{i}].pin",
                )
            seen[key] = dev.name
            if dev.name in names:
                raise ConfigError(f"duplicate name {dev.name!r}", path=f"gpio.devices[{i}].name")
            names.add(dev.name)


# ---------------------------------------------------------------------------------------------
# [location], [presence] and [[automations]] (docs/automations.md). Types the loader walks;
# each class checks its own fields, _check_automations the references between them.


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
            raise _FieldError("longitude", "give both latitude and longitude, or neither")
        if self.latitude is not None and not -90 <= self.latitude <= 90:
            raise _FieldError("latitude", "must be between -90 and 90")
        if self.longitude is not None and not -180 <= self.longitude <= 180:
            raise _FieldError("longitude", "must be between -180 and 180")
        if self.timezone:
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise _FieldError("timezone", f"unknown time zone {self.timezone!r}") from None


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
            raise _FieldError("name", "must be 1-48 characters of a-z, 0-9, '_' or '-'")
        for kind in ("ibeacon", "eddystone", "address"):
            for i, value in enumerate(getattr(self, kind)):
                try:
                    identity(kind, value)
                except PresenceConfigError as exc:
                    raise _FieldError(f"{kind}[{i}]", str(exc)) from None
        for i, irk in enumerate(self.irk):
            try:
                identity("irk", irk.reveal())
            except PresenceConfigError:
                raise _FieldError(f"irk[{i}]", "an IRK is 32 hex digits") from None
        if not (self.irk or self.ibeacon or self.eddystone or self.address):
            raise _FieldError("name", "needs at least one irk, ibeacon, eddystone or address")


@dataclass(frozen=True, slots=True)
class PresenceSection:
    #: Arrive when the smoothed RSSI reaches this (dBm) ...
    home_rssi: float = -90.0
    #: ... and stay while it is at least home_rssi - hysteresis_db.
    hysteresis_db: float = 6.0
    #: Away after this many seconds without a sighting strong enough to stay.
    away_after_s: float = 180.0
    #: Weight of a new RSSI sample in the running average (0 < rssi_alpha <= 1).
    rssi_alpha: float = 0.3
    people: tuple[PresencePerson, ...] = ()

    def __post_init__(self) -> None:
        _non_negative(self.hysteresis_db, "hysteresis_db")
        _positive(self.away_after_s, "away_after_s")
        if not 0 < self.rssi_alpha <= 1:
            raise _FieldError("rssi_alpha", "must be in (0, 1]")
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
    raise _FieldError(name, f"must be {what if sun else 'HH:MM[:SS]'}, not {value!r}")


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
            raise _FieldError("device", f"is required for a {t} trigger")
        if t in ("threshold", "state") and not self.metric:
            raise _FieldError("metric", f"is required for a {t} trigger")
        if t == "threshold" and (self.above is None) == (self.below is None):
            raise _FieldError("above", "a threshold trigger needs above or below (one of them)")
        _non_negative(self.hysteresis, "hysteresis")
        _non_negative(self.for_s, "for_s")
        if self.for_s and t not in ("threshold", "state"):
            raise _FieldError("for_s", "only goes with threshold and state triggers")
        if t == "event" and not self.action:
            raise _FieldError("action", "is required for an event trigger")
        if t == "stale" and not self.after_s > 0:
            raise _FieldError("after_s", "a stale trigger needs after_s > 0")
        if t in _TRIGGER_TO and self.to not in _TRIGGER_TO[t]:
            raise _FieldError("to", f"must be one of {', '.join(_TRIGGER_TO[t])}")
        if t == "time":
            _clock_time(self.at, "at", sun=False)
        if t == "sun" and self.at not in ("sunrise", "sunset"):
            raise _FieldError("at", "must be sunrise or sunset")
        if t == "presence" and not self.person:
            raise _FieldError("person", "is required for a presence trigger")


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
                raise _FieldError("after", "a time condition needs after, before or weekdays")
            for name in ("after", "before"):
                if getattr(self, name):
                    _clock_time(getattr(self, name), name, sun=True)
        if t == "state":
            if not self.device or not self.metric:
                raise _FieldError("device", "a state condition needs device and metric")
            if self.state is None and self.above is None and self.below is None:
                raise _FieldError("state", "a state condition needs state, above or below")
        if t == "presence":
            if not self.person:
                raise _FieldError("person", "is required for a presence condition")
            if self.state not in ("home", "away"):
                raise _FieldError("state", "must be home or away")
        if t == "uplink" and self.state not in ("up", "down"):
            raise _FieldError("state", "must be up or down")
        if t == "not_fired" and not self.seconds > 0:
            raise _FieldError("seconds", "a not_fired condition needs seconds > 0")


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
                raise _FieldError("command", "a command action needs device and command")
            if self.command == "pulse" and not 0 < self.seconds <= 3600:
                raise _FieldError("seconds", "a pulse needs 0 < seconds <= 3600")
        if t == "delay" and not 0 < self.seconds <= 86400:
            raise _FieldError("seconds", "a delay needs 0 < seconds <= 86400")
        if t == "publish" and not self.message:
            raise _FieldError("message", "is required for a publish action")
        if t == "run" and not self.automation:
            raise _FieldError("automation", "is required for a run action")
        if t == "if" and not self.conditions:
            raise _FieldError("conditions", "an if action needs conditions")
        if t == "choose" and not self.choose:
            raise _FieldError("choose", "a choose action needs at least one choice")
        if t == "sequence" and not self.actions:
            raise _FieldError("actions", "a sequence needs actions")


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
            raise _FieldError("id", "must be 1-48 characters of a-z, 0-9, '_' or '-'")
        if not self.triggers:
            raise _FieldError("triggers", "an automation needs at least one trigger")
        if not self.actions:
            raise _FieldError("actions", "an automation needs at least one action")


def _check_automations(cfg: Config) -> None:
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


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """``[devices."ble-a4c1381a2b3c"]``: what the home owner calls a device, and where it is."""

    name: str = ""
    room: str = ""

    def __post_init__(self) -> None:
        for key in ("name", "room"):
            value = getattr(self, key)
            if len(value) > 64 or not value.isprintable():
                raise _FieldError(key, "must be at most 64 printable characters")


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewaySection = field(default_factory=GatewaySection)
    store: StoreSection = field(default_factory=StoreSection)
    api: ApiSection = field(default_factory=ApiSection)
    upstream: UpstreamSection = field(default_factory=UpstreamSection)
    homeassistant: HomeAssistantSection = field(default_factory=HomeAssistantSection)
    ble: BleSection = field(default_factory=BleSection)
    zigbee: ZigbeeSection = field(default_factory=ZigbeeSection)
    gpio: GpioSection = field(default_factory=GpioSection)
    #: Names and rooms per device id (``migw name`` keeps its own in the state dir).
    devices: dict[str, DeviceEntry] = field(default_factory=dict)
    location: LocationSection = field(default_factory=LocationSection)
    presence: PresenceSection = field(default_factory=PresenceSection)
    automations: tuple[AutomationDef, ...] = ()

    def __post_init__(self) -> None:
        _check_automations(self)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def _is_mqtt_url(url: str) -> bool:
    """``mqtt://host[:port]`` or ``mqtts://...``, the port (if any) 1-65535, no credentials."""
    m = re.fullmatch(r"mqtts?://[^/\s:@]+(?::(\d{1,5}))?/?", url)
    return m is not None and (m.group(1) is None or 0 < int(m.group(1)) <= 65535)


class _FieldError(ValueError):
    """A value the loader reports under ``<section path>.<field>``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = message


def _positive(value: float, name: str) -> None:
    if not value > 0:
        raise _FieldError(name, "must be > 0")


def _non_negative(value: float, name: str) -> None:
    if not value >= 0:
        raise _FieldError(name, "must be >= 0")


#: Raspberry Pi 40-pin header: physical (BOARD) pin -> BCM GPIO number.
_BOARD_TO_BCM = {
    3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24,
    19: 10, 21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12,
    33: 13, 35: 19, 36: 16, 37: 26, 38: 20, 40: 21,
}  # fmt: skip


def bcm_pin(pin: int | str) -> int:
    """The BCM number of a pin given as 17, "GPIO17", "BCM17" or "BOARD11" (same pin)."""
    number: int | None = None
    if isinstance(pin, int):
        number = pin
    else:
        text = pin.strip().upper()
        if m := re.fullmatch(r"(?:GPIO|BCM)(\d{1,2})", text):
            number = int(m.group(1))
        elif m := re.fullmatch(r"BOARD(\d{1,2})", text):
            number = _BOARD_TO_BCM.get(int(m.group(1)))
            if number is None:
                raise _FieldError("pin", f"{pin} is not a GPIO pin of the 40-pin header")
        elif text.isdigit():
            number = int(text)
    if number is None or not 0 <= number <= 27:
        raise _FieldError(
            "pin", f"{pin!r} is not a Raspberry Pi GPIO: use 0-27, 'GPIO17' or 'BOARD11'"
        )
    return number


def _port(value: int) -> None:
    if not 0 <= value <= 65535:
        raise _FieldError("port", "must be 0-65535")


# ---------------------------------------------------------------------------------------------
# Loader


def load(path: Path) -> Config:
    """Read and validate a config file; every problem is a :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    return loads(text, base_dir=path.parent)


def loads(text: str, *, base_dir: Path | None = None) -> Config:
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise ConfigError("not valid TOML: nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise ConfigError(
            f"not valid TOML: {exc}", line=int(match.group(1)) if match else None
        ) from None
    loader = _Loader(text, base_dir or Path.cwd())
    cfg: Config = loader.build(Config, data, "")
    return cfg


def from_dict(data: Mapping[str, Any], *, base_dir: Path | None = None) -> Config:
    cfg: Config = _Loader("", base_dir or Path.cwd()).build(Config, data, "")
    return cfg


class _Loader:
    def __init__(self, text: str, base_dir: Path) -> None:
        self._lines = text.splitlines()
        self._base = base_dir

    def error(self, path: str, message: str) -> ConfigError:
        return ConfigError(message, path=path, line=self.line_of(path))

    def line_of(self, path: str) -> int | None:
        """Best-effort line number of a dotted key path such as ``gpio.devices[1].pin``."""
        if not self._lines or not path:
            return None
        parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
        table: list[str] = []
        counts: dict[str, int] = {}
        best: int | None = None
        prefix: int | None = None
        prefix_len = 0
        want_tables = list(parts[:-1])
        for lineno, raw in enumerate(self._lines, 1):
            line = raw.strip()
            if m := re.fullmatch(r"\[\[\s*([^\]]+?)\s*\]\](\s*#.*)?", line):
                table = _array_table_path(m.group(1).split("."), counts)
            elif m := re.fullmatch(r"\[\s*([^\]]+?)\s*\](\s*#.*)?", line):
                table = m.group(1).split(".")
            elif m := re.match(r"""["']?([^"'=\s]+)["']?\s*=""", line):
                key = m.group(1)
                full = [*table, *key.split(".")]
                if full == parts:
                    return lineno
                if full == want_tables and best is None:
                    best = lineno
                if len(full) > prefix_len and full == parts[: len(full)]:
                    # an inline table or array holds the key: the line of the outer key
                    prefix, prefix_len = lineno, len(full)
            if table in (parts, want_tables) and best is None:
                best = lineno
        return best if best is not None else prefix

    def build(self, cls: type[Any], data: Any, path: str) -> Any:
        if not isinstance(data, Mapping):
            raise self.error(path, f"must be a table, not {_tname(data)}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            sub = f"{path}.{key}" if path else key
            if key not in fields:
                close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.7)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                known = ", ".join(sorted(fields))
                raise self.error(sub, f"unknown key{hint}; known keys here: {known}")
            kwargs[key] = self.convert(hints[key], value, sub)
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            if exc.line is None and exc.path:
                raise ConfigError(
                    str(exc).split(": ", 1)[-1], path=exc.path, line=self.line_of(exc.path)
                ) from None
            raise
        except _FieldError as exc:
            raise self.error(f"{path}.{exc.field}" if path else exc.field, exc.message) from None
        except (ValueError, TypeError) as exc:
            raise self.error(path or "config", str(exc)) from None

    def convert(self, tp: Any, value: Any, path: str) -> Any:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (types.UnionType, typing.Union):
            if value is None and type(None) in args:
                return None
            errors = []
            for arg in args:
                if arg is type(None):
                    continue
                try:
                    return self.convert(arg, value, path)
                except ConfigError as exc:
                    errors.append(exc)
            names = " or ".join(_hname(a) for a in args if a is not type(None))
            raise self.error(path, f"must be {names}, not {_tname(value)}")
        if origin is Literal:
            if value not in args:
                choices = ", ".join(repr(a) for a in args)
                raise self.error(path, f"must be one of {choices}, not {value!r}")
            return value
        if origin is tuple:
            if not isinstance(value, list):
                raise self.error(path, f"must be an array, not {_tname(value)}")
            return tuple(self.convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if origin is dict:
            if not isinstance(value, Mapping):
                raise self.error(path, f"must be a table, not {_tname(value)}")
            return {str(k): self.convert(args[1], v, f"{path}.{k}") for k, v in value.items()}
        if dataclasses.is_dataclass(tp):
            return self.build(tp, value, path)  # type: ignore[arg-type]
        if tp is bool:
            if not isinstance(value, bool):
                raise self.error(path, f"must be true or false, not {_tname(value)}")
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(path, f"must be an integer, not {_tname(value)}")
            return value
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.error(path, f"must be a number, not {_tname(value)}")
            if not math.isfinite(value):
                raise self.error(path, f"must be a finite number, not {value}")
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise self.error(path, f"must be a string, not {_tname(value)}")
            return value
        if tp is Path:
            if not isinstance(value, str) or not value:
                raise self.error(path, f"must be a path string, not {_tname(value)}")
            try:
                p = Path(value).expanduser()
            except RuntimeError as exc:  # ~nosuchuser
                raise self.error(path, f"cannot expand {value!r}: {exc}") from None
            return p if p.is_absolute() else (self._base / p)
        if tp is Secret:
            if not isinstance(value, str):
                raise self.error(path, f"must be a string, not {_tname(value)}")
            return Secret(value)
        raise self.error(path, f"unsupported type {tp!r}")  # pragma: no cover - schema bug


def _array_table_path(names: list[str], counts: dict[str, int]) -> list[str]:
    """``[[automations.triggers]]`` -> ``automations [2] triggers [0]``: a nested array of
    tables is numbered within the current element of its parent array."""
    path: list[str] = []
    for i, name in enumerate(names):
        path.append(name)
        key = ".".join(path)
        if i == len(names) - 1:
            counts[key] = counts.get(key, -1) + 1
        if key in counts:
            path.append(f"[{counts[key]}]")
    return path


def _tname(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _hname(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).lower().replace("str", "string")


#: ``migw ble key`` keeps bind keys here, one file per MAC, under the state directory.
KEY_DIR_NAME = "ble-keys"


def key_dir(cfg: Config) -> Path:
    return Path(cfg.gateway.state_dir) / KEY_DIR_NAME


def with_key_dir(cfg: Config) -> Config:
    """``cfg`` with the key files ``migw ble key`` wrote (``<state_dir>/ble-keys/<MAC>``)
    added to ``ble.key_files``; a MAC with a key in the config keeps the config's."""
    try:
        files = sorted(p for p in key_dir(cfg).iterdir() if p.is_file())
    except OSError:
        return cfg
    configured = {ble_device_id(m) for m in (*cfg.ble.keys, *cfg.ble.key_files)}
    extra = {
        p.name: p
        for p in files
        if ble_device_id(p.name) is not None and ble_device_id(p.name) not in configured
    }
    if not extra:
        return cfg
    ble = dataclasses.replace(cfg.ble, key_files={**cfg.ble.key_files, **extra})
    return cfg.replace(ble=ble)


def read_secret(value: Secret | None, file: Path | None, what: str) -> Secret | None:
    """A secret given inline or by file (first line, stripped). Errors never show it."""
    if value is not None:
        return value
    if file is None:
        return None
    try:
        text = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {file}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"{what} file {file} is empty")
    return Secret(text.splitlines()[0].strip())
