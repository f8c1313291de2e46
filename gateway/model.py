"""Typed, frozen values that flow through the gateway."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from drivers.results import CommandResult, CommandStatus, Value

__all__ = [
    "Command",
    "CommandResult",
    "CommandStatus",
    "Device",
    "DeviceStatus",
    "DeviceUpdate",
    "Event",
    "Reading",
    "Stamp",
    "Transport",
    "Value",
]


class Transport(enum.StrEnum):
    BLE = "ble"
    ZIGBEE = "zigbee"
    GPIO = "gpio"


class DeviceStatus(enum.StrEnum):
    OK = "ok"
    NEEDS_KEY = "needs_key"  # encrypted adverts, no key configured
    KEY_INVALID = "key_invalid"  # a key is configured but does not decrypt
    UNAVAILABLE = "unavailable"  # silent for longer than its availability window
    UNSUPPORTED = "unsupported"  # seen, but its format/product is not decoded
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Stamp:
    """When a value was received: wall time plus what it takes to re-stamp it later.

    A Pi without an RTC boots with a wrong wall clock; ``mono`` (CLOCK_MONOTONIC, seconds
    since this boot) and ``boot`` (the kernel's boot id) let the sync agent re-stamp the
    reading once NTP has synchronised the clock. ``synced`` tells whether ``wall`` was taken
    from a synchronised clock.
    """

    wall: float
    mono: float
    boot: str
    synced: bool


@dataclass(frozen=True, slots=True)
class Reading:
    device_id: str
    metric: str
    value: Value
    unit: str | None
    stamp: Stamp
    source: str  # driver name: "gpio", "ble", "zigbee"
    seq: int = 0  # gateway-wide sequence number, assigned by the store on commit


@dataclass(frozen=True, slots=True)
class Event:
    """A button or dimmer event: not a metric, published as an event."""

    device_id: str
    event: str  # "button"
    action: str  # single|double|triple|long|release|hold
    stamp: Stamp
    source: str
    button: int | None = None
    seq: int = 0
    #: Extra values the event carries as sent (dimmer ``steps``, ``presses``, ``duration``).
    properties: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    transport: Transport
    model: str
    name: str
    last_seen: float | None = None
    battery: float | None = None
    rssi: int | None = None
    lqi: int | None = None
    status: DeviceStatus = DeviceStatus.UNKNOWN
    manufacturer: str = ""
    #: Sleepy devices send on change only: silence is not unavailability.
    sleepy: bool = False
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def room(self) -> str:
        """Where the home owner put it (``migw name ID NAME --room R``, ``[devices]``)."""
        return self.attrs.get("room", "")


@dataclass(frozen=True, slots=True)
class DeviceUpdate:
    """What a driver knows about a device; None fields leave the stored value unchanged."""

    id: str
    transport: Transport
    model: str | None = None
    name: str | None = None
    manufacturer: str | None = None
    rssi: int | None = None
    lqi: int | None = None
    status: DeviceStatus | None = None
    sleepy: bool | None = None
    attrs: dict[str, str] | None = None


CommandAction = Literal["on", "off", "toggle", "pulse", "set"]


@dataclass(frozen=True, slots=True)
class Command:
    """A command to a device: ``{"switch": true}`` is ``Command("on")``."""

    action: CommandAction
    seconds: float | None = None  # pulse length
    values: dict[str, Value] = field(default_factory=dict)  # for "set"
