"""Adapters: the ``drivers`` library seen through the gateway's :class:`~gateway.driver.Driver`.

Each module here exposes ``create(ctx: AdapterContext) -> Driver | None`` (None when its
section is disabled). The service builds every driver listed in :data:`ADAPTERS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.config import Config
from gateway.driver import Driver


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """Sizes of the simulated hardware for ``migw run --demo``."""

    ble_devices: int = 6
    #: Adverts per second per simulated BLE device.
    ble_rate: float = 0.5
    zigbee: bool = True
    gpio: bool = True
    #: Seconds between scripted GPIO changes (button presses, door, PIR).
    gpio_interval: float = 3.0


@dataclass(frozen=True, slots=True)
class AdapterContext:
    config: Config
    state_dir: Path
    #: Set in demo mode: build on simulated hardware from hw_mocks.
    demo: DemoOptions | None = None


#: Module names under gateway.adapters, in start order.
ADAPTERS: list[str] = ["gpio", "ble", "zigbee"]


def build_drivers(ctx: AdapterContext) -> list[Driver]:
    drivers: list[Driver] = []
    for name in ADAPTERS:
        module = importlib.import_module(f"gateway.adapters.{name}")
        create: Callable[[AdapterContext], Driver | None] = module.create
        driver = create(ctx)
        if driver is not None:
            drivers.append(driver)
    return drivers
