"""JSON forms of adverts and outcomes (``migw decode ble``, replay files). Pure.

Input line: ``{"mac": "A4:C1:38:..", "service_data": {"<uuid>": "<hex>"}, "rssi": -60,
"local_name": "..."}`` (UUIDs as ``fe95``, ``0xFE95`` or 128-bit; optional
``manufacturer_data`` ``{"<company id>": "<hex>"}`` and ``time``).
Output: ``{"mac", "format", "model", "values", "events"}`` or ``{"mac", "error"}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from drivers.ble.errors import MalformedError
from drivers.ble.types import (
    Advertisement,
    Decoded,
    Failed,
    Outcome,
    normalize_mac,
    normalize_uuid,
)

K = TypeVar("K")


def _hex_map(
    obj: Mapping[str, Any], name: str, key_kind: str, key: Callable[[str], K], valid: str
) -> dict[K, bytes]:
    """``obj[name]``, an object of ``key_kind`` -> hex data, parsed; MalformedError names
    the field (and the entry) that is not ``valid``."""
    raw = obj.get(name, {})
    if not isinstance(raw, Mapping):
        raise MalformedError(f"{name} must be an object of {key_kind} -> hex")
    out: dict[K, bytes] = {}
    for k, hexdata in raw.items():
        try:
            out[key(str(k))] = bytes.fromhex(str(hexdata))
        except ValueError:
            raise MalformedError(f"{name}[{k!r}] is not {valid}") from None
    return out


def advertisement_from_json(obj: Any) -> Advertisement:
    """Build an Advertisement from one decoded JSON line; MalformedError names the field."""
    if not isinstance(obj, Mapping):
        raise MalformedError("an advert line must be a JSON object")
    mac_raw = obj.get("mac", obj.get("address"))
    mac = ""
    if mac_raw is not None:
        if not isinstance(mac_raw, str):
            raise MalformedError("mac must be a string")
        try:
            mac = normalize_mac(mac_raw)
        except ValueError:
            raise MalformedError(f"mac {mac_raw!r} is not a MAC address") from None
    service_data = _hex_map(obj, "service_data", "uuid", normalize_uuid, "a UUID with hex data")
    manufacturer = _hex_map(obj, "manufacturer_data", "company id", lambda c: int(c, 0), "valid")
    rssi = obj.get("rssi")
    if rssi is not None and (isinstance(rssi, bool) or not isinstance(rssi, int)):
        raise MalformedError("rssi must be an integer")
    name = obj.get("local_name")
    if name is not None and not isinstance(name, str):
        raise MalformedError("local_name must be a string")
    t = obj.get("time", 0.0)
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        raise MalformedError("time must be a number")
    return Advertisement(mac, rssi, service_data, manufacturer, name, float(t))


def advertisement_to_json(adv: Advertisement) -> dict[str, Any]:
    out: dict[str, Any] = {
        "mac": adv.address,
        "service_data": {u: d.hex() for u, d in adv.service_data.items()},
    }
    if adv.rssi is not None:
        out["rssi"] = adv.rssi
    if adv.local_name is not None:
        out["local_name"] = adv.local_name
    if adv.manufacturer_data:
        out["manufacturer_data"] = {str(k): v.hex() for k, v in adv.manufacturer_data.items()}
    return out


def outcome_to_json(outcome: Outcome, mac: str = "") -> dict[str, Any]:
    """The ``migw decode ble`` output object for one outcome."""
    if isinstance(outcome, Failed):
        return {"mac": outcome.mac or mac, "error": outcome.reason.value}
    assert isinstance(outcome, Decoded)
    return {
        "mac": outcome.mac or mac,
        "format": outcome.format.value,
        "model": outcome.model,
        "values": dict(outcome.values),
        "events": [e.as_dict() for e in outcome.events],
    }
