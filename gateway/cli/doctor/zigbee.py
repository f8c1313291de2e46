"""Doctor check of the Zigbee stick: port present and permitted, answering a ZNP ping."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from gateway.cli.doctor.base import (
    Check,
    Doctor,
    Level,
    exists,
    group_of,
    listdir,
    resolve_path,
    user_name,
)
from gateway.errors import GatewayError

#: The stick must answer a SYS_PING within this many seconds (per attempt).
PING_TIMEOUT_S = 1.0


PING_ATTEMPTS = 2


BOOTLOADER_WAIT_S = 1.0


SERIAL_BY_ID = Path("/dev/serial/by-id")


_STICK_HINT = (
    "check zigbee.port (prefer /dev/serial/by-id/...) and zigbee.baud; stop any other "
    "program using the stick (zigbee2mqtt, ZHA); replug it; it needs Z-Stack coordinator "
    "firmware"
)


async def check_serial(d: Doctor) -> Check:
    cfg = d.config
    if cfg is None:
        return Check("zigbee serial port", Level.SKIP, "no valid config")
    radio = d.radio("zigbee")
    if radio is not None and Doctor.radio_ok(radio):
        # the running service owns the port: never open it under its feet
        firmware = radio.get("info", {}).get("firmware", "")
        where = radio.get("info", {}).get("port", "") or cfg.zigbee.port
        return Check(
            "zigbee serial port",
            Level.PASS,
            f"{where}: the running service talks to the stick"
            + (f" ({firmware})" if firmware else ""),
        )
    if not cfg.zigbee.enabled and not cfg.zigbee.port and radio is None:
        return Check("zigbee serial port", Level.SKIP, "zigbee is disabled in the config")
    port = cfg.zigbee.port or radio_port(radio)
    if radio is not None and not port:
        return Check(
            "zigbee serial port",
            Level.FAIL,
            f"the service cannot use the stick: {radio['reason'] or radio['state']}",
            "`journalctl -u migw` for details",
        )
    path = Path(port)
    if not exists(path):
        found = _by_id()
        detail = f"{port} does not exist"
        if found:
            detail += "; sticks present: " + ", ".join(found)
        return Check(
            "zigbee serial port",
            Level.FAIL,
            detail,
            "plug the stick in; `ls -l /dev/serial/by-id/` lists it; set zigbee.port "
            "to that /dev/serial/by-id/... path",
        )
    real = resolve_path(path)
    if not os.access(real, os.R_OK | os.W_OK):
        group = group_of(real)
        return Check(
            "zigbee serial port",
            Level.FAIL,
            f"no permission to open {port} ({real}, group {group})",
            f"sudo usermod -aG {group} {user_name()} and log in again (the migw service "
            f"user needs group {group} too)",
        )
    if radio is not None:
        # the running service owns the port: never open it under its feet
        return Check(
            "zigbee serial port",
            Level.FAIL,
            f"{port}: the service cannot use the stick: {radio['reason'] or radio['state']}",
            "replug the stick; check that no other program (zigbee2mqtt, ZHA) uses it; "
            "`journalctl -u migw` for details",
        )
    try:
        answer = await _ping_stick(
            port, cfg.zigbee.baud, cfg.zigbee.rtscts, cfg.zigbee.skip_bootloader
        )
    except GatewayError as exc:
        return Check("zigbee serial port", Level.FAIL, str(exc), _STICK_HINT)
    except Exception as exc:  # noqa: BLE001 - any driver error is a finding, not a crash
        return Check(
            "zigbee serial port",
            Level.FAIL,
            f"{port}: {type(exc).__name__}: {exc}",
            _STICK_HINT,
        )
    if answer is None:
        return Check(
            "zigbee serial port",
            Level.FAIL,
            f"no answer from the stick at {port} ({cfg.zigbee.baud} baud)",
            _STICK_HINT,
        )
    return Check("zigbee serial port", Level.PASS, f"{port} answers a ping ({answer})")


async def _ping_stick(port: str, baud: int, rtscts: bool, skip_bootloader: bool) -> str | None:
    """SYS_PING (and SYS_VERSION) through the zigbee driver's own link and codec.

    None when the stick does not answer. Raises GatewayError-like errors on open failure.
    """
    from drivers.errors import DriverError
    from drivers.zigbee.api import ZnpApi
    from drivers.zigbee.coordinator import PRODUCTS
    from drivers.zigbee.transport import BOOTLOADER_TOGGLE_S, open_serial
    from drivers.zigbee.znp import commands as c

    api = ZnpApi("doctor")
    try:
        link = await open_serial(
            port,
            baudrate=baud,
            rtscts=rtscts,
            on_bytes=api.data_received,
            on_lost=api.connection_lost,
        )
    except DriverError as exc:
        raise GatewayError(str(exc)) from None
    api.attach(link)
    try:
        if skip_bootloader:
            link.set_control_lines(dtr=False, rts=False)
            await asyncio.sleep(BOOTLOADER_TOGGLE_S)
            link.set_control_lines(rts=True)
            await asyncio.sleep(BOOTLOADER_TOGGLE_S)
            link.set_control_lines(rts=False)
        for attempt in range(PING_ATTEMPTS):
            try:
                await api.request(c.SYS_PING, wait_s=PING_TIMEOUT_S)
            except TimeoutError:
                if skip_bootloader and attempt == 0:
                    api.write_raw(b"\xef")  # the CC2652 bootloader's "run the application"
                    await asyncio.sleep(BOOTLOADER_WAIT_S)
                continue
            try:
                ver = await api.request(c.SYS_VERSION, wait_s=PING_TIMEOUT_S)
            except (TimeoutError, DriverError):
                return "SYS_PING ok"
            product = int(ver["ProductId"])
            return PRODUCTS.get(product, f"Z-Stack product {product}")
        return None
    finally:
        await api.aclose()


def radio_port(radio: dict[str, Any] | None) -> str:
    return str(radio.get("info", {}).get("port", "")) if radio is not None else ""


def _by_id() -> list[str]:
    return sorted(str(p) for p in listdir(SERIAL_BY_ID))
