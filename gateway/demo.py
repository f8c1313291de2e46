"""Demo mode: the real service on simulated hardware (hw_mocks).

The production adapters take transport factories (:class:`gateway.adapters.Transports`);
:func:`demo_transports` gives them the simulated ones: gpiozero's MockFactory pins with a
scripted person at the inputs, and a Z-Stack simulator on a pty as the Zigbee link.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.adapters import AdapterContext, BleTransport, DemoOptions, Transports
from gateway.config import (
    ApiSection,
    Config,
    GatewaySection,
    GpioDevice,
    GpioKind,
    GpioSection,
)

if TYPE_CHECKING:
    from gateway.devices import DeviceDirectory
    from gateway.store import Commit

_LOGGER = logging.getLogger("gateway.demo")

#: Readings logged per second at most; the rest are summarised.
LOG_RATE = 20
#: The demo's device limit at least: 10,000 simulated BLE sensors (the most ``migw run
#: --demo --ble-devices`` takes), the Zigbee stick's and the pins' devices.
DEMO_MAX_DEVICES = 10_100


def default_state_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "migw" / "demo"


DEMO_GPIO = (
    GpioDevice(name="hall-button", kind=GpioKind.BUTTON, pin=17, pull_up=True, active_high=False),
    GpioDevice(name="front-door", kind=GpioKind.CONTACT, pin=27, pull_up=True, active_high=True),
    GpioDevice(name="hall-pir", kind=GpioKind.MOTION, pin=22, clear_s=5.0),
    GpioDevice(name="hall-relay", kind=GpioKind.RELAY, pin=23),
    GpioDevice(name="status-led", kind=GpioKind.LED, pin=24, initial=True),
)


def demo_config(base: Config, state_dir: Path | None, api_port: int | None) -> Config:
    """The user's config (or defaults) with the demo's pins, a local state dir and a
    loopback API."""
    cfg = base.replace(
        gateway=GatewaySection(
            id=base.gateway.id,
            state_dir=state_dir or default_state_dir(),
            log_level=base.gateway.log_level,
            # room for the largest simulated fleet (``--ble-devices`` up to 10,000)
            max_devices=max(base.gateway.max_devices, DEMO_MAX_DEVICES),
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
    from gateway.automations.demo import demo_automations

    return demo_automations(cfg)


#: The simulated stick: seconds between reports, and how long the network stays open.
DEMO_REPORT_INTERVAL = 1.5
DEMO_PERMIT_JOIN_S = 254
#: Its files live apart from a real stick's (the demo may share a state directory).
ZIGBEE_DEMO_DIR = "zigbee-demo"


#: Seed of the simulated stick: its devices get the same addresses in every demo (the
#: demo's automations name the leak sensor and the plug by them).
DEMO_ZIGBEE_SEED = 4447


@dataclasses.dataclass(slots=True)
class SimulatedStick:
    """A :class:`~gateway.adapters.ZigbeeLink` to ``hw_mocks.znp.ZStackSimulator`` on a pty
    in ``state_dir``, with the Aqara models of ``hw_mocks.aqara``. One simulated stick per
    link: its network survives a restart of the driver, like a real stick's."""

    state_dir: Path
    _: dataclasses.KW_ONLY
    #: The driver opens the network this long once the stick is up (the demo's devices join).
    open_network_s: int | None = DEMO_PERMIT_JOIN_S
    #: Seconds between the simulated devices' reports.
    report_interval: float = DEMO_REPORT_INTERVAL
    _sim: Any = dataclasses.field(default=None, init=False, repr=False)

    @property
    def path(self) -> str:
        return str(self.state_dir / "ttyZNP-sim")

    def info(self) -> dict[str, str]:
        from hw_mocks.aqara import MODELS

        return {"adapter": "simulated Z-Stack", "devices_simulated": str(len(MODELS))}

    def session(self) -> AbstractAsyncContextManager[object]:
        return self._run()

    @contextlib.asynccontextmanager
    async def _run(self) -> AsyncIterator[object]:
        if self._sim is None:
            from hw_mocks.aqara import MODELS
            from hw_mocks.znp import ZStackSimulator

            # the simulated stick keeps its NV in the state dir, as a real stick keeps its
            # flash: a restarted demo resumes its network (and its devices) instead of
            # forming a new PAN every time
            self._sim = ZStackSimulator(
                link_path=self.path,
                devices=MODELS,
                report_interval=self.report_interval,
                seed=DEMO_ZIGBEE_SEED,
                nv_path=self.state_dir / "stick-nv.json",
            )
        await self._sim.start()
        try:
            yield self._sim
        finally:
            await self._sim.stop()


def demo_transports(
    options: DemoOptions, *, report_interval: float = DEMO_REPORT_INTERVAL
) -> Transports:
    """Simulated transports for the adapters, sized by ``options`` (``report_interval``: of
    the simulated Zigbee devices)."""
    from hw_mocks.gpio import mock_factory, run_script

    async def stimulus(factory: Any, specs: Sequence[Any]) -> None:
        await run_script(factory, list(specs), options.gpio_interval)

    return Transports(
        pin_factory=mock_factory(),  # never the board's pins in a demo
        gpio_stimulus=stimulus if options.gpio else None,
        zigbee_link=(
            (lambda d: SimulatedStick(d / ZIGBEE_DEMO_DIR, report_interval=report_interval))
            if options.zigbee
            else None
        ),
        ble=_demo_ble(options) if options.ble_devices > 0 else BleTransport(None),
    )


def _demo_ble(options: DemoOptions) -> BleTransport:
    """The simulated BLE fleet: its scanner, its own keys, silent at most 30 adverts long
    (the fleet's simulator, and the BLE codecs it encodes with, loaded only for one)."""
    from hw_mocks.ble import SyntheticFleet

    fleet = SyntheticFleet(options.ble_devices, rate=options.ble_rate)
    return BleTransport(
        fleet.factory(),
        keys=fleet.keys,
        info={"adapter": "simulated", "devices_simulated": str(len(fleet.sensors))},
        quiet_s=30.0 / fleet.rate,
    )


def demo_context(
    config: Config, state_dir: Path, options: DemoOptions, **transport_options: Any
) -> AdapterContext:
    """The adapters' context of a demo: its options and the simulated transports."""
    return AdapterContext(config, state_dir, demo_transports(options, **transport_options))


class ReadingLogger:
    """Logs committed readings as they arrive, at most LOG_RATE lines a second."""

    def __init__(self, directory: DeviceDirectory | None = None) -> None:
        self._directory = directory
        self._window = 0.0
        self._count = 0
        self._skipped = 0

    def __call__(self, commit: Commit) -> None:
        readings, events = commit.readings, commit.events
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
