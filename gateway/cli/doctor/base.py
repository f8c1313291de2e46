"""What every doctor check shares: the result type, the state gathered on the way (the
config, the running service's view) and small host helpers."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import grp
import os
import pwd
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.zigbee.timing import ZigbeeTiming
from gateway.cli.base import CliContext
from gateway.cli.client import Target
from gateway.config import Config

UNIT = "migw.service"


class Level(enum.StrEnum):
    PASS = "pass"  # noqa: S105 - a check result, not a password
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    level: Level
    detail: str
    hint: str = ""

    def to_json(self) -> dict[str, str]:
        """Every field by name, the level as its word."""
        return {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _stick_timing() -> ZigbeeTiming:
    # SYS_PING within a second per attempt, the second after the bootloader's "run the
    # application" byte and a second's wait
    return ZigbeeTiming(ping_timeout=1.0, bootloader_wait_s=1.0)


@dataclass(frozen=True, slots=True)
class DoctorHost:
    """Where the checks look on this host and how long they wait: tests point the paths into
    a temporary tree and shorten the waits."""

    #: Bluetooth adapters and radio kill switches (sysfs), BlueZ's config file.
    sys_bluetooth: Path = Path("/sys/class/bluetooth")
    sys_rfkill: Path = Path("/sys/class/rfkill")
    bluez_main_conf: Path = Path("/etc/bluetooth/main.conf")
    #: bluetoothd outside the PATH (Debian, older distributions).
    bluez_daemons: tuple[Path, ...] = (
        Path("/usr/libexec/bluetooth/bluetoothd"),
        Path("/usr/lib/bluetooth/bluetoothd"),
    )
    #: gpiochip devices; Zigbee sticks listed by id.
    dev: Path = Path("/dev")
    serial_by_id: Path = Path("/dev/serial/by-id")
    #: The stick's ping (``ping_timeout``, ``bootloader_wait_s``), tried this many times.
    stick: ZigbeeTiming = field(default_factory=_stick_timing)
    ping_attempts: int = 2
    #: Every check must finish within this many seconds, a helper command within this.
    check_timeout_s: float = 20.0
    command_timeout_s: float = 5.0

    async def output(self, *argv: str) -> str | None:
        """stdout of a short command, or None when it fails or hangs (command_timeout_s)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                stdin=asyncio.subprocess.DEVNULL,
            )
        except OSError:
            return None
        try:
            async with asyncio.timeout(self.command_timeout_s):
                out, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return None
        return out.decode(errors="replace") if proc.returncode == 0 else None


@dataclass(slots=True)
class Doctor:
    """What the checks share: the host, the valid config's target (None when the config
    check failed), and what the running service says (if it runs)."""

    ctx: CliContext
    host: DoctorHost = field(default_factory=DoctorHost)
    target: Target | None = None
    status: dict[str, Any] | None = None
    radios: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.status is not None

    def radio(self, name: str) -> dict[str, Any] | None:
        """The running service's view of a radio; it wins over the config file (a demo
        runs radios on simulated hardware that the config does not enable)."""
        return self.radios.get(name)

    @staticmethod
    def radio_ok(radio: dict[str, Any] | None) -> bool:
        return radio is not None and radio.get("health") == "ok"


@dataclass(frozen=True, slots=True)
class Named:
    """One check's name, once: ``GPIOCHIP(Level.FAIL, detail, hint)`` is its result."""

    name: str

    def __call__(self, level: Level, detail: str, hint: str = "") -> Check:
        return Check(self.name, level, detail, hint)


#: Checks in the order they run, each with its name.
Checks = tuple[tuple[Named, Callable[["Doctor"], Awaitable[Check]]], ...]


def needs_config(
    named: Named,
) -> Callable[[Callable[[Doctor, Target], Awaitable[Check]]], Callable[[Doctor], Awaitable[Check]]]:
    """A check that looks at the config or the service: skipped when the config check found
    no valid config, else given the resolved :class:`Target`."""

    def wrap(
        fn: Callable[[Doctor, Target], Awaitable[Check]],
    ) -> Callable[[Doctor], Awaitable[Check]]:
        @functools.wraps(fn)
        async def check(d: Doctor) -> Check:
            if d.target is None:
                return named(Level.SKIP, "no valid config")
            return await fn(d, d.target)

        return check

    return wrap


def radio_check(
    named: Named, radio: str, healthy: Callable[[dict[str, Any], Config], str]
) -> Callable[
    [Callable[[Doctor, Config, dict[str, Any] | None], Awaitable[Check]]],
    Callable[[Doctor], Awaitable[Check]],
]:
    """A check of the hardware behind ``radio``: while the running service reports that radio
    healthy it passes with ``healthy(info, config)`` (the service owns the hardware: never
    touch it under its feet); otherwise the check runs, given the service's view of the radio
    (None when the service does not run it)."""

    def wrap(
        fn: Callable[[Doctor, Config, dict[str, Any] | None], Awaitable[Check]],
    ) -> Callable[[Doctor], Awaitable[Check]]:
        @needs_config(named)
        @functools.wraps(fn)
        async def check(d: Doctor, target: Target) -> Check:
            view = d.radio(radio)
            if view is not None and Doctor.radio_ok(view):
                return named(Level.PASS, healthy(view.get("info", {}), target.config))
            return await fn(d, target.config, view)

        return check

    return wrap


def exists(path: Path) -> bool:
    return path.exists()


def resolve_path(path: Path) -> Path:
    return path.resolve()


def listdir(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except OSError:
        return []


def group_of(path: Path) -> str:
    try:
        gid = path.stat().st_gid
        return grp.getgrgid(gid).gr_name
    except (OSError, KeyError):
        return "dialout"


def user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "$USER"
