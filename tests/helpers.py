"""Small builders shared by tests (no mocks of our own code)."""

from __future__ import annotations

import time

from gateway.model import Event, Reading, Stamp

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
