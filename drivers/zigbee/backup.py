"""Network backups in the open coordinator backup format (pure).

``zigpy/open-coordinator-backup`` version 1, as written by zigpy (``NetworkBackup.
as_open_coordinator_json``) and zigbee-herdsman (``UnifiedBackupStorage``): IEEE addresses and
PAN ids as big-endian hex strings, keys as hex in wire order. The network key is a secret:
:class:`NetworkInfo`'s repr never shows it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from drivers.errors import NeedsHumanError

FORMAT = "zigpy/open-coordinator-backup"


@dataclass(frozen=True, slots=True)
class LinkKey:
    """A device's own (APS) link key with the trust center, and its frame counters."""

    key: bytes = field(repr=False)
    tx_counter: int = 0
    rx_counter: int = 0


@dataclass(frozen=True, slots=True)
class BackupDevice:
    ieee: str
    nwk: int | None
    is_child: bool = False
    link_key: LinkKey | None = None


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    coordinator_ieee: str
    pan_id: int
    extended_pan_id: str  # 16 hex digits, MSB first
    channel: int
    network_key: bytes = field(repr=False)
    key_sequence: int = 0
    frame_counter: int = 0
    nwk_update_id: int = 0
    security_level: int = 5
    channel_mask: tuple[int, ...] = ()
    devices: tuple[BackupDevice, ...] = ()
    tclk_seed: bytes | None = field(default=None, repr=False)


def _hex(value: str, digits: int, what: str, *, secret: bool = False) -> str:
    v = value.lower().replace(":", "")
    if len(v) != digits or any(ch not in "0123456789abcdef" for ch in v):
        # key material is never echoed (errors end up in logs and on the terminal)
        got = f"{len(value)} characters" if secret else repr(value)
        raise NeedsHumanError(f"backup: {what} must be {digits} hex digits, got {got}")
    return v


def to_open_coordinator(
    info: NetworkInfo, *, source: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    when = (now or dt.datetime.now(dt.UTC)).isoformat()
    doc: dict[str, Any] = {
        "metadata": {
            "version": 1,
            "format": FORMAT,
            "source": source,
            "internal": {"creation_time": when, "date": when},
        },
        "stack_specific": {},
        "coordinator_ieee": info.coordinator_ieee,
        "pan_id": f"{info.pan_id:04x}",
        "extended_pan_id": info.extended_pan_id,
        "nwk_update_id": info.nwk_update_id,
        "security_level": info.security_level,
        "channel": info.channel,
        "channel_mask": list(info.channel_mask or (info.channel,)),
        "network_key": {
            "key": info.network_key.hex(),
            "sequence_number": info.key_sequence,
            "frame_counter": info.frame_counter,
        },
        "devices": [_device_json(d) for d in sorted(info.devices, key=lambda d: d.ieee)],
    }
    if info.tclk_seed is not None:
        doc["stack_specific"] = {"zstack": {"tclk_seed": info.tclk_seed.hex()}}
    return doc


def _device_json(d: BackupDevice) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ieee_address": d.ieee,
        "nwk_address": None if d.nwk is None else f"{d.nwk:04x}",
        "is_child": d.is_child,
    }
    if d.link_key is not None:
        out["link_key"] = {
            "key": d.link_key.key.hex(),
            "tx_counter": d.link_key.tx_counter,
            "rx_counter": d.link_key.rx_counter,
        }
    return out


def _link_key(doc: Any) -> LinkKey | None:
    if doc is None:
        return None
    return LinkKey(
        key=bytes.fromhex(_hex(doc["key"], 32, "link_key.key", secret=True)),
        tx_counter=_u32(doc.get("tx_counter", 0), "link_key.tx_counter"),
        rx_counter=_u32(doc.get("rx_counter", 0), "link_key.rx_counter"),
    )


def _u32(value: Any, what: str) -> int:
    v = int(value)
    if not 0 <= v <= 0xFFFFFFFF:
        raise NeedsHumanError(f"backup: {what} {v} is not a 32-bit counter")
    return v


def _check_meta(meta: Any) -> None:
    if meta.get("format") != FORMAT or int(meta.get("version", 0)) != 1:
        raise NeedsHumanError(
            f"not an open coordinator backup v1 (format {meta.get('format')!r}, "
            f"version {meta.get('version')!r})"
        )


def _channel(channel: int) -> int:
    if not 11 <= channel <= 26:
        raise NeedsHumanError(f"backup: channel {channel} is not 11-26")
    return channel


def from_open_coordinator(doc: Any) -> NetworkInfo:
    """Validate and read a backup written by us, zigpy (ZHA) or zigbee2mqtt."""
    try:
        _check_meta(doc["metadata"])
        key = doc["network_key"]
        pan = doc["pan_id"]
        pan_id = int(_hex(pan, 4, "pan_id"), 16) if isinstance(pan, str) else int(pan)
        devices = tuple(
            BackupDevice(
                ieee=_hex(d["ieee_address"], 16, "ieee_address"),
                nwk=None if d.get("nwk_address") is None else int(str(d["nwk_address"]), 16),
                is_child=bool(d.get("is_child", False)),
                link_key=_link_key(d.get("link_key")),
            )
            for d in doc.get("devices", [])
        )
        seed = (doc.get("stack_specific") or {}).get("zstack", {}).get("tclk_seed")
        channel = _channel(int(doc["channel"]))
        return NetworkInfo(
            coordinator_ieee=_hex(doc["coordinator_ieee"], 16, "coordinator_ieee"),
            pan_id=pan_id,
            extended_pan_id=_hex(doc["extended_pan_id"], 16, "extended_pan_id"),
            channel=channel,
            network_key=bytes.fromhex(_hex(key["key"], 32, "network_key.key", secret=True)),
            key_sequence=int(key.get("sequence_number", 0)),
            frame_counter=int(key.get("frame_counter", 0)),
            nwk_update_id=int(doc.get("nwk_update_id", 0)),
            security_level=int(doc.get("security_level", 5)),
            channel_mask=tuple(int(c) for c in doc.get("channel_mask", [channel])),
            devices=devices,
            tclk_seed=bytes.fromhex(_hex(seed, 32, "tclk_seed", secret=True)) if seed else None,
        )
    except NeedsHumanError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NeedsHumanError(
            f"backup file is not a valid open coordinator backup: {exc!r}"
        ) from None
