"""The gateway with ``[ble]`` enabled, through bleak's real BlueZ backend, on a BlueZ D-Bus
stand-in (tests/bluez.py, tests/bluez_mock.py on python-dbusmock and a private dbus-daemon).

Proves: adverts become readings with passive scanning (an advertisement monitor whose
or-patterns BlueZ reads) and with active scanning (discovery), the fallback from passive to
active on a BlueZ without monitors; an adapter that disappears and returns, one powered off
and on, and a bluetoothd restart are noticed at once (degraded health with the reason) and
recovered from; ``migw sniff ble`` without an adapter fails clearly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.ble import bthome
from drivers.ble.scanner import bleak_factory
from drivers.ble.types import UUID_BTHOME_V2
from drivers.supervisor import Timing
from gateway.adapters import BleTransport, Transports
from gateway.adapters.ble import BleDriver, device_id
from gateway.cli import main
from gateway.config import ApiSection, BleSection, Config, GatewaySection
from gateway.model import Value
from gateway.service import Service, ServiceTiming
from tests.bluez import FakeBluez, require

MAC = "A4:C1:38:8D:18:B2"
DEV = device_id(MAC)
#: Fast retries, so recovery is seconds, not the production minute.
FAST = Timing(backoff_initial=0.05, backoff_max=0.3, stable_after=0.5, stop_timeout=3.0)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _tools() -> None:
    require()


def _config(tmp_path: Path, *, passive: bool) -> Config:
    return Config(
        gateway=GatewaySection(state_dir=tmp_path / "state"),
        api=ApiSection(enabled=False, listen="127.0.0.1", port=0),
        ble=BleSection(enabled=True, adapter="hci0", passive=passive, join="all"),
    )


def _service(tmp_path: Path, *, passive: bool) -> Service:
    """The real service and BLE adapter on bleak; only the retry timing is shortened."""
    transport = BleTransport(
        bleak_factory("hci0", passive=passive),
        info={"adapter": "hci0", "passive": str(passive).lower()},
    )
    return Service(
        _config(tmp_path, passive=passive),
        transports=Transports(ble=transport),
        timing=ServiceTiming(supervisor=FAST),
    )


async def _until(cond: Callable[[], Any], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await _value(cond()):
            await asyncio.sleep(0.02)


async def _value(x: Any) -> Any:
    return await x if asyncio.iscoroutine(x) else x


def _frame(packet: int, temperature: float) -> dict[str, bytes]:
    """A plain BTHome v2 advert: packet id, temperature."""
    body = bytes([0x00, packet]) + bthome.encode_number(0x02, temperature)
    return {UUID_BTHOME_V2: bthome.encode_v2(body, mac=MAC)}


def _driver(svc: Service) -> BleDriver:
    return next(d for d in svc.drivers if isinstance(d, BleDriver))


async def _temperature(svc: Service) -> Value | None:
    assert svc.store is not None
    await svc.store.flush()
    state = await svc.store.state(DEV)
    return state["temperature"][0] if state and "temperature" in state else None


async def _advertise_until_stored(bz: FakeBluez, svc: Service, packet: int, temp: float) -> None:
    """Adverts are repeated (as sensors do) until one is stored: a scanner that is just
    (re)starting may miss the first."""

    async def stored() -> bool:
        if await _temperature(svc) == temp:
            return True
        await bz.advertise(MAC, _frame(packet, temp), name="ATC_8D18B2")
        return False

    await _until(stored)


def _reason(svc: Service) -> str:
    return _driver(svc).health().reason


def _noticed(caplog: pytest.LogCaptureFixture, reason: str) -> bool:
    """The scanner failed *because of* ``reason`` (logged by the one supervisor, the
    service's, at once), not after the silence watchdog."""
    return any(reason in r.getMessage() for r in caplog.records if r.name == "gateway.ble")


async def test_passive_scanning_readings_and_recovery_from_adapter_and_bluetoothd_loss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.ble")
    async with FakeBluez(tmp_path) as bz, _service(tmp_path, passive=True) as svc:
        await asyncio.wait_for(svc.ready.wait(), 20)
        await _until(bz.state)  # the mock answers
        await _until(lambda: _has_monitor(bz))
        await _advertise_until_stored(bz, svc, 1, 21.5)
        health = _driver(svc).health()
        assert health.info["scan_mode"] == "passive"
        assert (await bz.state())["Discovering"] is False  # passive: no discovery session
        # the monitor's or-patterns are ours: a foreign service UUID is not delivered
        assert not await bz.advertise(
            "11:22:33:44:55:66", {"0000feaa-0000-1000-8000-00805f9b34fb": b"\x10"}
        )

        # the adapter is unplugged: noticed at once, with the reason, then recovered
        await bz.remove_adapter()
        await _until(lambda: _noticed(caplog, "adapter hci0 removed (InterfacesRemoved)"), 10)
        # while it is away, health says so (the retries find no adapter)
        await _until(lambda: "adapter hci0 not found in BlueZ" in _reason(svc), 10)
        assert svc.health()["status"] == "degraded"
        hint = _driver(svc).health().info["hint"]  # what `migw doctor` shows as the fix
        assert "the adapter is gone" in hint and "resumes by itself" in hint
        await bz.add_adapter()
        await _until(lambda: _has_monitor(bz))
        await _advertise_until_stored(bz, svc, 2, 22.5)
        await _until(lambda: svc.health()["status"] == "ok")

        # powered off and on
        await bz.set_powered(False)
        await _until(lambda: _noticed(caplog, "adapter hci0 powered off"), 10)
        await _until(lambda: "powered off" in _reason(svc), 10)
        assert "bluetoothctl power on" in _driver(svc).health().info["hint"]
        await bz.set_powered(True)
        await _advertise_until_stored(bz, svc, 3, 23.5)

        # bluetoothd restarts: its monitors are gone, ours must be registered again
        await bz.restart_bluetoothd()
        await _until(lambda: _noticed(caplog, "bluetoothd"), 10)
        await _until(lambda: _has_monitor(bz))
        await _advertise_until_stored(bz, svc, 4, 24.5)
        assert _restarts(svc) >= 3
        await _until(lambda: svc.health()["status"] == "ok")


def _restarts(svc: Service) -> int:
    return _driver(svc).health().counters["scanner_restarts"]


async def _has_monitor(bz: FakeBluez) -> bool:
    try:
        return bool((await bz.state())["Monitors"])
    except RuntimeError:  # the adapter or bluetoothd is not back yet
        return False


async def test_active_scanning_uses_discovery_and_recovers(tmp_path: Path) -> None:
    async with FakeBluez(tmp_path) as bz, _service(tmp_path, passive=False) as svc:
        await asyncio.wait_for(svc.ready.wait(), 20)
        await _until(lambda: _discovering(bz))
        await _advertise_until_stored(bz, svc, 1, 19.0)
        assert _driver(svc).health().info["scan_mode"] == "active"
        assert (await bz.state())["Monitors"] == 0
        await bz.remove_adapter()
        await _until(lambda: "adapter hci0 not found in BlueZ" in _reason(svc), 10)
        await bz.add_adapter()
        await _until(lambda: _discovering(bz))
        await _advertise_until_stored(bz, svc, 2, 19.5)


async def _discovering(bz: FakeBluez) -> bool:
    try:
        return bool((await bz.state())["Discovering"])
    except RuntimeError:
        return False


async def test_a_bluez_without_monitors_falls_back_to_active(tmp_path: Path) -> None:
    async with FakeBluez(tmp_path, monitors=False) as bz, _service(tmp_path, passive=True) as svc:
        await asyncio.wait_for(svc.ready.wait(), 20)
        await _until(lambda: _discovering(bz))
        await _advertise_until_stored(bz, svc, 7, 18.0)
        assert _driver(svc).health().info["scan_mode"] == "active"


async def test_no_adapter_is_a_clear_degraded_reason(tmp_path: Path) -> None:
    async with FakeBluez(tmp_path, adapters=()) as bz, _service(tmp_path, passive=True) as svc:
        await asyncio.wait_for(svc.ready.wait(), 20)
        await _until(lambda: "adapter hci0 not found in BlueZ" in _reason(svc), 10)
        await bz.add_adapter()
        await _until(lambda: _has_monitor(bz))
        await _advertise_until_stored(bz, svc, 9, 17.0)


async def test_sniff_ble_without_an_adapter_exits_1_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeBluez(tmp_path, adapters=()):
        code = await asyncio.to_thread(main, ["sniff", "ble", "--no-config", "--duration", "10"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("migw sniff ble: cannot scan on hci0: ")
    assert "adapter hci0 not found in BlueZ" in err.splitlines()[0]


async def test_doctor_bluez_check_trusts_dbus_when_no_binary_is_installed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container has no bluetoothd/bluetoothctl but reaches the host's BlueZ over D-Bus."""
    from gateway.cli.doctor import DoctorHost
    from tests.test_cli_doctor import doctor, write_config

    host = DoctorHost(bluez_daemons=())
    cfg = write_config(tmp_path, "[ble]\nenabled = true\n")
    async with FakeBluez(tmp_path):
        monkeypatch.setenv("PATH", str(tmp_path / "no-binaries"))
        _code, checks = await doctor(capsys, "--config", str(cfg), host=host)
    assert checks["bluez"]["level"] == "pass", checks["bluez"]
    assert "answers on the D-Bus system bus" in checks["bluez"]["detail"]
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    _code, checks = await doctor(capsys, "--config", str(cfg), host=host)
    assert checks["bluez"]["level"] == "fail"
    assert checks["bluez"]["hint"] == "sudo apt-get install bluez"
