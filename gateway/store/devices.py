"""The ``devices`` table: upsert of partial updates, row mapping."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gateway.model import Device, DeviceStatus, DeviceUpdate, Transport

DEVICE_COLS = (
    "id, transport, model, name, manufacturer, last_seen, battery, rssi, lqi, status, sleepy, attrs"
)

UPSERT_DEVICE = """
INSERT INTO devices (id, transport, model, name, manufacturer, rssi, lqi, status, sleepy, attrs)
VALUES (:id, :transport, coalesce(:model, ''), coalesce(:name, ''), coalesce(:manufacturer, ''),
        :rssi, :lqi, coalesce(:status, 'unknown'), coalesce(:sleepy, 0), coalesce(:attrs, '{}'))
ON CONFLICT (id) DO UPDATE SET
    model = coalesce(:model, model),
    name = coalesce(:name, name),
    manufacturer = coalesce(:manufacturer, manufacturer),
    rssi = coalesce(:rssi, rssi),
    lqi = coalesce(:lqi, lqi),
    status = coalesce(:status, status),
    sleepy = coalesce(:sleepy, sleepy),
    attrs = coalesce(:attrs, attrs)
"""

SEEN = (
    "UPDATE devices SET last_seen = max(coalesce(last_seen, 0), ?),"
    " first_seen = coalesce(first_seen, ?) WHERE id = ?"
)

BATTERY = "UPDATE devices SET battery = ? WHERE id = ?"


def device_params(u: DeviceUpdate) -> dict[str, Any]:
    return {
        "id": u.id,
        "transport": u.transport.value,
        "model": u.model,
        "name": u.name,
        "manufacturer": u.manufacturer,
        "rssi": u.rssi,
        "lqi": u.lqi,
        "status": u.status.value if u.status is not None else None,
        "sleepy": None if u.sleepy is None else int(u.sleepy),
        "attrs": None if u.attrs is None else json.dumps(u.attrs, sort_keys=True),
    }


def device_from_row(r: Sequence[Any]) -> Device:
    try:
        attrs = json.loads(r[11])
    except (TypeError, ValueError):
        attrs = {}
    return Device(
        id=r[0],
        transport=Transport(r[1]),
        model=r[2],
        name=r[3],
        manufacturer=r[4],
        last_seen=r[5],
        battery=r[6],
        rssi=r[7],
        lqi=r[8],
        status=DeviceStatus(r[9])
        if r[9] in DeviceStatus.__members__.values()
        else DeviceStatus.UNKNOWN,
        sleepy=bool(r[10]),
        attrs={str(k): str(v) for k, v in attrs.items()} if isinstance(attrs, dict) else {},
    )


def merge(old: DeviceUpdate, new: DeviceUpdate) -> DeviceUpdate:
    """Two partial updates of one device as one (``new`` wins where it says something)."""

    def pick(a: Any, b: Any) -> Any:
        return b if b is not None else a

    attrs = old.attrs
    if new.attrs is not None:
        attrs = {**(old.attrs or {}), **new.attrs}
    return DeviceUpdate(
        id=new.id,
        transport=new.transport,
        model=pick(old.model, new.model),
        name=pick(old.name, new.name),
        manufacturer=pick(old.manufacturer, new.manufacturer),
        rssi=pick(old.rssi, new.rssi),
        lqi=pick(old.lqi, new.lqi),
        status=pick(old.status, new.status),
        sleepy=pick(old.sleepy, new.sleepy),
        attrs=attrs,
    )
