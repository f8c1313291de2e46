"""What every doctor check shares: the result type, the state gathered on the way (the
config, the running service's view) and small host helpers."""

from __future__ import annotations

import asyncio
import enum
import grp
import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.cli.base import CliContext
from gateway.cli.client import (
    Target,
)
from gateway.config import Config

#: Every check must finish within this many seconds.
CHECK_TIMEOUT_S = 20.0


COMMAND_TIMEOUT_S = 5.0


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
        return {
            "name": self.name,
            "level": self.level.value,
            "detail": self.detail,
            "hint": self.hint,
        }


@dataclass(slots=True)
class Doctor:
    """What the checks share: the config, and what the running service says (if it runs)."""

    ctx: CliContext
    config: Config | None = None
    config_error: str = ""
    target: Target | None = None
    status: dict[str, Any] | None = None
    service_error: str = ""
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


async def command_output(*argv: str) -> str | None:
    """stdout of a short command, or None when it fails or hangs."""
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
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return out.decode(errors="replace") if proc.returncode == 0 else None
