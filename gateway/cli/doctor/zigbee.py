"""Doctor check of the Zigbee stick: port present and permitted, answering a ZNP ping."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gateway.cli.doctor.base import (
    Check,
    Checks,
    Doctor,
    DoctorHost,
    Level,
    Named,
    exists,
    group_of,
    listdir,
    radio_check,
    resolve_path,
    user_name,
)
from gateway.config import Config
from gateway.errors import GatewayError

_STICK_HINT = (
    "check zigbee.port (prefer /dev/serial/by-id/...) and zigbee.baud; stop any other "
    "program using the stick (zigbee2mqtt, ZHA); replug it; it needs Z-Stack coordinator "
    "firmware"
)


STICK = Named("zigbee serial port")


def _talking(info: dict[str, Any], cfg: Config) -> str:
    firmware = info.get("firmware", "")
    where = info.get("port", "") or cfg.zigbee.port
    return f"{where}: the running service talks to the stick" + (
        f" ({firmware})" if firmware else ""
    )


@radio_check(STICK, "zigbee", _talking)
async def check_serial(d: Doctor, cfg: Config, radio: dict[str, Any] | None) -> Check:
    if not cfg.zigbee.enabled and not cfg.zigbee.port and radio is None:
        return STICK(Level.SKIP, "zigbee is disabled in the config")
    port = cfg.zigbee.port or radio_port(radio)
    if radio is not None and not port:
        return STICK(
            Level.FAIL,
            f"the service cannot use the stick: {radio['reason'] or radio['state']}",
            "`journalctl -u migw` for details",
        )
    path = Path(port)
    if not exists(path):
        found = sorted(str(p) for p in listdir(d.host.serial_by_id))
        detail = f"{port} does not exist"
        if found:
            detail += "; sticks present: " + ", ".join(found)
        return STICK(
            Level.FAIL,
            detail,
            "plug the stick in; `ls -l /dev/serial/by-id/` lists it; set zigbee.port "
            "to that /dev/serial/by-id/... path",
        )
    real = resolve_path(path)
    if not os.access(real, os.R_OK | os.W_OK):
        group = group_of(real)
        return STICK(
            Level.FAIL,
            f"no permission to open {port} ({real}, group {group})",
            f"sudo usermod -aG {group} {user_name()} and log in again (the migw service "
            f"user needs group {group} too)",
        )
    if radio is not None:
        # the running service owns the port: never open it under its feet
        return STICK(
            Level.FAIL,
            f"{port}: the service cannot use the stick: {radio['reason'] or radio['state']}",
            "replug the stick; check that no other program (zigbee2mqtt, ZHA) uses it; "
            "`journalctl -u migw` for details",
        )
    try:
        answer = await _ping_stick(
            port, cfg.zigbee.baud, cfg.zigbee.rtscts, cfg.zigbee.skip_bootloader, d.host
        )
    except GatewayError as exc:
        return STICK(Level.FAIL, str(exc), _STICK_HINT)
    except Exception as exc:  # noqa: BLE001 - any driver error is a finding, not a crash
        return STICK(
            Level.FAIL,
            f"{port}: {type(exc).__name__}: {exc}",
            _STICK_HINT,
        )
    if answer is None:
        return STICK(
            Level.FAIL,
            f"no answer from the stick at {port} ({cfg.zigbee.baud} baud)",
            _STICK_HINT,
        )
    return STICK(Level.PASS, f"{port} answers a ping ({answer})")


async def _ping_stick(
    port: str, baud: int, rtscts: bool, skip_bootloader: bool, host: DoctorHost
) -> str | None:
    """The driver's own probe (``drivers.zigbee.probe.ping_stick``): what answers, or None
    when the stick does not. Errors opening the port are raised as :class:`GatewayError`."""
    from drivers.errors import DriverError
    from drivers.zigbee.probe import PRODUCTS, ping_stick

    try:
        version = await ping_stick(
            port,
            baudrate=baud,
            rtscts=rtscts,
            skip=skip_bootloader,
            timing=host.stick,
            attempts=host.ping_attempts,
        )
    except DriverError as exc:
        raise GatewayError(str(exc)) from None
    if version is None:
        return None
    if version.product < 0:
        return "SYS_PING ok"  # no SYS_VERSION answer
    return PRODUCTS.get(version.product, f"Z-Stack product {version.product}")


def radio_port(radio: dict[str, Any] | None) -> str:
    return str(radio.get("info", {}).get("port", "")) if radio is not None else ""


#: This module's checks in the order they run, each with its name.
CHECKS: Checks = ((STICK, check_serial),)
