"""A synthetic driver for tests and benches: readings (and button events) at a steady rate.

It stands where a radio's driver would (the service's driver seam), so a test or a bench
feeds the real ingest, store and sync path without hardware. Nothing here imports pytest:
``bench/`` uses it too.
"""

from __future__ import annotations

import asyncio

from drivers.events import DeviceEvent
from gateway.driver import DriverHealth, Sink
from gateway.model import Command, CommandResult, CommandStatus, DeviceUpdate, Transport


class SynthDriver:
    """A driver that emits ``temperature`` readings for ``devices`` devices at ``rate`` per
    second (round robin) and a button event every ``event_every`` readings."""

    name = "synth"

    def __init__(self, devices: int = 4, rate: float = 200.0, event_every: int = 0) -> None:
        self.devices = devices
        self.rate = rate
        self.event_every = event_every
        self.produced = 0
        self.running = asyncio.Event()
        self.paused = False

    def owns(self, device_id: str) -> bool:
        return False

    def health(self) -> DriverHealth:
        return DriverHealth()

    async def command(self, device_id: str, command: Command) -> CommandResult:
        return CommandResult(CommandStatus.UNKNOWN_DEVICE)

    async def run(self, sink: Sink) -> None:
        for i in range(self.devices):
            sink.device(DeviceUpdate(id=f"synth-{i}", transport=Transport.BLE, model="synth"))
        self.running.set()
        tick = 0.01
        carry = 0.0
        while True:
            await asyncio.sleep(tick)
            if self.paused:
                continue
            carry += self.rate * tick
            n = int(carry)
            carry -= n
            for _ in range(n):
                i = self.produced
                self.produced += 1
                sink.reading(f"synth-{i % self.devices}", "temperature", float(i % 1000) / 10)
                if self.event_every and i % self.event_every == 0:
                    sink.event("synth-btn", DeviceEvent("button", "single"))
