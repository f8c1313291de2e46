"""The JSON shapes of the API, shared by the server and the CLI's read-only fallback."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.config import BleSection
from gateway.model import Device, DeviceStatus, Event, Reading, Transport, Value
from gateway.store import OutboxRow, OutboxStats

#: A device silent for longer than this (and not sleepy) is listed as stale by ``?stale=``.
DEFAULT_STALE_S = 3600.0


def keyed_devices(ble: BleSection) -> frozenset[str]:
    """Device ids (``ble-<mac>``) that have a bind key in the config (keys never leave)."""
    macs = [*ble.keys, *ble.key_files]
    return frozenset("ble-" + re.sub(r"[^0-9a-f]", "", mac.lower()) for mac in macs)


def key_status(device: Device, keyed: frozenset[str] = frozenset()) -> str:
    """``needs_key``/``key_invalid`` as the driver reports; ``ok`` for a BLE device that
    decrypts with a configured key (or says it is encrypted); ``none`` otherwise."""
    if device.status is DeviceStatus.NEEDS_KEY:
        return "needs_key"
    if device.status is DeviceStatus.KEY_INVALID:
        return "key_invalid"
    if device.transport is Transport.BLE and (
        device.id in keyed or device.attrs.get("encrypted") in ("true", "1")
    ):
        return "ok"
    return "none"


def is_stale(device: Device, now: float, stale_s: float = DEFAULT_STALE_S) -> bool:
    if device.status is DeviceStatus.UNAVAILABLE:
        return True
    if device.sleepy:
        return False
    return device.last_seen is None or now - device.last_seen > stale_s


def device_json(
    device: Device, now: float | None = None, keyed: frozenset[str] = frozenset()
) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {
        "id": device.id,
        "name": device.name,
        "room": device.room,
        "transport": device.transport.value,
        "model": device.model,
        "manufacturer": device.manufacturer,
        "status": device.status.value,
        "key_status": key_status(device, keyed),
        "last_seen": device.last_seen,
        "last_seen_age_s": None
        if device.last_seen is None
        else round(max(0.0, now - device.last_seen), 3),
        "battery": device.battery,
        "rssi": device.rssi,
        "lqi": device.lqi,
        "sleepy": device.sleepy,
        "stale": is_stale(device, now),
        "attrs": dict(device.attrs),
    }


def state_json(state: Mapping[str, tuple[Value, str | None, float, int]]) -> dict[str, Any]:
    return {
        metric: {"value": value, "unit": unit, "ts": ts, "seq": seq}
        for metric, (value, unit, ts, seq) in state.items()
    }


def device_detail_json(
    device: Device,
    state: Mapping[str, tuple[Value, str | None, float, int]],
    now: float | None = None,
    keyed: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    out = device_json(device, now, keyed)
    out["state"] = state_json(state)
    # the radio figures as last reported, from the state when the device row lacks them
    if out["rssi"] is None and "rssi" in state:
        out["rssi"] = state["rssi"][0]
    if out["lqi"] is None and "linkquality" in state:
        out["lqi"] = state["linkquality"][0]
    if out["battery"] is None and "battery" in state:
        out["battery"] = state["battery"][0]
    return out


def reading_json(r: Reading) -> dict[str, Any]:
    """A stored reading: its ``seq``, device, what it says, when and from where."""
    return {
        "type": "reading",
        "seq": r.seq,
        "device": r.device_id,
        "metric": r.metric,
        "value": r.value,
        "unit": r.unit,
        "ts": r.stamp.wall,
        "source": r.source,
    }


def event_json(e: Event) -> dict[str, Any]:
    """A stored event, as :func:`reading_json` shows a reading."""
    return stored_event_json(
        e.device_id, e.seq, e.event, e.action, e.button, e.stamp.wall, e.source
    )


def stored_event_json(
    device_id: str, seq: int, event: str, action: str, button: int | None, ts: float, source: str
) -> dict[str, Any]:
    """:func:`event_json` of an event kept as its fields (the API's recent events)."""
    return {
        "type": "event",
        "seq": seq,
        "device": device_id,
        "event": event,
        "action": action,
        "button": button,
        "ts": ts,
        "source": source,
    }


def devices_summary_json(devices: Sequence[Device], now: float) -> dict[str, Any]:
    """How many devices, how many of them stale, how many in each status."""
    by_status = Counter(d.status.value for d in devices)
    return {
        "total": len(devices),
        "stale": sum(is_stale(d, now) for d in devices),
        "by_status": dict(sorted(by_status.items())),
    }


def disk_json(path: Path) -> dict[str, Any]:
    """Free and total bytes of the file system holding ``path`` (blocking: a statvfs)."""
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:
        return {"path": str(path), "error": exc.strerror or str(exc)}
    return {"path": str(path), "free_bytes": usage.free, "total_bytes": usage.total}


def outbox_row_json(row: OutboxRow) -> dict[str, Any]:
    try:
        body: Any = json.loads(row.body)
    except ValueError:
        body = row.body
    return {
        "seq": row.seq,
        "kind": "event" if row.kind == 1 else "reading",
        "device": row.device_id,
        "ts": row.ts,
        "clock_synced": row.synced,
        "body": body,
    }


def outbox_json(
    stats: OutboxStats,
    oldest: OutboxRow | None,
    sync: Mapping[str, Any] | None,
    now: float | None = None,
) -> dict[str, Any]:
    """Store figures, overlaid by the sync agent's own (connection state, drops, expiry)."""
    now = time.time() if now is None else now
    out: dict[str, Any] = {
        "depth": stats.depth,
        "bytes": stats.bytes,
        "events": stats.events,
        "oldest_seq": stats.oldest_seq,
        "oldest_ts": stats.oldest_ts,
        "oldest_age_s": None
        if stats.oldest_ts is None
        else round(max(0.0, now - stats.oldest_ts), 3),
        "dropped": None,
        "expired": None,
        "upstream": "disabled",
        "source": "store",
    }
    if sync is not None:
        out["source"] = "sync"
        for key in ("depth", "bytes", "oldest_age_s", "dropped", "expired", "dead_letters"):
            value = sync.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = value
        state = next(
            (sync[k] for k in ("connection", "state", "connection_state", "upstream") if k in sync),
            "unknown",
        )
        out["upstream"] = str(state)
        out["sync"] = {str(k): _plain(v) for k, v in sync.items()}
    out["uplink"] = stats.uplink
    out["oldest"] = outbox_row_json(oldest) if oldest is not None else None
    return out


def _plain(value: Any) -> Any:
    """JSON-safe copy of a stats value (enums and other objects become strings)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)
