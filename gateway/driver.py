"""The one seam between the gateway and its drivers.

A driver produces readings and events and optionally accepts commands. The service owns each
driver in a supervised task: ``run`` is called, and called again with backoff if it raises.
Adapters in ``gateway.adapters`` implement this over the ``drivers`` library.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from drivers.events import DeviceEvent
from gateway.model import Command, CommandResult, DeviceUpdate, Value

if TYPE_CHECKING:
    from drivers.ble.types import Advertisement


class Health(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DISABLED = "disabled"


@dataclass(slots=True)
class DriverHealth:
    """Live status of one radio/driver for health, API, CLI and metrics."""

    health: Health = Health.OK
    reason: str = ""
    #: Monotonic counters (adverts, duplicates_dropped, decrypt_failures, bad_frames, ...).
    counters: dict[str, int] = field(default_factory=dict)
    #: Descriptive facts (adapter, port, firmware, channel, pan_id ...). No secrets.
    info: dict[str, str] = field(default_factory=dict)


class Sink(Protocol):
    """Where a driver puts what it learned. Non-blocking; safe to call from the loop only."""

    def device(self, update: DeviceUpdate) -> None: ...

    def reading(self, device_id: str, metric: str, value: Value) -> None: ...

    def event(self, device_id: str, event: DeviceEvent) -> None:
        """A button/dimmer/... event (``drivers.events.DeviceEvent``, as the drivers report
        it); ingest stamps it."""


class Driver(Protocol):
    #: "gpio", "ble", "zigbee": also the ``source`` of its readings.
    name: str

    async def run(self, sink: Sink) -> None:
        """Run until cancelled. Raise on failure: the supervisor restarts it with backoff."""

    async def command(self, device_id: str, command: Command) -> CommandResult:
        """Carry out a command; unknown devices and soft failures are results, not raises."""

    def owns(self, device_id: str) -> bool:
        """True if ``device_id`` belongs to this driver."""

    def health(self) -> DriverHealth:
        """Current health and counters (called often: cheap, no I/O)."""


class ZigbeeAdmin(Protocol):
    """What the API and CLI may ask of a Zigbee coordinator beyond :class:`Driver`."""

    async def permit_join(self, seconds: int = 60) -> None:
        """Let devices join for ``seconds`` (0 closes the network)."""

    async def backup(self) -> dict[str, Any]:
        """The network in the open coordinator backup format. Holds the network key."""

    def write_backup(self, path: Path, doc: dict[str, Any]) -> None:
        """Write ``doc`` (from :meth:`backup`) to ``path``, mode 0600. Blocking."""


class BleAdverts(Protocol):
    """What the API may ask of the BLE driver beyond :class:`Driver`: the adverts it hears
    (``migw ble key`` checks a key on the next encrypted one)."""

    def subscribe_adverts(
        self, callback: Callable[[Advertisement], None]
    ) -> Callable[[], None] | None:
        """Every advert of the running scanner also to ``callback``; returns the
        unsubscribe, or None before the driver first ran."""
