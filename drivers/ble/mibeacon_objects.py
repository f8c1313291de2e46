"""MiBeacon object decoders, one :data:`OBJECTS` entry per object id.

The table is declarative and long on purpose (one line per object id, as the MiBeacon
Object Definition lists them); the decoders it names are the readings here and the events
in :mod:`drivers.ble.mibeacon_events`. :data:`DISPATCH` is the same table keyed by
``object id << 8 | data length`` so the frame walk finds a decoder (and checks the length)
with one dict lookup.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

from drivers.ble import mibeacon_events as ev
from drivers.ble.mibeacon_events import Decoder
from drivers.ble.types import Value


@dataclass(frozen=True, slots=True)
class ObjDef:
    oid: int
    name: str
    #: Accepted data lengths; an object with another length is skipped (and noted).
    lengths: frozenset[int]
    decode: Decoder


def _u(data: bytes) -> int:
    return int.from_bytes(data, "little")


def _s(data: bytes) -> int:
    return int.from_bytes(data, "little", signed=True)


def _f32(data: bytes) -> float:
    """A float32 as sent, shown with float32's 7 significant digits (23.8, not 23.7999992)."""
    value: float = struct.unpack("<f", data)[0]
    if not math.isfinite(value):
        return value
    return float(f"{value:.7g}")


def _set(name: str, conv: Callable[[bytes], Value]) -> Decoder:
    def decode(data: bytes, values: dict[str, Value], model: str) -> None:
        value = conv(data)
        if isinstance(value, float) and not math.isfinite(value):
            return  # a NaN/inf float32 is "no value", never a reading
        values[name] = value

    return decode


def _scaled(name: str, divisor: int, signed: bool = False) -> Decoder:
    """An integer divided by a power of ten. IEEE division is correctly rounded, so the
    result is exactly the float of the decimal value (27.2, not 27.200000000000003)."""

    def decode(data: bytes, values: dict[str, Value], model: str) -> None:
        values[name] = int.from_bytes(data, "little", signed=signed) / divisor

    return decode


def _flag(name: str, *, invert: bool = False) -> Decoder:
    def decode(data: bytes, values: dict[str, Value], model: str) -> None:
        values[name] = (data[0] > 0) != invert

    return decode


# --- measurement objects ---------------------------------------------------------------------


_TEMP_HUM = struct.Struct("<hH").unpack


def _temp_hum(data: bytes, values: dict[str, Value], model: str) -> None:
    temp, hum = _TEMP_HUM(data)
    values["temperature"] = temp / 10  # exact: see _scaled
    values["humidity"] = hum / 10


def _power_temp(data: bytes, values: dict[str, Value], model: str) -> None:
    values["switch"] = data[0] > 0
    values["temperature"] = float(data[1])


#: 0x000F carries a light flag, not lux, on these models (1/100 or 0/256 for dark/light).
_LIGHT_FLAG_MODELS = frozenset({"MJYD02YL", "RTCGQ02LM"})
#: 0x1007 is a light flag (100 = light) on these models.
_LIGHT_FLAG_1007 = frozenset({"MJYD02YL", "MCCGQ02HL"})


def _motion_light(data: bytes, values: dict[str, Value], model: str) -> None:
    value = _u(data)
    values["motion"] = True
    if model in _LIGHT_FLAG_MODELS:
        values["light"] = value >= 100
    else:
        values["illuminance"] = float(value)


def _illuminance(data: bytes, values: dict[str, Value], model: str) -> None:
    value = _u(data)
    if model in _LIGHT_FLAG_1007:
        values["light"] = value == 100
    else:
        values["illuminance"] = float(value)


def _no_motion_time(data: bytes, values: dict[str, Value], model: str) -> None:
    seconds = _u(data)
    values["no_motion_time"] = float(seconds)
    # The Mi Home rule: a no-motion time of up to 30 s still counts as motion.
    values["motion"] = seconds <= 30


def _no_motion_timeout(data: bytes, values: dict[str, Value], model: str) -> None:
    values["motion"] = False


def _door_sensor(data: bytes, values: dict[str, Value], model: str) -> None:
    """0x1019: 0 open, 1 closed, 2 not closed after a timeout, 3 device reset."""
    state = data[0]
    if state == 0:
        values["opening"] = True
    elif state == 1:
        values["opening"] = False
        values["door_left_open"] = False
    elif state == 2:
        values["opening"] = True
        values["door_left_open"] = True


def _opening_miot(data: bytes, values: dict[str, Value], model: str) -> None:
    """0x4804 / 0x4A12: 1 open, 2 closed."""
    if data[0] == 1:
        values["opening"] = True
    elif data[0] == 2:
        values["opening"] = False
        values["door_left_open"] = False
        values["device_forcibly_removed"] = False


def _opening_480c(data: bytes, values: dict[str, Value], model: str) -> None:
    if data[0] in (0, 1):
        values["opening"] = data[0] == 0


def _forcibly_removed(data: bytes, values: dict[str, Value], model: str) -> None:
    if data[0] == 1:
        values["opening"] = True
        values["device_forcibly_removed"] = True


def _door_left_open(data: bytes, values: dict[str, Value], model: str) -> None:
    if data[0] == 1:
        values["opening"] = True
        values["door_left_open"] = True


#: SJWS02LM (flood sensor 2) has two probes: ``water_leak`` is the bottom (submersion)
#: probe, as on every leak sensor, ``water_leak_2`` the top (splash) probe.
_LEAK_TOP = "water_leak_2"


def _leak_top(data: bytes, values: dict[str, Value], model: str) -> None:
    """0x487B: top splash probe state (SJWS02LM)."""
    if model == "SJWS02LM":
        values[_LEAK_TOP] = data[0] > 0


def _leak_event(data: bytes, values: dict[str, Value], model: str) -> None:
    """0x4A68 (SJWS02LM): 0 bottom wet, 1 bottom dry, 2 top wet, 3 top dry. The device
    does not always send its 0x4806/0x487B state with it, so the event sets the state."""
    if model == "SJWS02LM" and data[0] <= 3:
        values["water_leak" if data[0] < 2 else _LEAK_TOP] = data[0] in (0, 2)


def _motion_illuminance(data: bytes, values: dict[str, Value], model: str) -> None:
    values["motion"] = True
    lux = _f32(data)
    if math.isfinite(lux):
        values["illuminance"] = lux


def _occupancy(data: bytes, values: dict[str, Value], model: str) -> None:
    values["occupancy"] = data[0] == 1 if model == "XMOSB01XS" else data[0] > 0


def _body_temperature_2000(data: bytes, values: dict[str, Value], model: str) -> None:
    """MMC-T201-1: the vendor's empirical formula over two thermistor readings."""
    t1, t2, batt = struct.unpack("<hhB", data)
    body = (
        3.71934e-11 * math.exp(0.69314 * t1 / 100)
        - 1.02801e-8 * math.exp(0.53871 * t2 / 100)
        + 36.413
    )
    values["temperature"] = body
    values["battery"] = float(batt)


def _body_temperature(data: bytes, values: dict[str, Value], model: str) -> None:
    raw = _s(data)
    if raw:
        values["temperature"] = round(raw / 100, 2)


def _toothbrush(data: bytes, values: dict[str, Value], model: str) -> None:
    on = data[0] == 0
    values["toothbrush"] = on
    if len(data) > 1:
        values["counter" if on else "score"] = data[1]


def _toothbrush_vendor(data: bytes, values: dict[str, Value], model: str) -> None:
    if data[0] in (0, 1):
        values["toothbrush"] = data[0] == 0
    if len(data) == 6:
        values["score"] = data[5]


#: 0x0007 door event -> values it sets.
_DOOR_EVENTS: dict[int, dict[str, Value]] = {
    0: {"door": True, "door_stuck": False, "knock_on_the_door": False},
    1: {"door": False, "door_left_open": False, "pry_the_door": False},
    2: {"door": True, "door_left_open": True},
    3: {"door": False, "knock_on_the_door": True},
    4: {"door": True, "pry_the_door": True},
    5: {"door": False, "door_stuck": True},
}


def _door_event(data: bytes, values: dict[str, Value], model: str) -> None:
    values.update(_DOOR_EVENTS.get(data[0], {}))


def _lock_attribute(data: bytes, values: dict[str, Value], model: str) -> None:
    values["lock"] = (data[0] & 0x01) == 0
    values["childlock"] = ((data[0] >> 3) & 0x01) == 0


def _charging_state(data: bytes, values: dict[str, Value], model: str) -> None:
    values["charging_state"] = {0: "charging", 1: "not_charging", 2: "full"}.get(data[0], "unknown")


def _scale_s200(data: bytes, values: dict[str, Value], model: str) -> None:
    """0x4E16 (S200): profile id u8, mass u32 (/100 kg), timestamp u32.

    The S200 sends a timestamped record of a finished weighing, so a mass in it is a
    stabilized one; a record with mass 0 is none (xiaomi-ble ignores it).
    """
    profile, mass, _ts = struct.unpack("<BII", data)
    values["profile_id"] = profile
    values["stabilized"] = mass > 0
    if mass:
        values["mass"] = round(mass / 100, 2)


def _scale_s400(data: bytes, values: dict[str, Value], model: str) -> None:
    """0x6E16 (S400): profile id u8, u32 bit field mass:11 heart_rate:7 impedance:14, ts u32."""
    profile, bits, _ts = struct.unpack("<BII", data)
    mass = bits & 0x7FF
    heart = (bits >> 11) & 0x7F
    impedance = bits >> 18
    if mass == 0x7FF:
        mass = 0
    values["profile_id"] = profile
    if mass == heart == impedance == 0:
        values["stabilized"] = False
        return
    if mass:
        values["mass"] = round(mass / 10, 1)
    if 0 < heart < 127:
        values["heart_rate"] = heart + 50
    if mass == 0 and heart == 0:
        values["impedance_high"] = round(impedance / 10, 1)
        values["stabilized"] = True
    elif impedance:
        values["impedance_low"] = round(impedance / 10, 1)
        values["stabilized"] = False
    else:
        values["stabilized"] = True


def _ignore(data: bytes, values: dict[str, Value], model: str) -> None:
    """Parsed (length checked) but carries no measurement (reset, mode ...)."""


def _r(lo: int, hi: int) -> frozenset[int]:
    return frozenset(range(lo, hi + 1))


def _one(n: int) -> frozenset[int]:
    return frozenset({n})


_ANY = _r(0, 255)

#: Every MiBeacon object id decoded here (docs/ble.md section 2).
OBJECTS: dict[int, ObjDef] = {
    o.oid: o
    for o in (
        ObjDef(0x0003, "motion event", _ANY, ev.motion_event),
        ObjDef(0x0006, "fingerprint", _one(5), ev.fingerprint),
        ObjDef(0x0007, "door event", _r(1, 5), _door_event),
        ObjDef(0x0008, "armed", _r(1, 5), ev.armed),
        ObjDef(0x000A, "body temperature", _one(2), _body_temperature),
        ObjDef(0x000B, "lock event", _one(9), ev.lock),
        ObjDef(0x000F, "motion with light", _one(3), _motion_light),
        ObjDef(0x0010, "toothbrush", _r(1, 2), _toothbrush),
        ObjDef(0x1001, "button", _one(3), ev.button_1001),
        ObjDef(0x1004, "temperature", _one(2), _scaled("temperature", 10, signed=True)),
        ObjDef(0x1005, "power and temperature", _one(2), _power_temp),
        ObjDef(0x1006, "humidity", _one(2), _scaled("humidity", 10)),
        ObjDef(0x1007, "illuminance", _one(3), _illuminance),
        ObjDef(0x1008, "moisture", _one(1), _set("moisture", lambda d: float(d[0]))),
        ObjDef(0x1009, "conductivity", _one(2), _set("conductivity", lambda d: float(_u(d)))),
        ObjDef(0x100A, "battery", _r(1, 2), _set("battery", lambda d: float(d[0]))),
        ObjDef(0x100D, "temperature and humidity", _one(4), _temp_hum),
        ObjDef(0x100E, "lock attribute", _one(1), _lock_attribute),
        ObjDef(0x100F, "door state", _one(1), _set("door", lambda d: d[0] == 1)),
        ObjDef(0x1010, "formaldehyde", _one(2), _scaled("formaldehyde", 100)),
        ObjDef(0x1012, "switch", _one(1), _flag("switch")),
        ObjDef(0x1013, "consumable", _one(1), _set("consumable", lambda d: d[0])),
        ObjDef(0x1014, "water leak", _one(1), _flag("water_leak")),
        ObjDef(0x1015, "smoke", _one(1), _flag("smoke")),
        ObjDef(0x1017, "no-motion time", _one(4), _no_motion_time),
        ObjDef(0x1018, "light", _one(1), _flag("light")),
        ObjDef(0x1019, "door sensor", _one(1), _door_sensor),
        ObjDef(0x101B, "no-motion timeout", _r(1, 4), _no_motion_timeout),
        ObjDef(0x2000, "body temperature (MMC-T201-1)", _one(5), _body_temperature_2000),
        ObjDef(0x3003, "toothbrush (vendor)", _r(5, 6), _toothbrush_vendor),
        ObjDef(0x4801, "temperature (float)", _one(4), _set("temperature", _f32)),
        ObjDef(0x4802, "humidity", _one(1), _set("humidity", lambda d: float(d[0]))),
        ObjDef(0x4803, "battery", _one(1), _set("battery", lambda d: float(d[0]))),
        ObjDef(0x4804, "opening state", _one(1), _opening_miot),
        ObjDef(0x4805, "illuminance (float)", _one(4), _set("illuminance", _f32)),
        ObjDef(0x4806, "water leak", _one(1), _flag("water_leak")),
        ObjDef(0x487B, "water leak, top probe", _one(1), _leak_top),
        ObjDef(0x4808, "humidity (float)", _one(4), _set("humidity", _f32)),
        ObjDef(0x480C, "opening", _one(1), _opening_480c),
        ObjDef(0x4818, "no-motion time", _one(2), _no_motion_time),
        ObjDef(0x483C, "pressure present", _one(1), _occupancy),
        ObjDef(0x483D, "pressure present duration", _one(4), _set("pressure_present_duration", _u)),
        ObjDef(
            0x483E,
            "pressure not present duration",
            _one(4),
            _set("pressure_not_present_duration", _u),
        ),
        ObjDef(0x484E, "occupancy", _one(1), _occupancy),
        ObjDef(0x4851, "duration detected (min)", _one(1), _set("duration_detected", _u)),
        ObjDef(0x4852, "duration cleared (min)", _one(1), _set("duration_cleared", _u)),
        ObjDef(0x4A01, "low battery", _one(1), _flag("battery_low")),
        ObjDef(0x4A08, "motion with illuminance", _one(4), _motion_illuminance),
        ObjDef(0x4A0C, "single press", _r(0, 1), ev.miot_button("single")),
        ObjDef(0x4A0D, "double press", _r(0, 1), ev.miot_button("double")),
        ObjDef(0x4A0E, "long press", _r(0, 1), ev.miot_button("long")),
        ObjDef(0x4A0F, "device forcibly removed", _one(1), _forcibly_removed),
        ObjDef(0x4A12, "opening event", _one(1), _opening_miot),
        ObjDef(0x4A13, "button", _one(1), ev.button_4a13),
        ObjDef(0x4A1A, "door left open", _one(1), _door_left_open),
        ObjDef(0x4A68, "water leak event", _one(1), _leak_event),
        ObjDef(0x4C01, "temperature (float)", _one(4), _set("temperature", _f32)),
        ObjDef(0x4C02, "humidity", _one(1), _set("humidity", lambda d: float(d[0]))),
        ObjDef(0x4C03, "battery", _one(1), _set("battery", lambda d: float(d[0]))),
        ObjDef(0x4C08, "humidity (float)", _one(4), _set("humidity", _f32)),
        ObjDef(0x4C14, "mode", _one(1), _set("mode", _u)),
        ObjDef(0x4E01, "low battery", _one(1), _flag("battery_low")),
        ObjDef(0x4E0C, "single press", _r(0, 1), ev.miot_button("single", ev.BUTTONS_4E0X)),
        ObjDef(0x4E0D, "double press", _r(0, 1), ev.miot_button("double", ev.BUTTONS_4E0X)),
        ObjDef(0x4E0E, "long press", _r(0, 1), ev.miot_button("long", ev.BUTTONS_4E0X)),
        ObjDef(0x4E16, "scale (S200)", _one(9), _scale_s200),
        ObjDef(0x4E1C, "device reset", _ANY, _ignore),
        ObjDef(0x5003, "battery", _one(1), _set("battery", lambda d: float(d[0]))),
        ObjDef(0x5413, "occupancy close range", _one(1), _flag("occupancy_close_range")),
        ObjDef(0x5414, "mode", _one(1), _set("mode", _u)),
        ObjDef(0x5422, "charging state", _one(1), _charging_state),
        ObjDef(0x560C, "single press", _r(0, 1), ev.miot_button("single", ev.BUTTONS_560X)),
        ObjDef(0x560D, "double press", _r(0, 1), ev.miot_button("double", ev.BUTTONS_560X)),
        ObjDef(0x560E, "long press", _r(0, 1), ev.miot_button("long", ev.BUTTONS_560X)),
        ObjDef(0x5810, "sleep", _one(1), _flag("asleep", invert=True)),
        ObjDef(0x6461, "wearing", _one(1), _flag("wearing", invert=True)),
        ObjDef(0x6E16, "scale (S400)", _one(9), _scale_s400),
    )
}


#: (object id << 8 | data length) -> decoder: the walk's one lookup per object.
DISPATCH: dict[int, Decoder] = {
    oid << 8 | n: obj.decode for oid, obj in OBJECTS.items() for n in obj.lengths
}

#: The object header as sent (id LE u16, length u8) -> decoder: the same table as
#: :data:`DISPATCH`, looked up with one slice of the plaintext (the single-object fast path).
BY_HEADER: dict[bytes, Decoder] = {
    bytes((key >> 8 & 0xFF, key >> 16, key & 0xFF)): decoder for key, decoder in DISPATCH.items()
}
