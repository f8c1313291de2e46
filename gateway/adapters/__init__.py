"""Adapters: the ``drivers`` library seen through the gateway's :class:`~gateway.driver.Driver`.

Each module here exposes ``create(ctx: AdapterContext) -> Driver | None`` (None when its
section is disabled). :func:`build_drivers` builds them in start order.

How an adapter reaches its hardware is a transport factory in :class:`Transports`, modelled
on gpiozero's pin factories: production leaves them unset (real pins, the configured serial
port), ``gateway.demo`` and tests pass simulated ones from ``hw_mocks``. The adapters never
import the simulators.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gateway.config import Config
from gateway.driver import Driver
from gateway.model import DeviceStatus, DeviceUpdate, Transport

if TYPE_CHECKING:
    from drivers.ble.scanner import ScannerFactory


class ZigbeeLink(Protocol):
    """The serial link to a Z-Stack stick, opened by a transport factory.

    ``path`` is the port the coordinator opens. :meth:`session` is entered before the
    coordinator runs and left after it stopped (a real port: no work; the demo's simulated
    stick starts and stops there)."""

    @property
    def path(self) -> str: ...

    @property
    def state_dir(self) -> Path:
        """Where the coordinator keeps its device table and backups for this link."""
        ...

    @property
    def open_network_s(self) -> int | None:
        """Permit joining for this many seconds once the stick is up (None: do not)."""
        ...

    def info(self) -> dict[str, str]:
        """Facts for health (``adapter``, ...); no secrets."""
        ...

    def session(self) -> AbstractAsyncContextManager[object]: ...


#: Something acting on GPIO inputs while the driver runs (the demo's scripted person at the
#: pins): called with the pin factory and the configured pin specs, runs until cancelled.
GpioStimulus = Callable[[Any, Sequence[Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BleTransport:
    """Where BLE adverts come from instead of bleak on the configured adapter.

    ``factory`` builds a scanner shaped like bleak's (``drivers.ble.scanner.ScannerFactory``;
    None: no BLE at all). ``keys`` are hex bind keys of the transport's own devices (a
    simulated fleet's), added to the configured ones; ``info`` describes the transport in
    health (no secrets); ``quiet_s``: its devices may be silent this long (availability).
    The scanner has no supervisor of its own: the service's (``ServiceTiming.supervisor``)
    restarts it.
    """

    factory: ScannerFactory | None
    keys: Mapping[str, str] = field(default_factory=dict)
    info: Mapping[str, str] = field(default_factory=dict)
    quiet_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Transports:
    """Transport factories for the adapters; None means the real hardware."""

    #: A gpiozero pin factory (``gpiozero.pins.mock.MockFactory`` in the demo and tests);
    #: None: gpiozero's default for the board.
    pin_factory: Any = None
    gpio_stimulus: GpioStimulus | None = None
    #: Opens the Zigbee link for a state directory; None: the configured serial port.
    #: When set, Zigbee runs whatever ``zigbee.enabled`` says.
    zigbee_link: Callable[[Path], ZigbeeLink] | None = None
    #: BLE adverts from somewhere else than bleak; when set, BLE runs whatever
    #: ``ble.enabled`` says (its ``factory`` None: no BLE).
    ble: BleTransport | None = None


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """Sizes of the simulated hardware for ``migw run --demo``."""

    ble_devices: int = 6
    #: Adverts per second per simulated BLE device.
    ble_rate: float = 0.5
    zigbee: bool = True
    #: Scripted activity on the simulated GPIO inputs.
    gpio: bool = True
    #: Seconds between scripted GPIO changes (button presses, door, PIR).
    gpio_interval: float = 3.0


@dataclass(frozen=True, slots=True)
class AdapterContext:
    """What an adapter is built from: the config, the state directory and how to reach the
    hardware (the demo is nothing but other transports)."""

    config: Config
    state_dir: Path
    transports: Transports = field(default_factory=Transports)


@dataclass(frozen=True, slots=True)
class DeviceIds:
    """How one adapter names its devices (``<prefix><native id>``: ``zb-00158d...``) on its
    transport, and the short device updates every adapter sends."""

    prefix: str
    transport: Transport

    def of(self, native: str) -> str:
        return self.prefix + native

    def owns(self, device_id: str) -> bool:
        return device_id.startswith(self.prefix)

    def native(self, device_id: str) -> str:
        return device_id[len(self.prefix) :]

    def update(
        self, device_id: str, status: DeviceStatus | None = None, *, rssi: int | None = None
    ) -> DeviceUpdate:
        """A status change (unavailable, back) or a new signal strength, nothing else."""
        return DeviceUpdate(id=device_id, transport=self.transport, status=status, rssi=rssi)


#: Each adapter's device ids.
GPIO_IDS = DeviceIds("gpio-", Transport.GPIO)
BLE_IDS = DeviceIds("ble-", Transport.BLE)
ZIGBEE_IDS = DeviceIds("zb-", Transport.ZIGBEE)


#: Driver names, in start order.
ADAPTERS: tuple[str, ...] = ("gpio", "ble", "zigbee")


def factory(name: str) -> Callable[[AdapterContext], Driver | None]:
    """The ``create`` of the adapter named ``name`` (one of :data:`ADAPTERS`). Only that
    adapter's module is imported; Zigbee's (with the Zigbee stack and pyserial: ~3.5 MB of
    RSS) only when Zigbee runs, BLE's only when BLE runs."""
    if name == "gpio":
        from gateway.adapters import gpio

        return gpio.create
    if name == "ble":
        return _ble
    if name == "zigbee":
        return _zigbee
    raise KeyError(name)


def _ble(ctx: AdapterContext) -> Driver | None:
    """:func:`gateway.adapters.ble.create`, without importing it when BLE is off (its codecs
    and cryptography: ~9 MB of RSS)."""
    transport = ctx.transports.ble
    if transport is None and not ctx.config.ble.enabled:
        return None
    if transport is not None and transport.factory is None:  # a transport without BLE
        return None
    from gateway.adapters import ble

    return ble.create(ctx)


def _zigbee(ctx: AdapterContext) -> Driver | None:
    """:func:`gateway.adapters.zigbee.create`, without importing it when Zigbee is off."""
    if ctx.transports.zigbee_link is None and not ctx.config.zigbee.enabled:
        return None
    from gateway.adapters import zigbee

    return zigbee.create(ctx)


def build_drivers(ctx: AdapterContext) -> list[Driver]:
    drivers: list[Driver] = []
    for name in ADAPTERS:
        driver = factory(name)(ctx)
        if driver is not None:
            drivers.append(driver)
    return drivers
