"""Demo mode: the real service on simulated hardware (hw_mocks)."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import (
    ApiSection,
    Config,
    GatewaySection,
    GpioDevice,
    GpioSection,
)
from gateway.model import Event, Reading

if TYPE_CHECKING:
    from gateway.devices import DeviceDirectory

_LOGGER = logging.getLogger("gateway.demo")

#: Readings logged per second at most; the rest are summarised.
LOG_RATE = 20


def default_state_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "migw" / "demo"


DEMO_GPIO = (
    GpioDevice(name="hall-button", kind="button", pin=17, pull_up=True, active_high=False),
    GpioDevice(name="front-door", kind="contact", pin=27, pull_up=True, active_high=True),
    GpioDevice(name="hall-pir", kind="motion", pin=22, clear_s=5.0),
    GpioDevice(name="hall-relay", kind="relay", pin=23),
    GpioDevice(name="status-led", kind="led", pin=24, initial=True),
)


def demo_config(base: Config, state_dir: Path | None, api_port: int | None) -> Config:
    """The user's config (or defaults) with the demo's pins, a local state dir and a
    loopback API."""
    cfg = base.replace(
        gateway=GatewaySection(
            id=base.gateway.id,
            state_dir=state_dir or default_state_dir(),
            log_level=base.gateway.log_level,
        ),
        api=ApiSection(
            enabled=base.api.enabled,
            listen="127.0.0.1",
            port=api_port if api_port is not None else base.api.port,
            max_body_bytes=base.api.max_body_bytes,
        ),
    )
    # the simulated fleet is the demo's own: every sensor of it joins
    cfg = cfg.replace(ble=dataclasses.replace(cfg.ble, join="all"))
    if not cfg.gpio.devices:
        cfg = cfg.replace(gpio=GpioSection(devices=DEMO_GPIO))
    return cfg


class ReadingLogger:
    """Logs committed readings as they arrive, at most LOG_RATE lines a second."""

    def __init__(self, directory: DeviceDirectory | None = None) -> None:
        self._directory = directory
        self._window = 0.0
        self._count = 0
        self._skipped = 0

    def __call__(self, readings: Sequence[Reading], events: Sequence[Event]) -> None:
        now = time.monotonic()
        if now - self._window >= 1.0:
            if self._skipped:
                _LOGGER.info("... and %d more readings in the last second", self._skipped)
            self._window, self._count, self._skipped = now, 0, 0
        for r in readings:
            if self._count < LOG_RATE:
                self._count += 1
                unit = f" {r.unit}" if r.unit else ""
                _LOGGER.info(
                    "#%d %s %s = %s%s", r.seq, self._who(r.device_id), r.metric, r.value, unit
                )
            else:
                self._skipped += 1
        for e in events:
            if self._count < LOG_RATE:
                self._count += 1
                button = f" button {e.button}" if e.button is not None else ""
                _LOGGER.info(
                    "#%d %s %s: %s%s", e.seq, self._who(e.device_id), e.event, e.action, button
                )
            else:
                self._skipped += 1

    def _who(self, device_id: str) -> str:
        """The id, with the home owner's name when it has one (``migw name``)."""
        entry = self._directory.entry(device_id) if self._directory is not None else None
        return f"{device_id} ({entry.name})" if entry is not None and entry.name else device_id
