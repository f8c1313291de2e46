"""The gateway's zigbee adapter over the real driver and the pty simulator."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from pathlib import Path

from drivers.supervisor import Supervisor, Timing
from drivers.zigbee import coordinator as co
from gateway.adapters import AdapterContext, DemoOptions
from gateway.adapters import zigbee as adapter
from gateway.adapters.zigbee import ZigbeeDriver
from gateway.config import Config, ZigbeeSection
from gateway.demo import demo_context
from gateway.driver import Health
from gateway.model import (
    Command,
    CommandResult,
    CommandStatus,
    DeviceStatus,
    DeviceUpdate,
    Transport,
)
from hw_mocks.znp import ZStackSimulator
from tests.helpers import RecordingSink
from tests.zigbee_support import until

#: Quick restarts of a failed session (the unplug test).
FAST_RESTART = Timing(backoff_initial=0.05, backoff_max=0.2)


def demo_ctx(tmp_path: Path, options: DemoOptions | None = None) -> AdapterContext:
    return demo_context(Config(), tmp_path, options or DemoOptions(), report_interval=0.02)


def _modelled(sink: RecordingSink, n: int) -> bool:
    """``n`` devices with a model have been announced."""
    return len({d.id for d in sink.devices if d.model}) == n


def _has_readings(sink: RecordingSink) -> bool:
    return bool(sink.readings)


def _settled(driver: ZigbeeDriver) -> bool:
    """The coordinator is connected or has given up with a reason."""
    return driver.coordinator.connected or driver.coordinator.reason != ""


def test_disabled_is_none(tmp_path: Path) -> None:
    assert adapter.create(AdapterContext(Config(), tmp_path)) is None
    assert adapter.create(demo_ctx(tmp_path, DemoOptions(zigbee=False))) is None


async def test_demo_devices_join_and_report(tmp_path: Path) -> None:
    driver = adapter.create(demo_ctx(tmp_path))
    assert driver is not None
    sink = RecordingSink()
    task = asyncio.create_task(driver.run(sink))
    try:
        await until(lambda: len({d.id for d in sink.devices if d.model}) == 8)
        models = {d.model for d in sink.devices if d.model}
        assert "lumi.plug" in models
        for upd in sink.devices:
            assert upd.id.startswith("zb-")
            assert len(upd.id) == 3 + 16
            assert upd.transport is Transport.ZIGBEE
        await until(lambda: len({m for _, m, _ in sink.readings}) >= 6)
        await until(lambda: bool(sink.events))
        assert {e[1] for e in sink.events} == {"button"}
        plug = next(d.id for d in sink.devices if d.model == "lumi.plug")
        res = await driver.command(plug, Command("on"))
        assert res == CommandResult(CommandStatus.OK, "", {"switch": True})
        assert (
            await driver.command(plug, Command("pulse", seconds=1))
        ).status is CommandStatus.UNSUPPORTED
        assert (await driver.command("zb-0000000000000000", Command("on"))).status is (
            CommandStatus.UNKNOWN_DEVICE
        )
        health = driver.health()
        assert health.health is Health.OK
        assert health.info["firmware"] == "Z-Stack 3.x.0 20240710"
        assert health.info["channel"] == "15"
        assert health.info["pan_id"].startswith("0x")
        assert health.info["adapter"] == "simulated Z-Stack"
        for key in ("frames_in", "bad_frames", "reconnects", "junk_dropped", "devices"):
            assert key in health.counters
        assert health.counters["devices"] == 8
        # the network key never shows in health
        doc = await driver.backup()
        key = doc["network_key"]["key"]
        assert key not in repr(health)
        assert all(key not in v for v in health.info.values())
        await driver.permit_join(0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_real_config_against_a_stick(tmp_path: Path) -> None:
    async with ZStackSimulator(devices=("lumi.plug",), seed=2) as sim:
        cfg = Config(zigbee=ZigbeeSection(enabled=True, port=sim.path, channel=25))
        driver = adapter.create(AdapterContext(cfg, tmp_path))
        assert driver is not None
        sink = RecordingSink()
        # run() is one session: the unplug below is survived by a supervisor around it
        # (the service's in the gateway)
        sup = Supervisor("zigbee", lambda: driver.run(sink), timing=FAST_RESTART)
        task = asyncio.create_task(sup.run())
        try:
            await until(lambda: driver.coordinator.connected)
            assert driver.health().info["port"] == sim.path
            await driver.permit_join(30)
            await until(lambda: any(d.model == "lumi.plug" for d in sink.devices))
            plug = sim.device("lumi.plug")
            first = next(d for d in sink.devices if d.model == "lumi.plug")
            assert first == DeviceUpdate(
                id="zb-" + plug.ieee,
                transport=Transport.ZIGBEE,
                model="lumi.plug",
                name="Mi smart plug (ZNCZ02LM)",
                manufacturer="Xiaomi",
                lqi=first.lqi,
                status=DeviceStatus.OK,
                sleepy=False,
                attrs={
                    "ieee": plug.ieee,
                    "nwk": f"0x{plug.nwk:04X}",
                    "model_code": "ZNCZ02LM",
                    "model_name": "Mi power plug ZigBee",
                },
            )
            assert sim.channel == 25
            # a mains device silent too long is unavailable, and back on its next report
            assert driver.check_availability(10**12) == [plug.ieee]
            assert sink.devices[-1].status is DeviceStatus.UNAVAILABLE
            sim.report(plug)
            await until(lambda: sink.devices[-1].status is DeviceStatus.OK)
            sim.unplug()
            await until(lambda: driver.health().health is Health.DEGRADED)
            sim.plug()
            await until(lambda: driver.health().health is Health.OK)
            assert sup.status.restarts >= 1
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_demo_driver_restart_resumes(tmp_path: Path) -> None:
    """The service restarts a failed driver by calling run() again: same network, same ids."""
    driver = adapter.create(demo_ctx(tmp_path))
    assert driver is not None
    ids: list[set[str]] = []
    for _ in range(2):
        sink = RecordingSink()
        task = asyncio.create_task(driver.run(sink))
        try:
            await until(functools.partial(_modelled, sink, 8))
            await until(functools.partial(_has_readings, sink))
            ids.append({d.id for d in sink.devices})
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert ids[0] == ids[1]
    assert driver.coordinator.counters["networks_formed"] == 1
    assert driver.coordinator.counters["networks_resumed"] == 1


async def test_demo_starts_again_in_the_same_state_dir(tmp_path: Path) -> None:
    """The simulated stick keeps its NV in the state dir: a second demo process resumes the
    first one's network (same PAN and key), it does not form a new one."""
    networks: list[tuple[object, object]] = []
    for run in range(2):
        driver = adapter.create(demo_ctx(tmp_path))
        assert driver is not None
        sink = RecordingSink()
        task = asyncio.create_task(driver.run(sink))
        try:
            await until(functools.partial(_settled, driver))
            assert driver.coordinator.reason == ""
            await until((tmp_path / "zigbee-demo" / co.BACKUP_FILE).exists)
            await until(functools.partial(_has_readings, sink))
            info = driver.coordinator.info
            networks.append((info.pan_id, info.extended_pan_id))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        counters = driver.coordinator.counters
        assert (counters["networks_formed"], counters["networks_resumed"]) == (
            (1, 0) if run == 0 else (0, 1)
        ), run
    assert networks[0] == networks[1]
    assert (tmp_path / "zigbee-demo" / "stick-nv.json").stat().st_mode & 0o077 == 0
