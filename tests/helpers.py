"""Small builders shared by tests (no mocks of our own code)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway.model import DeviceUpdate, Event, Reading, Stamp, Value

BOOT = "00000000-0000-0000-0000-000000000001"


def stamp(wall: float | None = None, mono: float = 1.0, synced: bool = True) -> Stamp:
    return Stamp(wall=time.time() if wall is None else wall, mono=mono, boot=BOOT, synced=synced)


def reading(
    device: str = "gpio-a",
    metric: str = "temperature",
    value: float | bool = 21.5,
    unit: str | None = "°C",
    wall: float | None = None,
) -> Reading:
    return Reading(
        device_id=device, metric=metric, value=value, unit=unit, stamp=stamp(wall), source="test"
    )


def event(device: str = "gpio-b", action: str = "single") -> Event:
    return Event(device_id=device, event="button", action=action, stamp=stamp(), source="test")


@dataclass
class RecordingSink:
    """A Sink (gateway.driver) that records what a driver reports, for adapter tests."""

    devices: list[DeviceUpdate] = field(default_factory=list)
    readings: list[tuple[str, str, Value]] = field(default_factory=list)
    events: list[tuple[str, str, str, int | None]] = field(default_factory=list)

    def device(self, update: DeviceUpdate) -> None:
        self.devices.append(update)

    def reading(self, device_id: str, metric: str, value: Value) -> None:
        self.readings.append((device_id, metric, value))

    def event(
        self,
        device_id: str,
        event: str,
        action: str,
        button: int | None = None,
        properties: tuple[tuple[str, int], ...] = (),
    ) -> None:
        self.events.append((device_id, event, action, button))


def migw_command() -> list[str]:
    """How to start the `migw` entry point of this environment as a subprocess."""
    script = Path(sys.executable).with_name("migw")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from gateway.cli import run; run()"]
