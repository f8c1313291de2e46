"""One command path for every caller (LAN API, MQTT, CLI) to every driver."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.driver import Driver
from gateway.model import Command, CommandResult, CommandStatus

_LOGGER = logging.getLogger(__name__)

#: A driver gets this long to carry out a command (a Zigbee end device may be slow).
COMMAND_TIMEOUT_S = 10.0
MAX_PULSE_S = 3600.0
#: Seconds a ``pulse`` without ``seconds`` keeps an output on.
DEFAULT_PULSE_S = 1.0


class CommandParseError(ValueError):
    """A command body that is not one of the documented shapes."""


def parse_command(body: Any) -> Command:
    """``{"switch": true}``, ``{"command": "on|off|toggle"}``, ``{"command": "pulse",
    "seconds": 2}``, or the CLI words ``on``/``off``/``toggle``. Raises CommandParseError."""
    if isinstance(body, str):
        body = {"command": body.strip().lower()}
    if not isinstance(body, Mapping):
        raise CommandParseError("command must be a JSON object")
    keys = set(body)
    if keys == {"switch"}:
        value = body["switch"]
        if not isinstance(value, bool):
            raise CommandParseError("'switch' must be true or false")
        return Command("on" if value else "off")
    if "command" not in body:
        raise CommandParseError("expected {'switch': bool} or {'command': 'on|off|toggle|pulse'}")
    action = body["command"]
    extra = keys - {"command", "seconds"}
    if extra:
        raise CommandParseError(f"unknown field(s): {', '.join(sorted(map(str, extra)))}")
    if action in ("on", "off", "toggle"):
        if "seconds" in body:
            raise CommandParseError("'seconds' only goes with 'pulse'")
        return Command(action)
    if action == "pulse":
        seconds = body.get("seconds", DEFAULT_PULSE_S)
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or not 0 < seconds <= MAX_PULSE_S
        ):
            raise CommandParseError(f"'seconds' must be a number in (0, {MAX_PULSE_S:g}]")
        return Command("pulse", seconds=float(seconds))
    raise CommandParseError(f"unknown command {action!r}: use on, off, toggle or pulse")


class CommandRouter:
    """Routes a command to the driver that owns the device. One router for the service's
    life: a reload swaps its drivers (:meth:`set_drivers`), so holders never go stale."""

    def __init__(self, drivers: Sequence[Driver]) -> None:
        self._drivers = list(drivers)
        self.counters: dict[str, int] = {"commands": 0, "failed": 0}

    def set_drivers(self, drivers: Sequence[Driver]) -> None:
        self._drivers = list(drivers)

    def owns(self, device_id: str) -> bool:
        """Whether a driver takes commands for ``device_id``."""
        return any(d.owns(device_id) for d in self._drivers)

    async def execute(self, device_id: str, command: Command) -> CommandResult:
        self.counters["commands"] += 1
        driver = next((d for d in self._drivers if d.owns(device_id)), None)
        if driver is None:
            self.counters["failed"] += 1
            return CommandResult(CommandStatus.UNKNOWN_DEVICE, f"no device {device_id!r}")
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                result = await driver.command(device_id, command)
        except TimeoutError:
            result = CommandResult(CommandStatus.TIMEOUT, f"no answer in {COMMAND_TIMEOUT_S:g} s")
        except Exception as exc:
            _LOGGER.exception("command %s to %s failed", command.action, device_id)
            result = CommandResult(CommandStatus.ERROR, f"{type(exc).__name__}")
        if not result.ok:
            self.counters["failed"] += 1
        return result
