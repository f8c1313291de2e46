"""End to end: the real ZNP driver against the Z-Stack simulator through a real pty."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.errors import NeedsHumanError, TransientError
from drivers.results import CommandResult, CommandStatus
from drivers.supervisor import State, Timing
from drivers.zigbee import coordinator as co
from drivers.zigbee.coordinator import Coordinator, CoordinatorConfig
from drivers.zigbee.devices import DeviceRecord
from drivers.zigbee.timing import ZigbeeTiming
from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import frames
from drivers.zigbee.znp import types as t
from drivers.zigbee.znp.commands import AF_INCOMING_MSG, Message
from drivers.zigbee.znp.types import NvId
from hw_mocks.aqara import MODELS, SimDevice
from hw_mocks.znp import AWAKE_S as sim_awake_s
from hw_mocks.znp import ZStackSimulator
from hw_mocks.znp_layout import default_nv
from tests.zigbee_support import Recorder, running, until

#: Short timings: tests pass them in the config (no module constants are patched).
FAST = ZigbeeTiming(
    ping_timeout=0.3,
    bootloader_toggle_s=0.001,
    bootloader_wait_s=0.01,
    sreq_timeout=2.0,
    frame_stall_s=0.1,
    watchdog_interval=0.2,
    reconnect=Timing(backoff_initial=0.05, backoff_max=0.2, stable_after=0.5),
    confirm_timeout=2.0,
    interview_timeout=0.5,
    save_interval=0.1,
)
#: An SRSP later than 0.2 s is a timeout (the simulator's answer_delay makes them late).
SLOW_SREQ = dataclasses.replace(FAST, sreq_timeout=0.2)


def _is_on(device: SimDevice) -> bool:
    """The relay state, read through a call: mypy would keep ``device.on`` narrowed across
    the awaited command that changes it."""
    return device.on


def config(
    sim: ZStackSimulator,
    state_dir: Path,
    motion_clear_s: float | None = None,
    timing: ZigbeeTiming = FAST,
) -> CoordinatorConfig:
    return CoordinatorConfig(
        port=sim.path,
        state_dir=state_dir,
        channel=20,
        motion_clear_s=motion_clear_s,
        timing=timing,
    )


def record(coord: Coordinator, ieee: str) -> DeviceRecord:
    """The coordinator's record of a device it must know."""
    found = coord.table.get(ieee)
    assert found is not None, ieee
    return found


async def joined_network(
    sim: ZStackSimulator, coord: Coordinator, rec: Recorder, models: tuple[str, ...] = MODELS
) -> None:
    await until(lambda: coord.connected)
    await coord.permit_join(60)
    await until(lambda: sum(1 for d in rec.devices.values() if d.model) == len(models))


@contextlib.asynccontextmanager
async def joined(
    tmp_path: Path,
    models: tuple[str, ...],
    *,
    seed: int,
    motion_clear_s: float | None = None,
    timing: ZigbeeTiming = FAST,
    awake_s: float = sim_awake_s,
    product: int = 1,
) -> AsyncIterator[tuple[ZStackSimulator, Coordinator, Recorder]]:
    """A running coordinator on a simulated stick (``product``: 0 = Z-Stack 1.2, 1 = 3.x.0,
    2 = 3.0.x) with ``models``, every one joined and interviewed."""
    rec = Recorder()
    sim = ZStackSimulator(devices=models, seed=seed, awake_s=awake_s, product=product)
    async with sim:
        coord = Coordinator(config(sim, tmp_path, motion_clear_s, timing), rec)
        async with running(coord):
            await joined_network(sim, coord, rec, models)
            yield sim, coord, rec


async def test_form_join_every_model_and_report(tmp_path: Path) -> None:
    rec = Recorder()
    async with ZStackSimulator(devices=MODELS, seed=7) as sim:
        coord = Coordinator(config(sim, tmp_path), rec)
        async with running(coord):
            await joined_network(sim, coord, rec)
            # formed once, on the configured channel, with a fresh key
            assert coord.counters["networks_formed"] == 1
            assert sim.counters["formations"] == 1
            assert sim.channel == 20
            assert coord.info.channel == 20
            assert coord.info.pan_id == sim.pan_id
            assert coord.info.firmware == "Z-Stack 3.x.0 20240710"
            assert sim.network_key != bytes(16)
            # endpoint registered, child ageing off, ZDO callbacks on
            assert list(sim.endpoints) == [1]
            assert sim.nv[0x003E] == b"\x00"
            assert "ZDO_MSG_CB_REGISTER" in sim.commands_seen
            # permit join went to the coordinator and as a broadcast
            assert sim.commands_seen.count("ZDO_MGMT_PERMIT_JOIN_REQ") == 2
            assert {d.model for d in rec.devices.values()} == set(MODELS)
            for dev in sim.devices:
                assert coord.table.get(dev.ieee) is not None
                assert record(coord, dev.ieee).nwk == dev.nwk
            # every model's reporting cycle becomes readings/events
            before = len(rec.readings)
            for _ in range(4):
                sim.report_all()
                await asyncio.sleep(0.05)
            await until(lambda: len(rec.events) >= 6)
            names: dict[str, set[str]] = {}
            for ieee, metric, _ in rec.readings[before:]:
                names.setdefault(record(coord, ieee).model or "", set()).add(metric)
            assert {"temperature", "humidity", "voltage"} <= names["lumi.sensor_ht"]
            assert {"temperature", "humidity", "pressure"} <= names["lumi.weather"]
            assert {"motion", "illuminance"} <= names["lumi.sensor_motion.aq2"]
            assert "opening" in names["lumi.sensor_magnet.aq2"]
            assert "water_leak" in names["lumi.sensor_wleak.aq1"]
            assert {"power", "energy", "switch"} <= names["lumi.plug"]
            assert "switch" in names["lumi.ctrl_neutral1"]
            actions = {(a, record(coord, i).model) for i, a, _ in rec.events}
            assert {
                ("single", "lumi.sensor_switch.aq2"),
                ("double", "lumi.sensor_switch.aq2"),
                ("triple", "lumi.sensor_switch.aq2"),
                ("long", "lumi.sensor_switch.aq2"),
                ("release", "lumi.sensor_switch.aq2"),
                ("single", "lumi.ctrl_neutral1"),
            } <= actions
            # the leak sensor's zone notification asked for a default response: it got one
            await until(lambda: sim.counters["default_responses"] >= 1)
        # the device table was persisted
        saved = json.loads((tmp_path / "zigbee_devices.json").read_text())
        assert {d["model"] for d in saved["devices"]} == set(MODELS)
        backup = json.loads((tmp_path / "zigbee_backup.json").read_text())
        assert backup["network_key"]["key"] == sim.network_key.hex()
        assert (tmp_path / "zigbee_backup.json").stat().st_mode & 0o077 == 0


async def test_exact_values_from_vector_frames(tmp_path: Path) -> None:
    """Known frames (public vectors) delivered over the pty become exact readings."""
    models = ("lumi.weather", "lumi.sensor_wleak.aq1", "lumi.sensor_motion.aq2")
    async with joined(tmp_path, models, seed=3, motion_clear_s=0.2) as (sim, coord, rec):
        weather = sim.device("lumi.weather")
        rec.readings.clear()
        hb = bytes.fromhex(
            "18200a01ff412501214f0b0421a84305214e020624010000000064299b096521be1b662b138d"
            "01000a21900d"
        )
        sim.deliver(weather, 0x0000, 1, hb)
        sim.deliver(weather, 0x0402, 1, bytes.fromhex("18a80a000029f0d8"))  # -100 °C junk
        sim.deliver(weather, 0x0402, 1, bytes.fromhex("181c0a000029b002"))
        await until(lambda: len(rec.readings) >= 6)
        assert rec.of(weather.ieee) == [
            ("voltage", 2.895),
            ("temperature", 24.59),
            ("humidity", 71.02),
            ("pressure", 1016.51),
            ("battery", 30.0),
            ("temperature", 6.88),
        ]
        assert coord.health_counters()["junk_dropped"] == 1
        # a broadcast delivered on two endpoints counts once
        motion = sim.device("lumi.sensor_motion.aq2")
        sim.endpoints[2] = ()
        rec.readings.clear()
        sim.deliver(motion, 0x0400, 1, bytes.fromhex("18d50a0000212a00"), broadcast=True)
        sim.deliver(motion, 0x0406, 1, bytes.fromhex("18640a00001801"))
        await until(lambda: ("motion", False) in rec.of(motion.ieee))
        assert rec.of(motion.ieee) == [
            ("illuminance", 42.0),
            ("motion", True),
            ("motion", False),  # cleared by the host after motion_clear_s
        ]
        assert coord.health_counters()["duplicates_dropped"] == 1
        # lumi.sensor_wleak.aq1: wrong length byte and IAS zone status
        leak = sim.device("lumi.sensor_wleak.aq1")
        rec.readings.clear()
        sim.deliver(leak, 0x0500, 1, bytes.fromhex("092100010000000000"))
        await until(lambda: len(rec.of(leak.ieee)) >= 3)
        assert rec.of(leak.ieee) == [
            ("water_leak", True),
            ("tamper", False),
            ("battery_low", False),
        ]


async def test_on_off_round_trip_and_soft_failures(tmp_path: Path) -> None:
    models = ("lumi.plug", "lumi.ctrl_neutral1", "lumi.sensor_ht")
    # a sleepy device is never awake: a command to it always expires
    async with joined(tmp_path, models, seed=5, awake_s=0.0) as (sim, coord, rec):
        plug = sim.device("lumi.plug")
        relay = sim.device("lumi.ctrl_neutral1")
        out = await coord.switch(plug.ieee, "on")
        assert out == CommandResult(CommandStatus.OK, "", {"switch": True})
        assert _is_on(plug)
        await until(lambda: (plug.ieee, "switch", True) in rec.readings)
        assert (await coord.switch(plug.ieee, "toggle")).status is CommandStatus.OK
        assert not _is_on(plug)
        await until(lambda: (plug.ieee, "switch", False) in rec.readings)
        # the wall switch's relay is endpoint 2
        assert (await coord.switch(relay.ieee, "on")).status is CommandStatus.OK
        assert relay.on
        assert relay.received[-1][:2] == (0x0006, 2)
        # soft failures: no ack, sleeping device, unknown device, no switch
        plug.reachable = False
        out = await coord.switch(plug.ieee, "off")
        assert out.status is CommandStatus.UNREACHABLE
        assert "MAC_NO_ACK" in out.detail
        ht = sim.device("lumi.sensor_ht")
        coord.table.update(ht.ieee, model=None)  # as if not identified yet
        out = await coord.switch(ht.ieee, "on")
        assert out.status is CommandStatus.UNREACHABLE
        assert "MAC_TRANSACTION_EXPIRED" in out.detail
        assert (await coord.switch("0011223344556677", "on")).status is CommandStatus.UNKNOWN_DEVICE
        coord.table.update(ht.ieee, model="lumi.sensor_ht")
        assert (await coord.switch(ht.ieee, "on")).status is CommandStatus.UNSUPPORTED
        counters = coord.health_counters()
        assert counters["commands_ok"] == 3
        assert counters["commands_failed"] == 2


async def test_leave_and_nwk_change(tmp_path: Path) -> None:
    models = ("lumi.sensor_magnet.aq2", "lumi.sensor_ht")
    async with joined(tmp_path, models, seed=11) as (sim, coord, rec):
        magnet = sim.device("lumi.sensor_magnet.aq2")
        sim.announce(magnet, new_nwk=0x1234)
        await until(lambda: record(coord, magnet.ieee).nwk == 0x1234)
        rec.readings.clear()
        sim.deliver(magnet, 0x0006, 1, bytes.fromhex("185d0a00001001"))
        await until(lambda: bool(rec.readings))
        assert rec.readings == [(magnet.ieee, "opening", True)]
        ht = sim.device("lumi.sensor_ht")
        sim.leave(ht)
        await until(lambda: rec.left == [ht.ieee])
        assert coord.table.get(ht.ieee) is None
        assert coord.health_counters()["devices"] == 1


async def test_unplug_replug_and_restart_resume_the_network(tmp_path: Path) -> None:
    rec = Recorder()
    models = ("lumi.sensor_ht", "lumi.plug")
    async with ZStackSimulator(devices=models, seed=13) as sim:
        coord = Coordinator(config(sim, tmp_path), rec)
        async with running(coord):
            await joined_network(sim, coord, rec, models)
            pan, key = sim.pan_id, sim.network_key
            sim.unplug()
            await until(lambda: not coord.connected)
            assert not os.path.lexists(sim.path)
            await asyncio.sleep(0.3)  # a few reconnect attempts against a missing port
            sim.plug()
            await until(lambda: coord.connected)
            assert coord.counters["networks_formed"] == 1
            assert coord.counters["networks_resumed"] == 1
            assert coord.health_counters()["reconnects"] >= 1
            assert (sim.pan_id, sim.network_key, sim.counters["formations"]) == (pan, key, 1)
            rec.readings.clear()
            sim.report(sim.device("lumi.plug"))
            await until(lambda: bool(rec.readings))
        # a service restart: a new driver on the persisted table resumes without forming
        rec2 = Recorder()
        nv_writes = sim.counters["nv_writes"]
        coord2 = Coordinator(config(sim, tmp_path), rec2)
        assert len(coord2.table) == 0  # the constructor reads nothing from disk
        coord2.load()
        assert {r.model for r in coord2.table} == set(models)
        async with running(coord2):
            await until(lambda: coord2.connected)
            assert coord2.counters["networks_formed"] == 0
            assert sim.counters["formations"] == 1
            assert sim.counters["nv_writes"] == nv_writes  # network NV untouched
            ht = sim.device("lumi.sensor_ht")
            sim.deliver(ht, 0x0405, 1, bytes.fromhex("181d0a0000210b0f"))
            await until(lambda: bool(rec2.readings))
            assert rec2.readings == [(ht.ieee, "humidity", 38.51)]


async def test_corrupt_bytes_resync(tmp_path: Path) -> None:
    async with joined(tmp_path, ("lumi.sensor_ht",), seed=17) as (sim, coord, rec):
        ht = sim.device("lumi.sensor_ht")
        delivered: list[bytes] = []

        def count(msg: Message) -> None:
            # humidity frames only: the join's fast interview may still be answered (Basic)
            if msg.command is AF_INCOMING_MSG and msg["ClusterId"] == 0x0405:
                delivered.append(bytes(msg["Data"]))

        assert coord._api is not None
        coord._api.subscribe(count)
        rec.readings.clear()
        sim.corruption_rate = 0.3
        for _ in range(40):
            sim.deliver(ht, 0x0405, 1, bytes.fromhex("181d0a0000210b0f"))
            await asyncio.sleep(0.005)
        sim.corruption_rate = 0.0
        # a clean frame after the storm: everything before it has been read
        sim.deliver(ht, 0x0405, 1, bytes.fromhex("181e0a0000210c0f"))
        await until(lambda: len(rec.readings) == 2)
        assert sim.counters["corrupted"] > 0
        assert coord.health_counters()["bad_frames"] > 0
        # every copy that got through is the clean frame (a corrupted one never passes
        # the FCS); the duplicates are dropped: one reading each, the rest counted
        copies = [d for d in delivered if d == bytes.fromhex("181d0a0000210b0f")]
        assert delivered == [*copies, bytes.fromhex("181e0a0000210c0f")]
        assert 1 <= len(copies) < 40
        assert rec.readings == [(ht.ieee, "humidity", 38.51), (ht.ieee, "humidity", 38.52)]
        assert coord.health_counters()["duplicates_dropped"] == len(copies) - 1
        assert coord.connected


async def test_watchdog_restarts_a_mute_stick(tmp_path: Path) -> None:
    async with ZStackSimulator(seed=19) as sim:
        coord = Coordinator(config(sim, tmp_path))
        async with running(coord):
            await until(lambda: coord.connected)
            sim.mute = True
            await until(lambda: not coord.connected)
            assert coord.counters["watchdog_failures"] >= 1
            await until(lambda: "no answer from the stick at" in coord.reason)
            assert sim.path in coord.reason
            sim.mute = False
            await until(lambda: coord.connected)
            assert coord.counters["networks_resumed"] == 1


async def test_nvram_failure_needs_a_human(tmp_path: Path) -> None:
    async with ZStackSimulator(seed=23) as sim:
        sim.nv_broken = True
        coord = Coordinator(config(sim, tmp_path))
        async with running(coord) as sup:
            await until(lambda: sup.state is State.FAILED)
            assert coord.reason == "NVRAM corrupted, re-flash the stick"


async def test_missing_port_is_transient(tmp_path: Path) -> None:
    coord = Coordinator(CoordinatorConfig(port=str(tmp_path / "nope"), timing=FAST))
    with pytest.raises(TransientError, match="cannot open"):
        async with coord.session():
            pass


async def test_backup_restore_round_trip(tmp_path: Path) -> None:
    rec = Recorder()
    async with ZStackSimulator(devices=("lumi.plug",), seed=29) as sim_a:
        coord = Coordinator(config(sim_a, tmp_path / "a"), rec)
        async with running(coord):
            await joined_network(sim_a, coord, rec, ("lumi.plug",))
            for _ in range(5):
                await coord.switch(sim_a.device("lumi.plug").ieee, "toggle")
            doc = await coord.backup()
    assert doc["metadata"] == {
        "version": 1,
        "format": "zigpy/open-coordinator-backup",
        "source": "migw",
        "internal": doc["metadata"]["internal"],
    }
    assert doc["coordinator_ieee"] == "00124b0001c0ffee"
    assert doc["pan_id"] == f"{sim_a.pan_id:04x}"
    assert doc["extended_pan_id"] == sim_a.extended_pan_id
    assert doc["channel"] == 20
    assert doc["network_key"] == {
        "key": sim_a.network_key.hex(),
        "sequence_number": 0,
        "frame_counter": sim_a.frame_counter,
    }
    assert doc["network_key"]["frame_counter"] >= 5
    assert [d["ieee_address"] for d in doc["devices"]] == [sim_a.device("lumi.plug").ieee]
    # the plug's unique TC link key (derived from the TCLK seed) and its counters
    plug_key = sim_a.link_key(sim_a.device("lumi.plug"))
    assert plug_key is not None
    assert doc["devices"][0]["link_key"] == {
        "key": plug_key.hex(),
        "tx_counter": 7,
        "rx_counter": 42,
    }
    # zigpy (ZHA) reads it
    backups = pytest.importorskip("zigpy.backups")
    zb = backups.NetworkBackup.from_open_coordinator_json(doc)
    assert zb.network_info.network_key.key.serialize() == sim_a.network_key
    assert zb.network_info.pan_id == sim_a.pan_id
    # restore onto a blank stick (another IEEE) through a one-shot session
    async with ZStackSimulator(seed=31, ieee="00124b0009999999") as sim_b:
        coord_b = Coordinator(config(sim_b, tmp_path / "b"))
        async with coord_b.session(start=False) as session:
            await session.restore(doc)
            again = await session.backup()
        assert (sim_b.pan_id, sim_b.extended_pan_id, sim_b.channel, sim_b.network_key) == (
            sim_a.pan_id,
            sim_a.extended_pan_id,
            sim_a.channel,
            sim_a.network_key,
        )
        assert sim_b.ieee != sim_a.ieee
        assert again["coordinator_ieee"] == doc["coordinator_ieee"]
        assert again["network_key"]["frame_counter"] == doc["network_key"]["frame_counter"] + 10_000
        skip = ("metadata", "network_key", "devices")
        assert {k: v for k, v in again.items() if k not in skip} == {
            k: v for k, v in doc.items() if k not in skip
        }
        # the child table is not restored (docs/zigbee.md): the plug is no longer a child
        assert doc["devices"][0]["is_child"] is True
        # the link key is back, its outgoing counter moved on (zigpy-znp: +2500)
        assert again["devices"] == [
            {
                **doc["devices"][0],
                "is_child": False,
                "link_key": {"key": plug_key.hex(), "tx_counter": 7 + 2500, "rx_counter": 42},
            }
        ]
        assert sim_b.link_key(sim_a.device("lumi.plug")) == plug_key
        assert coord_b.table.get(sim_a.device("lumi.plug").ieee) is not None
        # and the restored stick starts the same network without forming again
        formations = sim_b.counters["formations"]
        sim_b.unplug()
        sim_b.plug()
        async with coord_b.session(start=True) as session:
            assert session.info.pan_id == sim_a.pan_id
        assert sim_b.counters["formations"] == formations


async def test_restore_rejects_a_foreign_file(tmp_path: Path) -> None:
    async with ZStackSimulator(seed=37) as sim:
        coord = Coordinator(config(sim, tmp_path))
        async with coord.session(start=False) as session:
            with pytest.raises(NeedsHumanError, match="open coordinator backup"):
                await session.restore({"metadata": {"format": "something", "version": 9}})


async def test_zstack_12(tmp_path: Path) -> None:
    models = ("lumi.sensor_magnet.aq2",)
    async with joined(tmp_path, models, seed=41, product=0) as (sim, coord, _):
        assert coord.info.firmware == "Z-Stack 1.2 20240710"
        assert "APP_CNF_BDB_START_COMMISSIONING" not in sim.commands_seen
        assert sim.nv[0x0F00] == b"\x55"
        doc = await coord.backup()
        assert doc["network_key"]["key"] == sim.network_key.hex()


async def test_unknown_sender_is_looked_up(tmp_path: Path) -> None:
    """A device missing from the table (table lost) is found again by its NWK address."""
    async with joined(tmp_path, ("lumi.sensor_ht",), seed=43) as (sim, coord, rec):
        ht = sim.device("lumi.sensor_ht")
        coord.table.remove(ht.ieee)
        rec.readings.clear()
        sim.deliver(ht, 0x0405, 1, bytes.fromhex("181d0a0000210b0f"))
        await until(lambda: coord.table.get(ht.ieee) is not None)
        assert coord.counters["unknown_source"] == 1
        assert rec.readings == []  # the frame from an unknown sender was not guessed at
        sim.deliver(ht, 0x0405, 1, bytes.fromhex("181e0a0000210c0f"))
        await until(lambda: bool(rec.readings))
        assert rec.readings == [(ht.ieee, "humidity", 38.52)]


async def test_slow_answers(tmp_path: Path) -> None:
    # the stick answers at once while the network forms and the plug joins (dozens of
    # SREQs, each of which a loaded machine could make later than 0.2 s)
    async with joined(tmp_path, ("lumi.plug",), seed=47, timing=SLOW_SREQ) as (sim, coord, _):
        plug = sim.device("lumi.plug")
        sim.answer_delay = 0.05
        assert (await coord.switch(plug.ieee, "on")).status is CommandStatus.OK
        # slower than the SREQ timeout: a timeout result, not an exception
        sim.answer_delay = 0.3
        out = await coord.switch(plug.ieee, "off")
        assert out.status is CommandStatus.TIMEOUT
        assert coord.health_counters()["commands_failed"] == 1


async def test_fast_interview_reads_the_model(tmp_path: Path) -> None:
    """A device that joins without its model report is identified by the Basic read."""
    rec = Recorder()
    async with ZStackSimulator(seed=53) as sim:
        magnet = sim.add_device("lumi.sensor_magnet.aq2")
        magnet.silent_join = True
        coord = Coordinator(config(sim, tmp_path), rec)
        async with running(coord):
            await joined_network(sim, coord, rec, ("lumi.sensor_magnet.aq2",))
            assert magnet.received[0] == (0x0000, 1, magnet.received[0][2])
            read = magnet.received[0][2]
            assert read[0] == 0x00 and read[2] == 0x00  # client->server Read Attributes
            assert read[3:] == bytes.fromhex("04000500")  # manufacturer, model
            assert record(coord, magnet.ieee).manufacturer == "LUMI"


async def test_reset_indication_at_boot_is_not_a_crash(tmp_path: Path) -> None:
    """Boards reset when the port opens and say so: that must not restart the session."""
    async with ZStackSimulator(seed=59) as sim:
        sim.reset_ind_on_open = True
        coord = Coordinator(config(sim, tmp_path))
        async with running(coord):
            await until(lambda: coord.connected)
            await asyncio.sleep(0.5)  # several watchdog rounds
            assert coord.connected
            assert coord.health_counters()["reconnects"] == 0
            # a reset while the network runs is unexpected: the session restarts and resumes
            sim._send(
                c.SYS_RESET_IND.rsp(
                    Reason=t.ResetReason.WATCHDOG,
                    TransportRev=2,
                    ProductId=1,
                    MajorRel=2,
                    MinorRel=7,
                    MaintRel=1,
                )
            )
            await until(lambda: coord.health_counters()["reconnects"] == 1)
            await until(lambda: coord.connected)
            assert coord.counters["networks_resumed"] == 1


async def test_lost_network_needs_a_human_not_a_new_network(tmp_path: Path) -> None:
    async with ZStackSimulator(seed=61) as sim:
        coord = Coordinator(config(sim, tmp_path))
        async with running(coord):
            await until(lambda: coord.connected)
        # the stick keeps our marker but loses the network state (NV partly wiped)
        sim.nv[0x0055] = b"\x00"
        sim.unplug()
        sim.plug()
        coord2 = Coordinator(config(sim, tmp_path))
        async with running(coord2) as sup:
            await until(lambda: sup.state is State.FAILED)
            assert "lost its network" in coord2.reason
            assert str(tmp_path / "zigbee_backup.json") in coord2.reason
        assert sim.counters["formations"] == 1


async def test_reflashed_stick_with_a_backup_needs_a_human_not_a_new_network(
    tmp_path: Path,
) -> None:
    """A re-flashed stick (no marker) must not orphan the devices nor destroy the backup."""
    async with ZStackSimulator(devices=("lumi.plug",), seed=67) as sim:
        coord = Coordinator(config(sim, tmp_path))
        backup = tmp_path / co.BACKUP_FILE
        async with running(coord):
            await until(backup.exists)
        saved = backup.read_bytes()
        sim.unplug()
        sim.nv = default_nv(sim.ieee)  # factory-fresh NV: the marker is gone
        sim.ex_nv = {}
        sim.plug()
        coord2 = Coordinator(config(sim, tmp_path))
        async with running(coord2) as sup:
            await until(lambda: sup.state is State.FAILED)
            assert "migw zigbee restore" in coord2.reason
            assert "backup exists" in coord2.reason
        assert sim.counters["formations"] == 1
        assert backup.read_bytes() == saved
        assert sorted(n for n in os.listdir(tmp_path) if "backup" in n) == [co.BACKUP_FILE]


async def test_stick_on_a_network_without_our_marker_is_not_reformed(tmp_path: Path) -> None:
    async with ZStackSimulator(seed=71) as sim:
        sim.nv[NvId.BDBNODEISONANETWORK] = b"\x01"  # formed by someone else
        coord = Coordinator(config(sim, tmp_path))
        async with running(coord) as sup:
            await until(lambda: sup.state is State.FAILED)
            assert "on a network" in coord.reason
        assert sim.counters["formations"] == 0
        assert not (tmp_path / co.BACKUP_FILE).exists()


async def test_auto_backup_never_overwrites_another_networks_backup(tmp_path: Path) -> None:
    async with ZStackSimulator(seed=73) as sim:
        coord = Coordinator(config(sim, tmp_path))
        backup = tmp_path / co.BACKUP_FILE
        async with running(coord):
            await until(backup.exists)
        other = json.loads(backup.read_text())
        other["extended_pan_id"] = "0102030405060708"
        other["network_key"]["key"] = "00" * 16
        co.write_secret_json(backup, other)
        coord2 = Coordinator(config(sim, tmp_path))
        async with running(coord2):
            await until(lambda: coord2.counters["backups"] == 1)
        files = sorted(tmp_path / n for n in os.listdir(tmp_path) if "backup" in n)
        assert len(files) == 2
        kept = [p for p in files if p.name != co.BACKUP_FILE]
        assert kept[0].name.startswith("zigbee_backup.0102030405060708.")
        assert json.loads(kept[0].read_text()) == other
        assert json.loads(backup.read_text())["extended_pan_id"] == sim.extended_pan_id
        for p in files:
            assert p.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("product", "firmware"),
    [(0, "Z-Stack 1.2"), (1, "Z-Stack 3.x.0"), (2, "Z-Stack 3.0.x")],
)
async def test_backup_restore_on_every_stack_version(
    tmp_path: Path, product: int, firmware: str
) -> None:
    """The NWK frame counter lives elsewhere per version (1.2: NWKKEY, 3.0.x: legacy table)."""
    rec = Recorder()
    async with ZStackSimulator(devices=("lumi.plug",), product=product, seed=79) as sim_a:
        coord = Coordinator(config(sim_a, tmp_path / "a"), rec)
        async with running(coord):
            await joined_network(sim_a, coord, rec, ("lumi.plug",))
            assert coord.info.firmware.startswith(firmware)
            for _ in range(5):
                await coord.switch(sim_a.device("lumi.plug").ieee, "toggle")
            doc = await coord.backup()
        assert doc["network_key"] == {
            "key": sim_a.network_key.hex(),
            "sequence_number": 0,
            "frame_counter": sim_a.frame_counter,
        }
        assert sim_a.frame_counter >= 5
    async with ZStackSimulator(product=product, seed=83, ieee="00124b0009999999") as sim_b:
        coord_b = Coordinator(config(sim_b, tmp_path / "b"))
        # a 3.x seed in the file (another stick's backup) is not written over 1.2's 0x0101
        seeded = {**doc, "stack_specific": {"zstack": {"tclk_seed": "11" * 16}}}
        async with coord_b.session(start=False) as session:
            await session.restore(seeded)
            again = await session.backup()
        assert sim_b.frame_counter == doc["network_key"]["frame_counter"] + 10_000
        assert again["network_key"] == {
            **doc["network_key"],
            "frame_counter": doc["network_key"]["frame_counter"] + 10_000,
        }
        assert (sim_b.pan_id, sim_b.extended_pan_id, sim_b.network_key) == (
            sim_a.pan_id,
            sim_a.extended_pan_id,
            sim_a.network_key,
        )
        # the plug's unique link key: Z-Stack 3 keeps one per device, 1.2 none
        plug = doc["devices"][0]
        if product == 0:
            assert "link_key" not in plug
            # 1.2 has no TCLK seed: its 0x0101 is the default TC link key entry, kept as is
            assert doc["stack_specific"] == {}
            assert sim_b.nv[0x0101][8:24] == b"ZigBeeAlliance09"
        else:
            # written: the plug's key no longer derives from it, so it goes to the APS tables
            assert sim_b.nv[0x0101][:16] == bytes([0x11] * 16)
            plug_key = sim_a.link_key(sim_a.device("lumi.plug"))
            assert plug_key is not None
            assert plug["link_key"]["key"] == plug_key.hex()
            assert [d.get("link_key") for d in again["devices"]] == [
                {**plug["link_key"], "tx_counter": plug["link_key"]["tx_counter"] + 2500}
            ]


async def test_failed_ieee_lookup_is_retried(tmp_path: Path) -> None:
    """A lookup whose request times out must not block every later lookup of that sender."""
    models = ("lumi.sensor_ht",)
    async with joined(tmp_path, models, seed=89, timing=SLOW_SREQ) as (sim, coord, _):
        ht = sim.device("lumi.sensor_ht")
        coord.table.remove(ht.ieee)
        sim.ignore_commands = {"ZDO_IEEE_ADDR_REQ"}  # the IEEE request times out
        sim.deliver(ht, 0x0405, 1, bytes.fromhex("181d0a0000210b0f"))
        await until(lambda: coord.counters["unknown_source"] == 1)
        await until(lambda: not coord.dispatcher.pending_lookups, timeout=3.0)
        sim.ignore_commands = set()
        sim.deliver(ht, 0x0405, 1, bytes.fromhex("181e0a0000210c0f"))
        await until(lambda: coord.table.get(ht.ieee) is not None)
        assert coord.counters["unknown_source"] == 2
    assert coord.dispatcher.pending_lookups == frozenset()


async def test_simulator_never_logs_key_material(caplog: pytest.LogCaptureFixture) -> None:
    """A frame the simulator cannot handle is logged without its bytes (it may be a key)."""
    key = bytes.fromhex("01030507090b0d0f00020406080a0c0d")
    # SYS_OSAL_NV_WRITE of PRECFGKEY whose length byte claims more than the frame holds
    bad = frames.Frame.from_header(0x21, 0x09, bytes.fromhex("620000") + b"\x11" + key)
    caplog.set_level(logging.DEBUG)
    async with ZStackSimulator(seed=97) as sim:
        fd = os.open(sim.path, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, frames.encode(bad))
            await until(lambda: sim.counters["frames_in"] == 1)
        finally:
            os.close(fd)
    assert "simulator cannot handle" in caplog.text
    assert key.hex() not in caplog.text
    assert key.hex()[:10] not in caplog.text
    assert repr(key)[2:12] not in caplog.text


async def test_zstack_12_stick_formed_without_our_marker_is_not_reformed(tmp_path: Path) -> None:
    """Z-Stack 1.2 has no BDB item: the NIB (channel set, network key loaded) tells."""
    async with ZStackSimulator(product=0, seed=101) as sim:
        coord = Coordinator(config(sim, tmp_path / "a"))
        async with running(coord):
            await until(lambda: coord.connected)
        del sim.nv[0x0F00]  # our marker gone (another host formed it, or NV partly wiped)
        sim.unplug()
        sim.plug()
        coord2 = Coordinator(config(sim, tmp_path / "b"))  # and no backup of ours
        async with running(coord2) as sup:
            await until(lambda: sup.state is State.FAILED)
            assert "on a network" in coord2.reason
        assert sim.counters["formations"] == 1


async def test_simulated_stick_keeps_its_nv_across_processes(tmp_path: Path) -> None:
    """Issue 11.6: the demo's stick keeps its NV like flash; a new simulator (a restarted
    demo) on the same file carries the network and its joined devices."""
    nv = tmp_path / "stick-nv.json"
    rec = Recorder()
    async with ZStackSimulator(devices=("lumi.weather",), seed=5, nv_path=nv) as sim:
        coord = Coordinator(config(sim, tmp_path), rec)
        async with running(coord):
            await joined_network(sim, coord, rec, ("lumi.weather",))
            first = (sim.pan_id, sim.network_key, sim.device("lumi.weather").nwk)
    assert nv.stat().st_mode & 0o077 == 0
    rec2 = Recorder()
    async with ZStackSimulator(devices=("lumi.weather",), seed=5, nv_path=nv) as sim2:
        dev = sim2.device("lumi.weather")
        assert dev.nwk == first[2]  # still on the network
        coord2 = Coordinator(config(sim2, tmp_path), rec2)
        async with running(coord2):
            await until(lambda: coord2.connected)
            assert coord2.counters["networks_resumed"] == 1
            assert sim2.counters["formations"] == 0
            assert (sim2.pan_id, sim2.network_key) == first[:2]
            sim2.report(dev)
            await until(lambda: bool(rec2.readings))


def test_simulated_weather_reports_each_value_once_and_drifts() -> None:
    """Issue 11.6: a reporting cycle never carries a metric twice (the heartbeat replaces
    the cluster reports), and the air moves by small steps, not random jumps."""
    from drivers.zigbee.zcl.interpret import Interpreter
    from hw_mocks.aqara import SimDevice

    dev = SimDevice("lumi.weather", "00158d0000000001", rng=random.Random(9))
    it = Interpreter()
    temps: list[float] = []
    for _ in range(40):
        metrics: list[str] = []
        for cluster, ep, data, _bcast in dev.reports():
            res = it.interpret(dev.ieee, "lumi.weather", cluster, ep, data)
            metrics += [m for m, _ in res.readings]
            temps += [float(str(v)) for m, v in res.readings if m == "temperature"]
        assert len(metrics) == len(set(metrics)), metrics
    steps = [abs(b - a) for a, b in itertools.pairwise(temps)]
    assert len(temps) > 25
    assert max(steps) < 0.5, steps
    assert it.junk_dropped >= 3  # the -100 °C lumi.weather really sends, dropped


async def test_large_payload_comes_through_af_incoming_msg_ext(tmp_path: Path) -> None:
    """A payload too large for AF_INCOMING_MSG: the stick sends AF_INCOMING_MSG_EXT with the
    length only and keeps the bytes; the driver fetches them with AF_DATA_RETRIEVE in chunks
    and releases the buffer (a zero-length retrieve), as TI's MT_AF.c expects."""
    async with joined(tmp_path, ("lumi.weather",), seed=21) as (sim, coord, rec):
        weather = sim.device("lumi.weather")
        rec.readings.clear()
        # Report Attributes on Temperature Measurement: 22.33 °C, then a 240-character
        # string attribute (synthetic, from the ZCL specification): 254 bytes in all
        data = (
            bytes.fromhex("18770a")
            + bytes.fromhex("0000")
            + b"\x29"
            + (2233).to_bytes(2, "little")
            + b"\x00\x40\x42\xf0"
            + b"1" * 240
        )
        sim.deliver(weather, 0x0402, 1, data)
        await until(lambda: ("temperature", 22.33) in rec.of(weather.ieee))
        # two chunks, then the zero-length retrieve that releases the buffer
        assert sim.commands_seen.count("AF_DATA_RETRIEVE") == 3
        assert sim.held == {}
        assert coord.health_counters()["retrieve_failed"] == 0
        assert coord.interpreter.zcl_errors == 0
