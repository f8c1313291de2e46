"""Other Xiaomi advert formats: Mi scales (0x181D, 0x181B) and HHCCJCY10 (0xFD50). Pure."""

from __future__ import annotations

import struct

from drivers.ble.errors import MalformedError
from drivers.ble.types import Decoded, Format, FrameKind, Value, uuid16

UUID_SCALE_V1 = uuid16(0x181D)
UUID_SCALE_V2 = uuid16(0x181B)
UUID_HHCCJCY10 = uuid16(0xFD50)

_LB_PER_100 = 0.0045359237  # lb x100 -> kg
_CATTY_PER_100 = 0.005  # catty x100 -> kg


def _mass(raw: int, pounds: bool, catty: bool) -> float:
    if pounds:
        return round(raw * _LB_PER_100, 3)
    if catty:
        return round(raw * _CATTY_PER_100, 3)
    return round(raw / 200, 3)


def _scale_kind(fmt: Format, model: str, name: str, uuid: str) -> FrameKind:
    return FrameKind(fmt, model, name, manufacturer="Xiaomi", sleepy=True, uuid=uuid)


_SCALE_V1 = _scale_kind(
    Format.XIAOMI_SCALE_V1, "XMTZC01HM/XMTZC04HM", "Mi Smart Scale", UUID_SCALE_V1
)
_SCALE_V2 = _scale_kind(
    Format.XIAOMI_SCALE_V2,
    "XMTZC02HM/XMTZC05HM/NUN4049CN",
    "Mi Body Composition Scale",
    UUID_SCALE_V2,
)


def decode_scale_v1(data: bytes, mac: str) -> Decoded:
    """Mi Smart Scale: control byte, mass u16 LE, date/time (7 bytes)."""
    if len(data) != 10:
        raise MalformedError(f"Mi scale v1 data of {len(data)} bytes (expected 10)")
    ctrl = data[0]
    mass = _mass(int.from_bytes(data[1:3], "little"), bool(ctrl & 0x01), bool(ctrl & 0x10))
    stabilized = bool(ctrl & 0x20) and not ctrl & 0x80 and mass > 0
    values: dict[str, Value] = {"mass_non_stabilized": mass, "stabilized": stabilized}
    if stabilized:
        values["mass"] = mass
    return Decoded(mac, _SCALE_V1, values, payload=data)


def decode_scale_v2(data: bytes, mac: str) -> Decoded:
    """Mi Body Composition Scale: control (2), date/time (7), impedance u16, mass u16."""
    if len(data) != 13:
        raise MalformedError(f"Mi scale v2 data of {len(data)} bytes (expected 13)")
    c0, c1 = data[0], data[1]
    impedance, raw = struct.unpack("<HH", data[9:13])
    mass = _mass(raw, bool(c0 & 0x01), bool(c1 & 0x40))
    stabilized = bool(c1 & 0x20) and not c1 & 0x80 and mass > 0
    values: dict[str, Value] = {"mass_non_stabilized": mass, "stabilized": stabilized}
    if stabilized:
        values["mass"] = mass
        if c1 & 0x02:
            values["impedance"] = float(impedance)
    return Decoded(mac, _SCALE_V2, values, payload=data)


def decode_hhccjcy10(data: bytes, mac: str) -> Decoded:
    """HHCCJCY10 (pink plant sensor): moisture u8, temp u16 BE x0.1, lux u24 BE, batt, cond BE."""
    if len(data) != 9:
        raise MalformedError(f"HHCCJCY10 data of {len(data)} bytes (expected 9)")
    moist, temp = struct.unpack(">BH", data[0:3])
    lux = int.from_bytes(data[3:6], "big")
    batt, cond = struct.unpack(">BH", data[6:9])
    values: dict[str, Value] = {
        "temperature": round(temp / 10, 1),
        "moisture": float(moist),
        "illuminance": float(lux),
        "battery": float(batt),
        "conductivity": float(cond),
    }
    return Decoded(mac, _HHCC, values, payload=data)


_HHCC = FrameKind(
    Format.HHCCJCY10,
    "HHCCJCY10",
    "Plant Sensor",
    manufacturer="HHCC Plant Technology Co. Ltd",
    uuid=UUID_HHCCJCY10,
)
