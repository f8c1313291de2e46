"""Zigbee devices through a TI Z-Stack stick (drivers.zigbee), on the serial port of the
config or the :class:`~gateway.adapters.ZigbeeLink` given in the transports (the demo's
simulated stick).

Devices are ``zb-<16 hex IEEE>``. Readings and button events go to the sink; the link
quality travels as ``lqi`` in device updates. Plugs and relays take on/off/toggle; a sleepy
or unreachable device is a soft ``unreachable`` result. :class:`ZigbeeDriver` is also the
:class:`~gateway.driver.ZigbeeAdmin` of the API and CLI (permit join, backup). Health carries
the driver's counters and the port, firmware, channel and PAN id; never the network key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from drivers.events import DeviceEvent
from drivers.zigbee.coordinator import Coordinator, CoordinatorConfig, write_secret_json
from drivers.zigbee.devices import DeviceRecord
from drivers.zigbee.zcl import xiaomi
from gateway.adapters import ZIGBEE_IDS, AdapterContext, ZigbeeLink
from gateway.driver import DriverHealth, Health, Sink
from gateway.model import Command, CommandResult, CommandStatus, DeviceStatus, DeviceUpdate

_LOGGER = logging.getLogger(__name__)

#: Seconds between availability checks of mains-powered devices.
AVAILABILITY_INTERVAL = 60.0
#: How long a driver told to open the network at start waits for the stick.
OPEN_AT_START_TIMEOUT_S = 30.0


def device_id(ieee: str) -> str:
    return ZIGBEE_IDS.of(ieee.lower())


class _SinkListener:
    """The coordinator's listener, writing into the gateway's sink."""

    def __init__(self, driver: ZigbeeDriver, sink: Sink) -> None:
        self._driver = driver
        self._sink = sink

    def device_changed(self, device: DeviceRecord) -> None:
        self._driver.publish_device(device)

    def device_left(self, ieee: str) -> None:
        self._driver.known.pop(ieee, None)
        self._sink.device(ZIGBEE_IDS.update(device_id(ieee), DeviceStatus.UNAVAILABLE))

    def reading(self, ieee: str, metric: str, value: object) -> None:
        if isinstance(value, bool | int | float | str):
            self._driver.seen(ieee)
            self._sink.reading(device_id(ieee), metric, value)
            self._driver.counters["readings"] += 1

    def event(self, ieee: str, action: str, button: int | None) -> None:
        self._driver.seen(ieee)
        self._sink.event(device_id(ieee), DeviceEvent("button", action, button))
        self._driver.counters["events"] += 1


class ZigbeeDriver:
    name = "zigbee"

    def __init__(
        self,
        config: CoordinatorConfig,
        *,
        unavailable_after_s: float = 7200.0,
        link: ZigbeeLink | None = None,
        info: dict[str, str] | None = None,
    ) -> None:
        self.coordinator = Coordinator(config)
        self._link = link
        self._permit_join_at_start = link.open_network_s if link is not None else None
        self._unavailable_after = unavailable_after_s
        self._info = dict(info or {})
        if link is not None:
            self._info.update(link.info())
        self._sink: Sink | None = None
        #: ieee -> (model, sleepy, unavailable)
        self.known: dict[str, tuple[str | None, bool | None, bool]] = {}
        self.counters: dict[str, int] = {"readings": 0, "events": 0}

    # Driver protocol --------------------------------------------------------------------
    def owns(self, device_id: str) -> bool:
        return ZIGBEE_IDS.owns(device_id)

    async def run(self, sink: Sink) -> None:
        """One session (the coordinator's: until the stick is lost, then raise why); the
        service's supervisor restarts it. A simulated stick's link lives as long as it."""
        self._sink = sink
        self.coordinator.listener = _SinkListener(self, sink)
        self.coordinator.load()
        for rec in self.coordinator.table:
            self.publish_device(rec)
        link = self._link.session() if self._link is not None else contextlib.nullcontext()
        async with link, asyncio.TaskGroup() as tg:
            tg.create_task(self.coordinator.run(), name="zigbee-coordinator")
            tg.create_task(self._availability_loop(), name="zigbee-availability")
            if self._permit_join_at_start is not None:
                tg.create_task(
                    self._open_network(self._permit_join_at_start), name="zigbee-open-at-start"
                )

    async def command(self, device_id: str, command: Command) -> CommandResult:
        if not self.owns(device_id):
            return CommandResult(
                CommandStatus.UNKNOWN_DEVICE, f"{device_id} is not a zigbee device"
            )
        if command.action not in ("on", "off", "toggle"):
            return CommandResult(
                CommandStatus.UNSUPPORTED,
                f"zigbee devices take on/off/toggle, not {command.action}",
            )
        return await self.coordinator.switch(ZIGBEE_IDS.native(device_id), command.action)

    def health(self) -> DriverHealth:
        coord = self.coordinator
        counters = coord.health_counters()
        counters.update(self.counters)
        info = dict(self._info)
        info["port"] = coord.config.port
        if coord.table.path is not None:
            info["device_table"] = str(coord.table.path)  # `migw zigbee devices` reads it
        st = coord.info
        if st.firmware:
            info["firmware"] = st.firmware
        if st.channel:
            info["channel"] = str(st.channel)
        if st.pan_id is not None:
            info["pan_id"] = f"0x{st.pan_id:04X}"
        if st.extended_pan_id:
            info["extended_pan_id"] = st.extended_pan_id
        if st.ieee:
            info["coordinator_ieee"] = st.ieee
        info["state"] = coord.state
        if coord.permit_join_until > time.monotonic():
            info["permit_join_s"] = str(int(coord.permit_join_until - time.monotonic()))
        health, reason = Health.OK, ""
        if not coord.connected:  # the last session's failure, or still connecting
            health, reason = Health.DEGRADED, coord.reason or "connecting to the stick"
        return DriverHealth(health=health, reason=reason, counters=counters, info=info)

    # ZigbeeAdmin (API / CLI) -------------------------------------------------------------
    async def permit_join(self, seconds: int = 60) -> None:
        await self.coordinator.permit_join(seconds)

    async def backup(self) -> dict[str, Any]:
        """The network in the open coordinator backup format. Holds the network key."""
        return await self.coordinator.backup()

    def write_backup(self, path: Path, doc: dict[str, Any]) -> None:
        """Write ``doc`` (from :meth:`backup`) to ``path``, mode 0600. Blocking."""
        write_secret_json(path, doc)

    async def restore(self, doc: Any) -> None:
        await self.coordinator.restore(doc)

    # devices ----------------------------------------------------------------------------
    def publish_device(self, rec: DeviceRecord) -> None:
        sink = self._sink
        if sink is None:
            return
        old = self.known.get(rec.ieee)
        spec = xiaomi.spec_for(rec.model)
        sleepy = spec.sleepy if spec is not None else rec.sleepy
        first = old is None or old[0] != rec.model
        name = None
        if first:
            name = spec.description if spec is not None else (rec.model or f"Zigbee {rec.ieee}")
        self.known[rec.ieee] = (rec.model, sleepy, False)
        ident = xiaomi.identity(rec.model)
        attrs = {"ieee": rec.ieee, "nwk": f"0x{rec.nwk:04X}"} if first else None
        if attrs is not None and ident is not None:
            attrs.update(model_code=ident.model_code, model_name=ident.model_name)
        sink.device(
            DeviceUpdate(
                id=device_id(rec.ieee),
                transport=ZIGBEE_IDS.transport,
                model=rec.model,
                name=name,
                manufacturer=ident.manufacturer if ident is not None else rec.manufacturer,
                lqi=rec.lqi,
                status=DeviceStatus.OK if (first or (old is not None and old[2])) else None,
                sleepy=sleepy,
                attrs=attrs,
            )
        )

    def seen(self, ieee: str) -> None:
        old = self.known.get(ieee)
        if old is not None and old[2] and self._sink is not None:
            self.known[ieee] = (old[0], old[1], False)
            self._sink.device(ZIGBEE_IDS.update(device_id(ieee), DeviceStatus.OK))

    def check_availability(self, now: float) -> list[str]:
        """Mains-powered devices silent for ``unavailable_after_s`` become unavailable."""
        gone: list[str] = []
        for rec in self.coordinator.table:
            known = self.known.get(rec.ieee)
            if known is None or known[1] is not False or known[2]:
                continue  # sleepy or unknown power source: silence is normal
            if rec.last_seen is not None and now - rec.last_seen > self._unavailable_after:
                self.known[rec.ieee] = (known[0], known[1], True)
                gone.append(rec.ieee)
                if self._sink is not None:
                    self._sink.device(
                        ZIGBEE_IDS.update(device_id(rec.ieee), DeviceStatus.UNAVAILABLE)
                    )
        return gone

    async def _availability_loop(self) -> None:
        while True:
            await asyncio.sleep(AVAILABILITY_INTERVAL)
            self.check_availability(time.time())

    async def _open_network(self, seconds: int) -> None:
        """Once the stick is up, open the network (the demo: so its devices join)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(OPEN_AT_START_TIMEOUT_S):
                await self.coordinator.wait_connected()
                await self.coordinator.permit_join(seconds)


def create(ctx: AdapterContext) -> ZigbeeDriver | None:
    section = ctx.config.zigbee
    opener = ctx.transports.zigbee_link
    if opener is None and not section.enabled:
        return None
    link = opener(ctx.state_dir) if opener is not None else None
    config = CoordinatorConfig(
        port=link.path if link is not None else section.port,
        baudrate=section.baud,
        rtscts=section.rtscts,
        channel=section.channel,
        skip_bootloader=section.skip_bootloader if link is None else False,
        state_dir=link.state_dir if link is not None else ctx.state_dir,
        backup_interval_s=section.backup_interval_s,
        motion_clear_s=section.motion_clear_s,
    )
    return ZigbeeDriver(config, unavailable_after_s=section.unavailable_after_s, link=link)
