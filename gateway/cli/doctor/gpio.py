"""Doctor check of gpiochip access."""

from __future__ import annotations

import os
from typing import Any

from gateway.cli.doctor.base import (
    Check,
    Checks,
    Doctor,
    Level,
    Named,
    group_of,
    listdir,
    radio_check,
    user_name,
)
from gateway.config import Config

GPIOCHIP = Named("gpiochip")


def _driving(info: dict[str, Any], _cfg: Config) -> str:
    return f"the running service drives {info.get('devices', '?')} GPIO devices"


@radio_check(GPIOCHIP, "gpio", _driving)
async def check_gpio(d: Doctor, cfg: Config, radio: dict[str, Any] | None) -> Check:
    if radio is not None:
        return GPIOCHIP(
            Level.FAIL,
            f"the service cannot drive its GPIO devices: {radio['reason'] or radio['state']}",
            "`journalctl -u migw` for details; check the pins in [[gpio.devices]]",
        )
    if not cfg.gpio.devices:
        return GPIOCHIP(Level.SKIP, "no GPIO devices configured")
    chips = sorted(p for p in listdir(d.host.dev) if p.name.startswith("gpiochip"))
    if not chips:
        return GPIOCHIP(
            Level.FAIL,
            f"no {d.host.dev}/gpiochip* device: not a Raspberry Pi, or the GPIO driver is missing",
            "run on the Pi; or remove the [[gpio.devices]] entries",
        )
    denied = [p for p in chips if not os.access(p, os.R_OK | os.W_OK)]
    if len(denied) == len(chips):
        group = group_of(chips[0])
        return GPIOCHIP(
            Level.FAIL,
            f"no permission on {', '.join(p.name for p in chips)} (group {group})",
            f"sudo usermod -aG {group} {user_name()} and log in again",
        )
    return GPIOCHIP(Level.PASS, f"{', '.join(p.name for p in chips if p not in denied)} usable")


#: This module's checks in the order they run, each with its name.
CHECKS: Checks = ((GPIOCHIP, check_gpio),)
