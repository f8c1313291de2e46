"""Which devices the gateway keeps, and what the home owner calls them.

A BLE scanner hears every sensor in range, the neighbours' too. With ``[ble] join =
"allowlisted"`` (the default) a BLE device becomes one of ours only when it is in ``[ble]
allow``, has a bind key, or has a name (``[devices."ble-..."]`` or ``migw name``); others are
*strangers*: listed as seen (``migw devices --seen``) and nothing of theirs reaches the state
cache, the uplink or Home Assistant. ``[ble] ignore`` keeps a device out whatever ``join``
says. A device once added (it has a record in the store, e.g. from before this policy or an
earlier ``join = "all"``) stays until ``migw forget``. Zigbee devices join through
permit-join and GPIO devices come from the config: both are always ours.

Names and rooms come from ``[devices]`` in the config and from ``migw name`` (kept in
``<state_dir>/devices.json``, which wins); the name replaces the driver's in the device
record, so the CLI, the API, the logs and Home Assistant discovery all show it. The room is
the device attribute ``room`` (:attr:`gateway.model.Device.room`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.config import Config, DeviceEntry, ble_device_id
from gateway.errors import ConfigError, StoreError
from gateway.model import DeviceUpdate

_LOGGER = logging.getLogger(__name__)

FILE_NAME = "devices.json"
#: Strangers remembered at most (the least recently heard are forgotten first).
STRANGERS_MAX = 256
BLE_PREFIX = "ble-"


@dataclass(slots=True)
class Stranger:
    """A BLE device in range that is not ours (seen, not added)."""

    id: str
    first_seen: float
    last_seen: float
    adverts: int = 0
    update: DeviceUpdate | None = None

    def to_json(self, now: float) -> dict[str, Any]:
        u = self.update
        return {
            "id": self.id,
            "model": (u.model if u else None) or "",
            "name": (u.name if u else None) or "",
            "manufacturer": (u.manufacturer if u else None) or "",
            "rssi": u.rssi if u else None,
            "encrypted": bool(u and u.attrs and u.attrs.get("encrypted") == "true"),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "last_seen_age_s": round(max(0.0, now - self.last_seen), 3),
            "messages": self.adverts,
        }


@dataclass(slots=True)
class _Local:
    """What ``migw name/allow/forget`` changed (``devices.json``)."""

    names: dict[str, DeviceEntry] = field(default_factory=dict)
    allow: set[str] = field(default_factory=set)
    ignore: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "devices": {k: {"name": v.name, "room": v.room} for k, v in sorted(self.names.items())},
            "allow": sorted(self.allow),
            "ignore": sorted(self.ignore),
        }

    @classmethod
    def from_json(cls, data: Any) -> _Local:
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        names = {}
        for dev, entry in dict(data.get("devices") or {}).items():
            if not isinstance(entry, dict):
                raise TypeError(f"devices.{dev} is not an object")
            names[str(dev)] = DeviceEntry(
                name=str(entry.get("name", "")), room=str(entry.get("room", ""))
            )
        return cls(
            names=names,
            allow={str(x) for x in data.get("allow") or ()},
            ignore={str(x) for x in data.get("ignore") or ()},
        )


def _ids(macs: tuple[str, ...]) -> set[str]:
    return {i for i in (ble_device_id(m) for m in macs) if i is not None}


class DeviceDirectory:
    """Names, rooms and the BLE join policy of one service (config + ``devices.json``)."""

    def __init__(
        self,
        config: Callable[[], Config],
        state_dir: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self.path = state_dir / FILE_NAME
        self._clock = clock
        self._strangers: OrderedDict[str, Stranger] = OrderedDict()
        #: Devices with a record in the store: added once (by any rule), they stay until
        #: forgotten; the join policy decides who is added, not who is dropped.
        self.members: set[str] = set()
        self._policy_of: Config | None = None
        self._policy_cache: tuple[str, frozenset[str], frozenset[str]] = (
            "all",
            frozenset(),
            frozenset(),
        )
        self._local = self._load()

    # ------------------------------------------------------------------ persistence
    def _load(self) -> _Local:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _Local()
        except OSError as exc:
            _LOGGER.error("cannot read %s: %s; device names from the config only", self.path, exc)
            return _Local()
        try:
            return _Local.from_json(json.loads(text))
        except (ValueError, TypeError) as exc:
            aside = self.path.with_name(f"{FILE_NAME}.corrupt-{int(self._clock())}")
            try:
                self.path.rename(aside)
            except OSError:
                aside = self.path
            _LOGGER.error(
                "unreadable %s (%s): kept as %s, starting without it", self.path, exc, aside
            )
            return _Local()

    def _save(self) -> None:
        tmp = self.path.with_name(f".{FILE_NAME}.tmp")
        data = json.dumps(self._local.to_json(), indent=2, ensure_ascii=False) + "\n"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise StoreError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    # ------------------------------------------------------------------ queries
    def entry(self, device_id: str) -> DeviceEntry | None:
        local = self._local.names.get(device_id)
        if local is not None:
            return local
        return self._config().devices.get(device_id)

    def admits(self, device_id: str) -> bool:
        """Whether the device is ours (always, for anything but BLE)."""
        if not device_id.startswith(BLE_PREFIX):
            return True
        join, allowed, ignored = self._policy()
        if device_id in self._local.ignore or device_id in ignored:
            return False
        if join == "all":
            return True
        return (
            device_id in self.members
            or device_id in self._local.allow
            or device_id in allowed
            or self.entry(device_id) is not None
        )

    def _policy(self) -> tuple[str, frozenset[str], frozenset[str]]:
        """(join, ids allowed by the config or with a key, ids ignored), recomputed when the
        config object changes (a reload): this runs for every BLE reading."""
        cfg = self._config()
        if self._policy_of is not cfg:
            ble = cfg.ble
            self._policy_cache = (
                ble.join,
                frozenset(_ids((*ble.allow, *ble.keys, *ble.key_files))),
                frozenset(_ids(ble.ignore)),
            )
            self._policy_of = cfg
        return self._policy_cache

    def strangers(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [s.to_json(now) for s in reversed(self._strangers.values())]

    # ------------------------------------------------------------------ strangers
    def stranger(self, device_id: str, update: DeviceUpdate | None = None) -> None:
        """Note a message from a device that is not ours."""
        now = self._clock()
        s = self._strangers.pop(device_id, None)
        if s is None:
            s = Stranger(device_id, now, now)
            if len(self._strangers) >= STRANGERS_MAX:
                self._strangers.popitem(last=False)
        s.last_seen = now
        s.adverts += 1
        if update is not None:
            s.update = update if s.update is None else merge_update(s.update, update)
        self._strangers[device_id] = s

    def take_stranger(self, device_id: str) -> DeviceUpdate | None:
        """The device description heard from a stranger now admitted (and forget it)."""
        s = self._strangers.pop(device_id, None)
        return None if s is None else s.update

    # ------------------------------------------------------------------ changes
    def apply(self, update: DeviceUpdate) -> DeviceUpdate:
        """A driver's update with the home owner's name and room."""
        entry = self.entry(update.id)
        if entry is None:
            return update
        if entry.name and update.name is not None:
            update = replace(update, name=entry.name)
        if update.attrs is not None:  # attrs replace the stored ones: keep the room in
            update = replace(update, attrs={**update.attrs, "room": entry.room})
        return update

    def set_name(self, device_id: str, name: str, room: str | None) -> DeviceEntry:
        old = self.entry(device_id) or DeviceEntry()
        try:
            entry = DeviceEntry(name=name, room=old.room if room is None else room)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._local.names[device_id] = entry
        self._local.ignore.discard(device_id)
        self._save()
        return entry

    def allow(self, device_id: str) -> None:
        self._local.allow.add(device_id)
        self._local.ignore.discard(device_id)
        self._save()

    def forget(self, device_id: str, *, ignore: bool = False) -> None:
        """Drop the local name and allowance; ``ignore`` also keeps it out from now on."""
        self.members.discard(device_id)
        self._local.names.pop(device_id, None)
        self._local.allow.discard(device_id)
        if ignore:
            self._local.ignore.add(device_id)
        self._save()


def merge_update(old: DeviceUpdate, new: DeviceUpdate) -> DeviceUpdate:
    """``new`` over ``old``: fields ``new`` leaves None keep ``old``'s value."""
    attrs = old.attrs if new.attrs is None else {**(old.attrs or {}), **new.attrs}
    changes = {
        f: getattr(new, f)
        for f in ("model", "name", "manufacturer", "rssi", "lqi", "status", "sleepy")
        if getattr(new, f) is not None
    }
    return replace(old, **changes, attrs=attrs)
