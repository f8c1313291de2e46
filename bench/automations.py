"""Automation latency: a committed reading -> the relay command carried out.

The real service on gpiozero's MockFactory pins: the front-door contact is driven, its
reading is committed by the store, the automation engine fires ``state -> toggle relay`` and
the command goes through the command router to the GPIO relay. Measured from the store's
commit callback to the router's answer (the relay pin already switched), so the store's
batching window before the commit is not counted (it is the store's figure).
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.adapters import Transports
from gateway.config import (
    ActionDef,
    ApiSection,
    AutomationDef,
    Config,
    GatewaySection,
    GpioDevice,
    GpioKind,
    GpioSection,
    TriggerDef,
)
from gateway.service import Service
from gateway.store import Commit

DOOR_PIN = 27
RELAY = "gpio-hall-relay"


def _config(state: Path) -> Config:
    return Config(
        gateway=GatewaySection(id="bench", state_dir=state),
        api=ApiSection(enabled=False),
        gpio=GpioSection(
            devices=(
                GpioDevice(name="front-door", kind=GpioKind.CONTACT, pin=DOOR_PIN, bounce_s=0.0),
                GpioDevice(name="hall-relay", kind=GpioKind.RELAY, pin=23),
            )
        ),
        automations=(
            AutomationDef(
                id="door-relay",
                mode="parallel",
                triggers=(TriggerDef(type="state", device="gpio-front-door", metric="opening"),),
                actions=(ActionDef(type="command", device=RELAY, command="toggle"),),
            ),
        ),
    )


async def _measure(n: int) -> list[float]:
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    factory = MockFactory(pin_class=MockPWMPin)
    with tempfile.TemporaryDirectory() as tmp:
        async with Service(_config(Path(tmp)), transports=Transports(pin_factory=factory)) as svc:
            store, auto = svc.store, svc.automations
            assert store is not None
            assert auto is not None
            await asyncio.sleep(0.5)  # initial states committed and seen
            assert auto.engine is not None
            # the flood guard (20 firings in 10 s) would stop this deliberate flood
            auto.engine.limits = dataclasses.replace(auto.engine.limits, rate_max=1_000_000)
            commits: list[float] = []

            def on_commit(commit: Commit) -> None:
                now = time.perf_counter()
                commits.extend(now for r in commit.readings if r.device_id == "gpio-front-door")

            store.subscribe(on_commit)
            done = auto.effects.command_times
            start = len(done)
            pin = factory.pin(DOOR_PIN)
            for i in range(n):
                pin.drive_high() if i % 2 == 0 else pin.drive_low()
                async with asyncio.timeout(5):
                    while len(done) - start <= i:
                        await asyncio.sleep(0.001)
                await asyncio.sleep(0.01)
            return [d - c for c, d in zip(commits, done[start:], strict=False)]


def run(quick: bool) -> list[dict[str, Any]]:
    samples = asyncio.run(_measure(60 if quick else 400))
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return [
        {
            "name": "automation: committed reading -> relay command done, p50",
            "value": statistics.median(ms),
            "unit": "ms",
        },
        {
            "name": "automation: committed reading -> relay command done, p99",
            "value": p99,
            "unit": "ms",
            "target": "<= 50",
        },
    ]
