"""Small builders shared by tests (no mocks of our own code)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.events import DeviceEvent
from gateway.driver import DriverHealth, Sink
from gateway.model import (
    Command,
    CommandResult,
    CommandStatus,
    DeviceUpdate,
    Event,
    Reading,
    Stamp,
    Value,
)

BOOT = "00000000-0000-0000-0000-000000000001"
ROOT = Path(__file__).resolve().parents[1]
#: What a source tree ships (what tools/install.sh is run from).
SHIPPED = [
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "config.example.toml",
    "gateway",
    "drivers",
    "hw-mocks",
    "tools",
    "systemd",
    "docs",
]


def stamp(wall: float | None = None, mono: float = 1.0, synced: bool = True) -> Stamp:
    return Stamp(wall=time.time() if wall is None else wall, mono=mono, boot=BOOT, synced=synced)


def reading(
    device: str = "gpio-a",
    metric: str = "temperature",
    value: Value = 21.5,
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

    def event(self, device_id: str, event: DeviceEvent) -> None:
        self.events.append((device_id, event.event, event.action, event.button))


def vectors(name: str, *kinds: str) -> list[dict[str, Any]]:
    """The records of ``tests/vectors/<name>`` (one JSON object a line), only those of the
    given ``kind``s when any are named."""
    lines = (ROOT / "tests" / "vectors" / name).read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if not kinds or r["kind"] in kinds]


def znp_frame_hex(vector: dict[str, Any]) -> str:
    """A ZNP vector's whole MT frame in hex (computed with SOF, length and FCS where the
    source gave only the payload)."""
    return str(vector.get("full_frame_hex_computed") or vector["hex"])


def _not_built(_dir: str, names: list[str]) -> set[str]:
    return {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".egg-info"))}


def copy_shipped(dest: Path) -> Path:
    """A frozen copy of the shipped files of this checkout in ``dest`` (the working tree may
    change under a test), without byte code or build metadata."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, dest / name, ignore=_not_built)
        else:
            shutil.copy2(path, dest / name)
    return dest


class IdleDriver:
    """A driver at the seam (gateway.driver.Driver) that owns no device, answers every
    command ``unsupported`` and reports empty health; tests subclass it and give ``run``
    the behaviour they are about (this one waits until cancelled)."""

    name = "idle"

    async def run(self, sink: Sink) -> None:
        await asyncio.Event().wait()

    async def command(self, device_id: str, command: Command) -> CommandResult:
        return CommandResult(CommandStatus.UNSUPPORTED)

    def owns(self, device_id: str) -> bool:
        return False

    def health(self) -> DriverHealth:
        return DriverHealth()


def migw_command() -> list[str]:
    """How to start the `migw` entry point of this environment as a subprocess."""
    script = Path(sys.executable).with_name("migw")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from gateway.cli import run; run()"]
