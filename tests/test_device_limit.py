"""The device limit (``[gateway] max_devices``) at the ingest door: a flood of new device ids
(plain BTHome adverts from random addresses, ``[ble] join = "all"``) through the real BLE
adapter into a real service, real SQLite files and the real LAN API; and the real Ingest on
a real Store for events and a limit raised by a reload."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from drivers.ble import bthome
from drivers.ble.types import UUID_BTHOME_V2, Advertisement
from drivers.events import DeviceEvent
from gateway.adapters.ble import BleDriver, device_id
from gateway.api.server import ApiServer
from gateway.api.token import read_token
from gateway.clock import SystemClock
from gateway.config import ApiSection, BleSection, Config, StoreSection
from gateway.ingest import Ingest
from gateway.model import DeviceUpdate, Transport
from gateway.service import Service
from gateway.store import Store
from hw_mocks.ble import ReplayScanner

CAP = 10


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Ingest's WARNINGs (other loggers' records are captured too, per the root's level)."""
    return [
        r for r in caplog.records if r.name == "gateway.ingest" and r.levelno >= logging.WARNING
    ]


MINE = "A4:C1:38:00:00:01"
MINE_ID = device_id(MINE)


def _plain_bthome(address: str, packet: int) -> Advertisement:
    """A plain BTHome v2 advert (packet id, 21.5 °C) from ``address``."""
    objects = bthome.encode_number(0x00, packet & 0xFF) + bthome.encode_number(0x02, 21.5)
    frame = bthome.encode_v2(objects, mac=address)
    return Advertisement(address, -60, {UUID_BTHOME_V2: frame}, {}, None)


def _random_macs(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    macs: set[str] = set()
    while len(macs) < n:
        macs.add(":".join(f"{rng.randrange(256):02X}" for _ in range(6)))
    return sorted(macs - {MINE})


@dataclasses.dataclass
class Gw:
    svc: Service
    ble: BleDriver
    http: aiohttp.ClientSession
    base: str
    auth: dict[str, str]

    async def get(self, path: str) -> Any:
        async with self.http.get(self.base + path, headers=self.auth) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def settle(self) -> None:
        store = self.svc.store
        assert store is not None
        await store.flush()


@asynccontextmanager
async def gateway(state: Path, cap: int = CAP) -> AsyncIterator[Gw]:
    cfg = Config()
    cfg = cfg.replace(
        gateway=dataclasses.replace(cfg.gateway, state_dir=state, max_devices=cap),
        api=ApiSection(listen="127.0.0.1", port=0),
        ble=BleSection(join="all"),
    )
    # the adverts are handed to the adapter by the test (handle: the scanner's callback)
    ble = BleDriver(lambda cb: ReplayScanner(cb, []), {}, dedup_window_s=0)
    async with Service(cfg, drivers=[ble]) as svc, aiohttp.ClientSession() as http:
        server = svc.api
        assert isinstance(server, ApiServer)
        await asyncio.wait_for(server.listening.wait(), 10)
        token = read_token(state)
        assert token is not None and server.port is not None
        for _ in range(500):  # the adapter's sink is set when its part runs
            if ble._sink is not None:
                break
            await asyncio.sleep(0.01)
        yield Gw(
            svc, ble, http, f"http://127.0.0.1:{server.port}", {"Authorization": f"Bearer {token}"}
        )


async def _temperatures(svc: Service, dev: str) -> int:
    assert svc.store is not None
    return len(await svc.store.history(dev, "temperature", limit=100_000))


async def test_a_flood_of_new_ble_devices_stops_at_the_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Past the limit, new devices are refused (counted once each, their messages dropped and
    counted, one WARNING, a health reason, the figures in the status); the devices already
    in keep working; after a restart the database's devices count; forgetting one frees a
    place."""
    state = tmp_path / "state"
    flood = _random_macs(1, 300)
    with caplog.at_level(logging.DEBUG, logger="gateway.ingest"):
        async with gateway(state) as gw:
            gw.ble.handle(_plain_bthome(MINE, 0))
            for i, mac in enumerate(flood):
                gw.ble.handle(_plain_bthome(mac, i))
                if i % 10 == 0:  # the real sensor, all along
                    gw.ble.handle(_plain_bthome(MINE, i // 10 + 1))
            for mac in flood[:50]:  # refused ones heard again: counted once
                gw.ble.handle(_plain_bthome(mac, 7))
            await gw.settle()
            svc, ingest, store = gw.svc, gw.svc.ingest, gw.svc.store
            assert ingest is not None and store is not None
            refused = len(flood) + 1 - CAP
            assert len(await store.devices()) == CAP == ingest.devices
            assert await store.device(MINE_ID) is not None
            assert ingest.devices_refused == refused
            # each refused advert's device update and reading(s), counted, none stored
            assert ingest.counters["ble.dropped_device_limit"] >= refused + 50
            assert await _temperatures(svc, MINE_ID) == 1 + (len(flood) + 9) // 10
            admitted = [device_id(m) for m in flood[: CAP - 1]]
            assert {d.id for d in await store.devices()} == {MINE_ID, *admitted}
            assert await store.device(device_id(flood[CAP])) is None

            reason = (
                f"ingest: device limit {CAP} reached: {refused} new device(s) refused;"
                ' raise gateway.max_devices or set [ble] join = "allowlisted"'
            )
            status = await gw.get("/api/v1/status")
            assert status["service"]["status"] == "degraded"
            assert status["service"]["reasons"] == [reason]
            figures = {k: status["devices"][k] for k in ("total", "max", "admitted", "refused")}
            assert figures == {"total": CAP, "max": CAP, "admitted": CAP, "refused": refused}
            health = await gw.get("/api/v1/health")
            assert health["reasons"] == [reason]
            warnings = _warnings(caplog)
            assert len(warnings) == 1
            assert "device limit 10 reached" in warnings[0].getMessage()
            assert "gateway.max_devices" in warnings[0].getMessage()

        # a restart: the database's devices count
        caplog.clear()
        later = _random_macs(2, 40)
        async with gateway(state) as gw:
            ingest = gw.svc.ingest
            assert ingest is not None and ingest.devices == CAP
            assert gw.svc.health()["status"] == "ok"
            before = await _temperatures(gw.svc, MINE_ID)
            for i, mac in enumerate(later):
                gw.ble.handle(_plain_bthome(mac, i))
                gw.ble.handle(_plain_bthome(MINE, 100 + i))
            await gw.settle()
            store = gw.svc.store
            assert store is not None
            assert len(await store.devices()) == CAP == ingest.devices
            assert ingest.devices_refused == len(later)
            assert await _temperatures(gw.svc, MINE_ID) == before + len(later)
            assert len(_warnings(caplog)) == 1

            # forgetting a device frees its place: the next new device gets in, no more
            gone = device_id(flood[0])
            async with gw.http.delete(f"{gw.base}/api/v1/devices/{gone}", headers=gw.auth) as r:
                assert r.status == 200, await r.text()
            assert ingest.devices == CAP - 1
            newcomers = _random_macs(3, 5)
            for mac in newcomers:
                gw.ble.handle(_plain_bthome(mac, 1))
            await gw.settle()
            ids = {d.id for d in await store.devices()}
            assert len(ids) == CAP == ingest.devices
            assert gone not in ids and device_id(newcomers[0]) in ids
            assert ingest.devices_refused == len(later) + len(newcomers) - 1


async def test_the_limit_covers_readings_and_events_and_follows_the_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The real Ingest on a real Store: a new device's readings and events are refused past
    the limit, whatever the transport, without a description first; a known device's are
    committed; a higher limit (a reload) lets new devices in again and re-arms the WARNING."""
    limit = [3]
    async with await Store.open(tmp_path / "state.db", StoreSection(batch_max_ms=1)) as store:
        ingest = Ingest(store, SystemClock(), max_devices=lambda: limit[0], known={"zb-old"})
        zb, gpio = ingest.sink_for("zigbee"), ingest.sink_for("gpio")
        with caplog.at_level(logging.WARNING, logger="gateway.ingest"):
            zb.reading("zb-old", "temperature", 20.0)
            zb.device(DeviceUpdate("zb-new", Transport.ZIGBEE, model="WSDCGQ11LM"))
            gpio.event("gpio-a", DeviceEvent("button", "single"))
            for n in range(20):  # full: each new one refused, its messages counted
                gpio.event(f"gpio-{n}", DeviceEvent("button", "single"))
                zb.reading(f"zb-{n}", "temperature", 20.0)
                zb.device(DeviceUpdate(f"zb-{n}", Transport.ZIGBEE))
            zb.reading("zb-old", "temperature", 21.0)
            gpio.event("gpio-a", DeviceEvent("button", "double"))
            await store.flush()
            assert ingest.devices == 3 and ingest.devices_refused == 40
            assert ingest.counters["gpio.dropped_device_limit"] == 20
            assert ingest.counters["zigbee.dropped_device_limit"] == 40
            assert (ingest.counters["zigbee.readings"], ingest.counters["gpio.events"]) == (2, 2)
            assert [d.id for d in await store.devices()] == ["zb-new"]
            assert (await store.state("zb-old"))["temperature"][0] == 21.0
            assert await store.state("zb-0") == {}
            assert len(_warnings(caplog)) == 1
            limit[0] = 4  # a reload raised it
            zb.reading("zb-0", "temperature", 22.0)
            zb.reading("zb-1", "temperature", 22.0)
            await store.flush()
            assert (await store.state("zb-0"))["temperature"][0] == 22.0
            assert await store.state("zb-1") == {}
            assert ingest.devices == 4 and ingest.devices_refused == 40  # (zb-1: again)
            assert len(_warnings(caplog)) == 2  # full again after one got in: warned again
            assert ingest.problems() and "device limit 4 reached: 40 new" in ingest.problems()[0]
