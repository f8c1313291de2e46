"""Scripted GPIO activity on gpiozero's own MockFactory pins."""

from __future__ import annotations

import asyncio
import random
from typing import Any, Protocol


class _Spec(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> Any: ...
    @property
    def pin(self) -> int | str: ...
    @property
    def active_high(self) -> bool: ...
    @property
    def pull_up(self) -> bool | None: ...
    @property
    def hold_s(self) -> float: ...


def mock_factory() -> Any:
    """A MockFactory whose pins support pull-ups and PWM, like a Pi's."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    return MockFactory(pin_class=MockPWMPin)


def _level(spec: _Spec, active: bool) -> bool:
    """The electrical level that makes ``spec`` read ``active``."""
    return active == spec.active_high


def drive(factory: Any, spec: _Spec, active: bool) -> None:
    pin = factory.pin(spec.pin)
    if _level(spec, active):
        pin.drive_high()
    else:
        pin.drive_low()


async def press(factory: Any, spec: _Spec, times: int = 1, hold: float = 0.08) -> None:
    for _ in range(times):
        drive(factory, spec, True)
        await asyncio.sleep(hold)
        drive(factory, spec, False)
        await asyncio.sleep(0.12)


async def run_script(
    factory: Any, specs: list[Any], interval: float, *, rng: random.Random | None = None
) -> None:
    """Forever: every ``interval`` seconds, act on one simulated input (button press patterns,
    door open/close, PIR trigger). Runs on the loop, as a person at the pins would."""
    rng = rng or random.Random(7)
    inputs = [
        s for s in specs if str(getattr(s.kind, "value", s.kind)) in ("button", "contact", "motion")
    ]
    for s in inputs:
        drive(factory, s, False)
    if not inputs:
        await asyncio.Event().wait()
    door_open: dict[str, bool] = {}
    while True:
        await asyncio.sleep(interval)
        spec = rng.choice(inputs)
        kind = str(getattr(spec.kind, "value", spec.kind))
        if kind == "button":
            pattern = rng.choice(["single", "single", "double", "long"])
            if pattern == "long":
                await press(factory, spec, 1, hold=spec.hold_s + 0.3)
            else:
                await press(factory, spec, 2 if pattern == "double" else 1)
        elif kind == "contact":
            state = not door_open.get(spec.name, False)
            door_open[spec.name] = state
            drive(factory, spec, state)
        else:
            drive(factory, spec, True)
            await asyncio.sleep(0.5)
            drive(factory, spec, False)
