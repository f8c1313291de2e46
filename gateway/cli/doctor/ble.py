"""Doctor checks of the BLE adapter (present, unblocked, powered) and BlueZ (version,
passive scanning)."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any

from gateway.cli.client import Target
from gateway.cli.doctor.base import (
    Check,
    Checks,
    Doctor,
    DoctorHost,
    Level,
    Named,
    exists,
    listdir,
    needs_config,
    radio_check,
)
from gateway.config import Config

#: Passive BLE scanning (advertisement monitor) needs BlueZ >= 5.56 with experimental on.
BLUEZ_PASSIVE = (5, 56)


ADAPTER = Named("ble adapter")
BLUEZ = Named("bluez")


def _scanning(info: dict[str, Any], cfg: Config) -> str:
    return f"{info.get('adapter', '') or cfg.ble.adapter}: the running service scans"


@radio_check(ADAPTER, "ble", _scanning)
async def check_ble(d: Doctor, cfg: Config, radio: dict[str, Any] | None) -> Check:
    if not cfg.ble.enabled and radio is None:
        return ADAPTER(Level.SKIP, "ble is disabled in the config")
    adapter = cfg.ble.adapter
    if not (d.host.sys_bluetooth / adapter).exists():
        present = sorted(p.name for p in listdir(d.host.sys_bluetooth))
        return ADAPTER(
            Level.FAIL,
            f"no Bluetooth adapter {adapter}"
            + (f" (present: {', '.join(present)})" if present else ""),
            "check `bluetoothctl list`; on a Pi enable Bluetooth (no dtoverlay=disable-bt "
            "in /boot/firmware/config.txt) and `sudo systemctl enable --now bluetooth`",
        )
    blocked = _rfkill_blocked(d.host.sys_rfkill)
    if blocked:
        return ADAPTER(
            Level.FAIL,
            f"{adapter} is blocked by rfkill ({blocked})",
            "sudo rfkill unblock bluetooth",
        )
    powered = await _powered(adapter, d.host)
    if powered is False:
        return ADAPTER(
            Level.FAIL,
            f"{adapter} is powered off",
            f"bluetoothctl power on (and AutoEnable=true in {d.host.bluez_main_conf})",
        )
    if radio is not None:
        return ADAPTER(
            Level.WARN,
            f"{adapter} present, but the service's scanner is degraded: {radio['reason']}",
            radio.get("info", {}).get("hint")
            or "sudo systemctl restart bluetooth; `journalctl -u migw` for details",
        )
    state = "powered" if powered else "present (power state unknown: no busctl/bluetoothctl)"
    return ADAPTER(Level.PASS, f"{adapter} {state}")


@needs_config(BLUEZ)
async def check_bluez(d: Doctor, target: Target) -> Check:
    cfg = target.config
    radio = d.radio("ble")
    if radio is not None and radio.get("info", {}).get("adapter") == "simulated":
        return BLUEZ(Level.SKIP, "the running service scans a simulated adapter (demo)")
    if not cfg.ble.enabled and radio is None:
        return BLUEZ(Level.SKIP, "ble is disabled in the config")
    version = await _bluez_version(d.host)
    if version is None:
        # no binary to ask (a container): BlueZ may still answer on the system bus
        if Doctor.radio_ok(radio) or await _bluez_on_dbus():
            return BLUEZ(
                Level.PASS,
                "BlueZ answers on the D-Bus system bus (version unknown: no "
                "bluetoothd/bluetoothctl here); passive scanning falls back to active if needed",
            )
        return BLUEZ(
            Level.FAIL,
            "BlueZ not found (no bluetoothd/bluetoothctl, no org.bluez on the system bus)",
            "sudo apt-get install bluez",
        )
    text = ".".join(map(str, version))
    if cfg.ble.passive:
        if version < BLUEZ_PASSIVE:
            return BLUEZ(
                Level.WARN,
                f"BlueZ {text}: too old for passive scanning (needs 5.56): scans actively",
                "upgrade BlueZ (Raspberry Pi OS Bookworm ships 5.66)",
            )
        if not _bluez_experimental(d.host.bluez_main_conf):
            return BLUEZ(
                Level.WARN,
                f"BlueZ {text}: passive scanning needs its experimental features: scans actively",
                f"set Experimental = true in [General] of {d.host.bluez_main_conf} and "
                "sudo systemctl restart bluetooth (or ble.passive = false)",
            )
        return BLUEZ(Level.PASS, f"BlueZ {text}, passive scanning available")
    return BLUEZ(Level.PASS, f"BlueZ {text} (active scanning configured)")


def _rfkill_blocked(sys_rfkill: Path) -> str:
    for dev in listdir(sys_rfkill):
        try:
            if (dev / "type").read_text().strip() != "bluetooth":
                continue
            soft = (dev / "soft").read_text().strip() == "1"
            hard = (dev / "hard").read_text().strip() == "1"
        except OSError:
            continue
        if soft or hard:
            return "hard" if hard else "soft"
    return ""


async def _powered(adapter: str, host: DoctorHost) -> bool | None:
    busctl = shutil.which("busctl")
    if busctl is not None:
        out = await host.output(
            busctl,
            "get-property",
            "org.bluez",
            f"/org/bluez/{adapter}",
            "org.bluez.Adapter1",
            "Powered",
        )
        if out is not None:
            return out.strip() == "b true"
    btctl = shutil.which("bluetoothctl")
    if btctl is not None:
        out = await host.output(btctl, "show")
        if out is not None and (m := re.search(r"Powered:\s*(yes|no)", out)):
            return m.group(1) == "yes"
    return None


async def _bluez_version(host: DoctorHost) -> tuple[int, ...] | None:
    candidates = [
        shutil.which("bluetoothd"),
        *map(str, host.bluez_daemons),
        shutil.which("bluetoothctl"),
    ]
    for exe in candidates:
        if exe is None or not exists(Path(exe)):
            continue
        out = await host.output(exe, "--version")
        if out and (m := re.search(r"(\d+)\.(\d+)", out)):
            return (int(m.group(1)), int(m.group(2)))
    return None


async def _bluez_on_dbus() -> bool:
    """org.bluez has an owner on the system bus (bluetoothd runs, maybe outside a container)."""
    try:
        from dbus_fast import BusType, Message, MessageType
        from dbus_fast.aio import MessageBus

        async with asyncio.timeout(3):
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
            try:
                reply = await bus.call(
                    Message(
                        destination="org.freedesktop.DBus",
                        path="/org/freedesktop/DBus",
                        interface="org.freedesktop.DBus",
                        member="NameHasOwner",
                        signature="s",
                        body=["org.bluez"],
                    )
                )
            finally:
                bus.disconnect()
    except (OSError, TimeoutError, ValueError, EOFError):  # no bus, no permission, no reply
        return False
    return reply.message_type == MessageType.METHOD_RETURN and bool(reply.body[0])


def _bluez_experimental(main_conf: Path) -> bool:
    try:
        conf = main_conf.read_text()
    except OSError:
        conf = ""
    if re.search(r"^\s*Experimental\s*=\s*true", conf, re.MULTILINE | re.IGNORECASE):
        return True
    for proc in listdir(Path("/proc")):
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"bluetoothd"):
            return any(a in (b"-E", b"--experimental") for a in cmdline)
    return False


#: This module's checks in the order they run, each with its name.
CHECKS: Checks = (
    (ADAPTER, check_ble),
    (BLUEZ, check_bluez),
)
