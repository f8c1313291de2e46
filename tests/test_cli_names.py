"""Device names and rooms, the BLE join policy and forgetting, through the CLI against a
real service: the real BLE adapter fed by a replay scanner (bleak-shaped), the real LAN API,
real SQLite, and a real Mosquitto for the uplink and Home Assistant discovery."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pytest

from drivers.ble.types import UUID_BTHOME_V2, Advertisement
from gateway.adapters.ble import BleDriver
from gateway.api.server import ApiServer
from gateway.cli import main
from gateway.config import ApiSection, BleSection, Config, DeviceEntry
from gateway.service import Service
from hw_mocks.ble import ReplayScanner
from tests.broker import Collector, Mosquitto, gateway_config

MINE = "A4:C1:38:00:00:01"  # in [ble] allow
NAMED = "A4:C1:38:00:00:02"  # named in [devices]
NEIGHBOUR = "A4:C1:38:00:00:99"  # a neighbour's unencrypted thermometer in range
# BTHome v2, unencrypted: temperature 25.06 °C (a new packet id per advert defeats dedup)
ADVERTS = [
    Advertisement(mac, -60 - i, {UUID_BTHOME_V2: bytes.fromhex(f"4000{n:02x}02ca09")}, {}, "")
    for n in range(200)
    for i, mac in enumerate((MINE, NAMED, NEIGHBOUR))
]


@dataclasses.dataclass
class Gw:
    svc: Service
    args: list[str]
    col: Collector


async def _cli_args(svc: Service, state: Path) -> list[str]:
    """The CLI's options for this service, once its API listens."""
    server = next(c for c in svc.components if c.name == "api")
    assert isinstance(server, ApiServer)
    await asyncio.wait_for(server.listening.wait(), 10)
    return ["--state-dir", str(state), "--api-port", str(server.port)]


async def _store_once_mine_is_up(gw: Gw) -> Any:
    store = gw.svc.store
    assert store is not None
    await gw.col.wait_for(lambda: "ble-a4c138000001" in _devices_in(gw.col))
    return store


@pytest.fixture
async def gw(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Gw]:
    base: Any = gateway_config(tmp_path / "state", mosquitto.url, ha=True)
    cfg: Config = base.replace(
        api=ApiSection(listen="127.0.0.1", port=0),
        ble=BleSection(allow=(MINE,)),
        devices={"ble-a4c138000002": DeviceEntry(name="Hall", room="hall")},
    )
    ble = BleDriver(
        lambda cb: ReplayScanner(cb, ADVERTS, rate=200.0, loop=True), {}, dedup_window_s=0
    )
    async with (
        Collector(mosquitto.port, ["migw/testgw/#", "homeassistant/#"]) as col,
        Service(cfg, drivers=[ble]) as svc,
    ):
        yield Gw(svc, await _cli_args(svc, tmp_path / "state"), col)


def _devices_in(col: Collector) -> set[str]:
    out: set[str] = set()
    for batch in col.batches("migw/testgw/telemetry"):
        out |= {r["device"] for r in batch.readings}
    return out


async def test_a_neighbours_thermometer_stays_out_until_allowed(
    gw: Gw, capsys: pytest.CaptureFixture[str]
) -> None:
    store = gw.svc.store
    assert store is not None
    await gw.col.wait_for(lambda: {"ble-a4c138000001", "ble-a4c138000002"} <= _devices_in(gw.col))
    await asyncio.sleep(0.5)  # the neighbour keeps advertising all along
    assert "ble-a4c138000099" not in _devices_in(gw.col)
    assert await store.device("ble-a4c138000099") is None
    assert [t for t in (m.topic for m in gw.col.messages) if "a4c138000099" in t] == []
    hall = await store.device("ble-a4c138000002")
    assert hall is not None and (hall.name, hall.room) == ("Hall", "hall")

    capsys.readouterr()
    assert await asyncio.to_thread(main, [*gw.args, "devices", "--seen", "--json"]) == 0
    seen = json.loads(capsys.readouterr().out)
    assert seen["join"] == "allowlisted"
    assert [s["id"] for s in seen["seen"]] == ["ble-a4c138000099"]
    assert seen["seen"][0]["model"] and seen["seen"][0]["encrypted"] is False
    assert await asyncio.to_thread(main, [*gw.args, "devices"]) == 0
    assert "1 BLE device in range is not added: `migw devices --seen`" in capsys.readouterr().err
    assert await asyncio.to_thread(main, [*gw.args, "devices", "--seen"]) == 0
    out, err = capsys.readouterr()
    assert "ble-a4c138000099" in out and "`migw allow ID` or `migw name ID NAME`" in err

    # naming it adds it: the name reaches the store, the API, the uplink and HA discovery
    argv = [*gw.args, "name", "ble-a4c138000099", "Kitchen", "--room", "kitchen"]
    assert await asyncio.to_thread(main, argv) == 0
    assert "ble-a4c138000099 is now Kitchen in kitchen" in capsys.readouterr().out
    await gw.col.wait_for(lambda: "ble-a4c138000099" in _devices_in(gw.col))
    dev = await store.device("ble-a4c138000099")
    assert dev is not None and (dev.name, dev.room) == ("Kitchen", "kitchen")
    assert await asyncio.to_thread(main, [*gw.args, "devices", "--json"]) == 0
    listed = {d["id"]: d for d in json.loads(capsys.readouterr().out)["devices"]}
    assert (listed["ble-a4c138000099"]["name"], listed["ble-a4c138000099"]["room"]) == (
        "Kitchen",
        "kitchen",
    )
    await gw.col.wait_for(
        lambda: any(
            json.loads(m.payload).get("device", {}).get("name") == "Kitchen"
            for m in gw.col.messages
            if m.topic.startswith("homeassistant/") and "a4c138000099" in m.topic and m.payload
        )
    )
    # the name survives in the state dir
    saved = json.loads((gw.svc.state_dir / "devices.json").read_text())
    assert saved["devices"]["ble-a4c138000099"] == {"name": "Kitchen", "room": "kitchen"}

    # forget --ignore: gone from the store and kept out
    argv = [*gw.args, "forget", "ble-a4c138000099", "--ignore"]
    assert await asyncio.to_thread(main, argv) == 0
    assert await store.device("ble-a4c138000099") is None
    assert await store.state("ble-a4c138000099") == {}
    await asyncio.sleep(0.3)
    await store.flush()
    assert await store.device("ble-a4c138000099") is None
    assert ingest_counter(gw.svc, "not_added") > 0


def ingest_counter(svc: Service, name: str) -> int:
    assert svc.ingest is not None
    return sum(v for k, v in svc.ingest.counters.items() if k.endswith(name))


async def test_a_forgotten_allowed_device_comes_back_when_it_speaks(
    gw: Gw, capsys: pytest.CaptureFixture[str]
) -> None:
    store = await _store_once_mine_is_up(gw)
    # allowed in the config: forgetting drops the record, and it comes back when it speaks
    assert await asyncio.to_thread(main, [*gw.args, "forget", "ble-a4c138000001"]) == 0
    assert "it joins again when it next transmits" in capsys.readouterr().err
    for _ in range(200):
        await store.flush()
        if await store.device("ble-a4c138000001") is not None:
            break
        await asyncio.sleep(0.02)
    dev = await store.device("ble-a4c138000001")
    assert dev is not None and dev.model
    code = await asyncio.to_thread(main, [*gw.args, "forget", "ble-nope"])
    assert code == 1
    assert "no device 'ble-nope'" in capsys.readouterr().err


def test_the_demo_log_shows_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from gateway.demo import ReadingLogger
    from gateway.devices import DeviceDirectory
    from gateway.model import Reading, Stamp
    from gateway.store import Commit

    cfg = Config(devices={"gpio-hall-relay": DeviceEntry(name="Hall light")})
    directory = DeviceDirectory(lambda: cfg, tmp_path)
    stamp = Stamp(wall=1.0, mono=1.0, boot="b", synced=True)
    readings = [
        Reading("gpio-hall-relay", "switch", True, None, stamp, "gpio", seq=7),
        Reading("gpio-hall-pir", "motion", False, None, stamp, "gpio", seq=8),
    ]
    with caplog.at_level(logging.INFO, logger="gateway.demo"):
        ReadingLogger(directory)(Commit(readings, [], 0))
    assert [r.getMessage() for r in caplog.records] == [
        "#7 gpio-hall-relay (Hall light) switch = True",
        "#8 gpio-hall-pir motion = False",
    ]


async def test_allow_adds_a_stranger_with_what_was_heard_from_it(
    gw: Gw, capsys: pytest.CaptureFixture[str]
) -> None:
    store = await _store_once_mine_is_up(gw)
    assert await store.device("ble-a4c138000099") is None
    capsys.readouterr()
    assert await asyncio.to_thread(main, [*gw.args, "allow", NEIGHBOUR]) == 0
    assert "ble-a4c138000099 is added" in capsys.readouterr().out
    await gw.col.wait_for(lambda: "ble-a4c138000099" in _devices_in(gw.col))
    dev = await store.device("ble-a4c138000099")
    assert dev is not None and dev.model == "BTHome" and dev.rssi is not None
    assert await asyncio.to_thread(main, [*gw.args, "devices", "--seen", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seen"] == []
    assert await asyncio.to_thread(main, [*gw.args, "allow", "not-a-mac"]) == 1


async def test_ble_keys_lists_an_encrypted_stranger_as_needing_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hw_mocks.ble import SyntheticFleet

    fleet = SyntheticFleet(2)  # sensor 1: MiBeacon v5 encrypted, its key unknown here
    cfg = Config().replace(
        gateway=dataclasses.replace(Config().gateway, state_dir=tmp_path / "state"),
        api=ApiSection(listen="127.0.0.1", port=0),
    )
    adverts = fleet.adverts(60)
    ble = BleDriver(lambda cb: ReplayScanner(cb, adverts, rate=300.0, loop=True), {})
    async with Service(cfg, drivers=[ble]) as svc:
        args = await _cli_args(svc, tmp_path / "state")
        want = "ble-" + fleet.sensors[1].mac.replace(":", "").lower()
        assert svc.ingest is not None and svc.ingest.directory is not None
        directory = svc.ingest.directory
        for _ in range(200):
            if any(s["id"] == want for s in directory.strangers()):
                break
            await asyncio.sleep(0.02)
        capsys.readouterr()
        assert await asyncio.to_thread(main, [*args, "ble", "keys", "--json"]) == 0
        rows = {r["device"]: r for r in json.loads(capsys.readouterr().out)["keys"]}
        assert rows[want]["key_status"] == "needs_key" and rows[want]["added"] is False
        assert svc.store is not None and await svc.store.device(want) is None


def test_the_join_policy_table(tmp_path: Path) -> None:
    from gateway.config import Secret
    from gateway.devices import DeviceDirectory

    cfg = [
        Config(
            ble=BleSection(
                allow=("A4:C1:38:00:00:01",),
                ignore=("a4c138000002",),
                keys={"A4:C1:38:00:00:03": Secret("00" * 16)},
            ),
            devices={"ble-a4c138000004": DeviceEntry(name="Named")},
        )
    ]
    d = DeviceDirectory(lambda: cfg[0], tmp_path)
    verdicts = {i: d.admits(f"ble-a4c13800000{i}") for i in range(1, 6)}
    assert verdicts == {1: True, 2: False, 3: True, 4: True, 5: False}
    assert d.admits("zb-00158d000fa93402") and d.admits("gpio-hall-relay")
    d.allow("ble-a4c138000005")
    assert d.admits("ble-a4c138000005")
    d.forget("ble-a4c138000001", ignore=True)  # the local ignore list beats the config
    assert not d.admits("ble-a4c138000001")
    # a reload with join = "all": every one in range but the ignored
    cfg[0] = cfg[0].replace(ble=dataclasses.replace(cfg[0].ble, join="all"))
    assert d.admits("ble-a4c138000009") and not d.admits("ble-a4c138000002")
    # kept across a restart
    again = DeviceDirectory(lambda: cfg[0], tmp_path)
    assert not again.admits("ble-a4c138000001") and again.admits("ble-a4c138000005")


async def test_devices_added_before_stay_when_the_policy_tightens(tmp_path: Path) -> None:
    """An upgrade (or join = "all" turned off) keeps the devices the gateway already has:
    the policy decides who is added, not who is dropped."""
    state = tmp_path / "state"
    neighbour_id = "ble-a4c138000099"

    def service(join: Literal["all", "allowlisted"]) -> Service:
        cfg = Config().replace(
            gateway=dataclasses.replace(Config().gateway, state_dir=state),
            api=ApiSection(enabled=False),
            ble=BleSection(join=join),
        )
        ble = BleDriver(
            lambda cb: ReplayScanner(cb, ADVERTS, rate=300.0, loop=True), {}, dedup_window_s=0
        )
        return Service(cfg, drivers=[ble])

    async def seq_of(svc: Service) -> int:
        assert svc.store is not None
        for _ in range(300):
            await svc.store.flush()
            state_now = await svc.store.state(neighbour_id)
            if "temperature" in state_now:
                return state_now["temperature"][3]
            await asyncio.sleep(0.02)
        return 0

    async with service("all") as svc:
        first = await seq_of(svc)
    assert first > 0
    async with service("allowlisted") as svc:
        # still one of ours: its new readings are stored
        for _ in range(300):
            if await seq_of(svc) > first:
                break
            await asyncio.sleep(0.02)
        assert await seq_of(svc) > first
