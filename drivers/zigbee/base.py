"""What the parts of the coordinator share: its configuration, what it knows of the stick,
and how an MT status becomes one of our errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from drivers.errors import NeedsHumanError, ProtocolError
from drivers.zigbee.timing import ZigbeeTiming
from drivers.zigbee.znp import types as t
from drivers.zigbee.znp.commands import Message

NVRAM_CORRUPTED = "NVRAM corrupted, re-flash the stick"
#: The automatic backup in the state directory.
BACKUP_FILE = "zigbee_backup.json"
COORDINATOR_ENDPOINT = 1


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    port: str
    baudrate: int = 115200
    rtscts: bool = False
    #: 11-26, used when forming a new network.
    channel: int = 15
    skip_bootloader: bool = True
    #: Where the device table and automatic backups live (None: nothing persisted).
    state_dir: Path | None = None
    backup_interval_s: float = 86400.0
    #: Overrides the per-model motion clear timeout (seconds).
    motion_clear_s: float | None = None
    source: str = "migw"
    timing: ZigbeeTiming = dataclasses.field(default_factory=ZigbeeTiming)


@dataclass(slots=True)
class StickInfo:
    firmware: str = ""
    product: int = -1
    code_revision: int | None = None
    ieee: str = ""
    pan_id: int | None = None
    extended_pan_id: str = ""
    channel: int | None = None


def check(rsp: Message, what: str) -> None:
    """A non-success status as an error: NV_OPER_FAILED needs a human (re-flash)."""
    status = rsp.fields.get("Status", t.Status.SUCCESS)
    if status == t.Status.NV_OPER_FAILED:
        raise NeedsHumanError(NVRAM_CORRUPTED)
    if status != t.Status.SUCCESS:
        raise ProtocolError(f"{what} failed: {t.Status(status).name} (0x{int(status):02X})")
