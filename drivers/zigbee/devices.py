"""The coordinator's device table, persisted as JSON in a directory the caller gives.

Written atomically (temporary file, fsync, rename), so a power cut leaves the old or the new
table, never half of one. An unreadable file is moved aside and an empty table started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)

FILE_NAME = "zigbee_devices.json"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    ieee: str  # 16 lowercase hex digits, MSB first
    nwk: int
    model: str | None = None
    manufacturer: str | None = None
    endpoints: tuple[int, ...] = ()
    last_seen: float | None = None  # wall time
    lqi: int | None = None
    joined: float | None = None
    sleepy: bool | None = None

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["nwk"] = f"{self.nwk:04x}"
        d["endpoints"] = list(self.endpoints)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DeviceRecord:
        return cls(
            ieee=str(d["ieee"]).lower(),
            nwk=int(str(d["nwk"]), 16),
            model=d.get("model"),
            manufacturer=d.get("manufacturer"),
            endpoints=tuple(int(e) for e in d.get("endpoints", ())),
            last_seen=d.get("last_seen"),
            lqi=d.get("lqi"),
            joined=d.get("joined"),
            sleepy=d.get("sleepy"),
        )


def atomic_write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (a rename survives a power loss only after this)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DeviceTable:
    def __init__(self, directory: Path | None) -> None:
        self.path = directory / FILE_NAME if directory is not None else None
        self._by_ieee: dict[str, DeviceRecord] = {}
        self._by_nwk: dict[int, str] = {}
        self.dirty = False

    def __len__(self) -> int:
        return len(self._by_ieee)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._by_ieee.values()))

    def get(self, ieee: str) -> DeviceRecord | None:
        return self._by_ieee.get(ieee)

    def by_nwk(self, nwk: int) -> DeviceRecord | None:
        ieee = self._by_nwk.get(nwk)
        return self._by_ieee.get(ieee) if ieee is not None else None

    def put(self, rec: DeviceRecord) -> DeviceRecord:
        old = self._by_ieee.get(rec.ieee)
        if old is not None and self._by_nwk.get(old.nwk) == rec.ieee:
            del self._by_nwk[old.nwk]
        # another device that had this NWK address before has left or moved
        prev = self._by_nwk.get(rec.nwk)
        if prev is not None and prev != rec.ieee:
            _LOGGER.debug("NWK 0x%04X moved from %s to %s", rec.nwk, prev, rec.ieee)
        self._by_ieee[rec.ieee] = rec
        self._by_nwk[rec.nwk] = rec.ieee
        self.dirty = True
        return rec

    def update(self, ieee: str, **changes: Any) -> DeviceRecord | None:
        old = self._by_ieee.get(ieee)
        if old is None:
            return None
        return self.put(dataclasses.replace(old, **changes))

    def remove(self, ieee: str) -> DeviceRecord | None:
        rec = self._by_ieee.pop(ieee, None)
        if rec is not None:
            if self._by_nwk.get(rec.nwk) == ieee:
                del self._by_nwk[rec.nwk]
            self.dirty = True
        return rec

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            records = [DeviceRecord.from_json(d) for d in data["devices"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            with contextlib.suppress(OSError):
                self.path.rename(aside)
            _LOGGER.warning("device table %s unreadable (%s): moved to %s", self.path, exc, aside)
            return
        for rec in records:
            self.put(rec)
        self.dirty = False

    def save(self) -> None:
        if self.path is None:
            return
        atomic_write_json(
            self.path,
            {"version": FORMAT_VERSION, "devices": [r.to_json() for r in self._by_ieee.values()]},
        )
        self.dirty = False


def load_table(directory: Path) -> list[DeviceRecord]:
    """The persisted table, read-only (for the CLI)."""
    table = DeviceTable(directory)
    table.load()
    return sorted(table, key=lambda r: r.ieee)
