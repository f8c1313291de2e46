"""What the Zigbee tests share: a listener that keeps everything, a bounded poll, and a
coordinator's sessions under a supervisor."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from drivers.supervisor import Supervisor
from drivers.zigbee.coordinator import Coordinator, supervise
from drivers.zigbee.devices import DeviceRecord


@dataclass
class Recorder:
    """A listener that keeps everything (the drivers-level sink)."""

    devices: dict[str, DeviceRecord] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)
    readings: list[tuple[str, str, object]] = field(default_factory=list)
    events: list[tuple[str, str, int | None]] = field(default_factory=list)

    def device_changed(self, device: DeviceRecord) -> None:
        self.devices[device.ieee] = device

    def device_left(self, ieee: str) -> None:
        self.left.append(ieee)

    def reading(self, ieee: str, metric: str, value: object) -> None:
        self.readings.append((ieee, metric, value))

    def event(self, ieee: str, action: str, button: int | None) -> None:
        self.events.append((ieee, action, button))

    def of(self, ieee: str) -> list[tuple[str, object]]:
        return [(m, v) for i, m, v in self.readings if i == ieee]


async def until(pred: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``pred`` until it holds; TimeoutError after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(coord: Coordinator) -> AsyncIterator[Supervisor]:
    """The coordinator's sessions under a supervisor: run() is one session, so recovery
    (reconnects, "needs a human") is asserted through the supervisor around it."""
    sup = supervise(coord)
    task = asyncio.create_task(sup.run(), name="coordinator-under-test")
    try:
        yield sup
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
