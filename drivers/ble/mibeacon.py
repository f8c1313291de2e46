"""Xiaomi MiBeacon (service data UUID 0xFE95), versions 2-5: pure codec.

Frame layout, frame-control bits, nonces and object ids: docs/ble.md and the MiBeacon v5
protocol and Object Definition documents. Object decoders are declared in :data:`OBJECTS`
(one entry per object id); model-specific readings of an object (buttons, light flags)
live in the small tables next to them.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from drivers.ble import crypto
from drivers.ble.errors import (
    BleParseError,
    KeyInvalidError,
    MalformedError,
    NoKeyError,
    UnsupportedError,
)
from drivers.ble.keys import LEGACY_KEY_FOR_V45, LONG_KEY_FOR_LEGACY, BindKey
from drivers.ble.products import Product, product
from drivers.ble.types import (
    UUID_MIBEACON,
    BleEvent,
    Decoded,
    Format,
    FrameKind,
    Value,
    make_decoded,
)


class FrameControl(enum.IntFlag):
    """Frame-control bits (LE u16 at offset 0); the version is bits 12-15."""

    REQUEST_TIMING = 0x0001  # v4 name; reserved in v5
    ENCRYPTED = 0x0008
    MAC_INCLUDED = 0x0010
    CAPABILITY_INCLUDED = 0x0020
    OBJECT_INCLUDED = 0x0040
    MESH = 0x0080
    REGISTERED = 0x0100
    SOLICITED = 0x0200


#: Capability byte bit 5: an I/O capability field follows (1 byte, as sent by real devices).
CAP_IO_INCLUDED = 0x20

# Plain ints for the hot path (IntFlag arithmetic is slow).
_ENCRYPTED = int(FrameControl.ENCRYPTED)
_MAC_INCLUDED = int(FrameControl.MAC_INCLUDED)
_CAPABILITY_INCLUDED = int(FrameControl.CAPABILITY_INCLUDED)
_OBJECT_INCLUDED = int(FrameControl.OBJECT_INCLUDED)
_MESH = int(FrameControl.MESH)


class _Ctx:
    """What object decoders write into (a plain slotted class: built once per frame)."""

    __slots__ = ("events", "model", "values")

    def __init__(self, model: str) -> None:
        self.model = model
        self.values: dict[str, Value] = {}
        self.events: list[BleEvent] = []

    def event(self, event: str, action: str, button: int | None = None, **props: int) -> None:
        self.events.append(BleEvent(event, action, button, tuple(props.items())))


Decoder = Callable[[bytes, _Ctx], None]


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
    def decode(data: bytes, ctx: _Ctx) -> None:
        value = conv(data)
        if isinstance(value, float) and not math.isfinite(value):
            return  # a NaN/inf float32 is "no value", never a reading
        ctx.values[name] = value

    return decode


def _scaled(name: str, divisor: int, signed: bool = False) -> Decoder:
    """An integer divided by a power of ten. IEEE division is correctly rounded, so the
    result is exactly the float of the decimal value (27.2, not 27.200000000000003)."""

    def decode(data: bytes, ctx: _Ctx) -> None:
        ctx.values[name] = int.from_bytes(data, "little", signed=signed) / divisor

    return decode


def _flag(name: str, *, invert: bool = False) -> Decoder:
    def decode(data: bytes, ctx: _Ctx) -> None:
        ctx.values[name] = (data[0] > 0) != invert

    return decode


# --- measurement objects ---------------------------------------------------------------------


_TEMP_HUM = struct.Struct("<hH").unpack


def _temp_hum(data: bytes, ctx: _Ctx) -> None:
    temp, hum = _TEMP_HUM(data)
    ctx.values["temperature"] = temp / 10  # exact: see _scaled
    ctx.values["humidity"] = hum / 10


def _power_temp(data: bytes, ctx: _Ctx) -> None:
    ctx.values["switch"] = data[0] > 0
    ctx.values["temperature"] = float(data[1])


#: 0x000F carries a light flag, not lux, on these models (1/100 or 0/256 for dark/light).
_LIGHT_FLAG_MODELS = frozenset({"MJYD02YL", "RTCGQ02LM"})
#: 0x1007 is a light flag (100 = light) on these models.
_LIGHT_FLAG_1007 = frozenset({"MJYD02YL", "MCCGQ02HL"})


def _motion_light(data: bytes, ctx: _Ctx) -> None:
    value = _u(data)
    ctx.values["motion"] = True
    if ctx.model in _LIGHT_FLAG_MODELS:
        ctx.values["light"] = value >= 100
    else:
        ctx.values["illuminance"] = float(value)


def _illuminance(data: bytes, ctx: _Ctx) -> None:
    value = _u(data)
    if ctx.model in _LIGHT_FLAG_1007:
        ctx.values["light"] = value == 100
    else:
        ctx.values["illuminance"] = float(value)


def _no_motion_time(data: bytes, ctx: _Ctx) -> None:
    seconds = _u(data)
    ctx.values["no_motion_time"] = float(seconds)
    # The Mi Home rule: a no-motion time of up to 30 s still counts as motion.
    ctx.values["motion"] = seconds <= 30


def _no_motion_timeout(data: bytes, ctx: _Ctx) -> None:
    ctx.values["motion"] = False


def _door_sensor(data: bytes, ctx: _Ctx) -> None:
    """0x1019: 0 open, 1 closed, 2 not closed after a timeout, 3 device reset."""
    state = data[0]
    if state == 0:
        ctx.values["opening"] = True
    elif state == 1:
        ctx.values["opening"] = False
        ctx.values["door_left_open"] = False
    elif state == 2:
        ctx.values["opening"] = True
        ctx.values["door_left_open"] = True


def _opening_miot(data: bytes, ctx: _Ctx) -> None:
    """0x4804 / 0x4A12: 1 open, 2 closed."""
    if data[0] == 1:
        ctx.values["opening"] = True
    elif data[0] == 2:
        ctx.values["opening"] = False
        ctx.values["door_left_open"] = False
        ctx.values["device_forcibly_removed"] = False


def _opening_480c(data: bytes, ctx: _Ctx) -> None:
    if data[0] in (0, 1):
        ctx.values["opening"] = data[0] == 0


def _forcibly_removed(data: bytes, ctx: _Ctx) -> None:
    if data[0] == 1:
        ctx.values["opening"] = True
        ctx.values["device_forcibly_removed"] = True


def _door_left_open(data: bytes, ctx: _Ctx) -> None:
    if data[0] == 1:
        ctx.values["opening"] = True
        ctx.values["door_left_open"] = True


#: SJWS02LM (flood sensor 2) has two probes: ``water_leak`` is the bottom (submersion)
#: probe, as on every leak sensor, ``water_leak_2`` the top (splash) probe.
_LEAK_TOP = "water_leak_2"


def _leak_top(data: bytes, ctx: _Ctx) -> None:
    """0x487B: top splash probe state (SJWS02LM)."""
    if ctx.model == "SJWS02LM":
        ctx.values[_LEAK_TOP] = data[0] > 0


def _leak_event(data: bytes, ctx: _Ctx) -> None:
    """0x4A68 (SJWS02LM): 0 bottom wet, 1 bottom dry, 2 top wet, 3 top dry. The device
    does not always send its 0x4806/0x487B state with it, so the event sets the state."""
    if ctx.model == "SJWS02LM" and data[0] <= 3:
        ctx.values["water_leak" if data[0] < 2 else _LEAK_TOP] = data[0] in (0, 2)


def _motion_illuminance(data: bytes, ctx: _Ctx) -> None:
    ctx.values["motion"] = True
    lux = _f32(data)
    if math.isfinite(lux):
        ctx.values["illuminance"] = lux


def _occupancy(data: bytes, ctx: _Ctx) -> None:
    ctx.values["occupancy"] = data[0] == 1 if ctx.model == "XMOSB01XS" else data[0] > 0


def _body_temperature_2000(data: bytes, ctx: _Ctx) -> None:
    """MMC-T201-1: the vendor's empirical formula over two thermistor readings."""
    t1, t2, batt = struct.unpack("<hhB", data)
    body = (
        3.71934e-11 * math.exp(0.69314 * t1 / 100)
        - 1.02801e-8 * math.exp(0.53871 * t2 / 100)
        + 36.413
    )
    ctx.values["temperature"] = body
    ctx.values["battery"] = float(batt)


def _body_temperature(data: bytes, ctx: _Ctx) -> None:
    raw = _s(data)
    if raw:
        ctx.values["temperature"] = round(raw / 100, 2)


def _toothbrush(data: bytes, ctx: _Ctx) -> None:
    on = data[0] == 0
    ctx.values["toothbrush"] = on
    if len(data) > 1:
        ctx.values["counter" if on else "score"] = data[1]


def _toothbrush_vendor(data: bytes, ctx: _Ctx) -> None:
    if data[0] in (0, 1):
        ctx.values["toothbrush"] = data[0] == 0
    if len(data) == 6:
        ctx.values["score"] = data[5]


_FINGERPRINT_RESULTS = {
    0: "match_successful",
    1: "match_failed",
    2: "timeout",
    3: "low_quality_too_light_fuzzy",
    4: "insufficient_area",
    5: "skin_is_too_dry",
    6: "skin_is_too_wet",
}


def _fingerprint(data: bytes, ctx: _Ctx) -> None:
    ctx.values["key_id"] = _u(data[0:4])
    ctx.values["fingerprint"] = data[4] == 0
    result = _FINGERPRINT_RESULTS.get(data[4])
    if result is not None:
        ctx.event("fingerprint", result)


#: 0x0007 door event -> values it sets.
_DOOR_EVENTS: dict[int, dict[str, Value]] = {
    0: {"door": True, "door_stuck": False, "knock_on_the_door": False},
    1: {"door": False, "door_left_open": False, "pry_the_door": False},
    2: {"door": True, "door_left_open": True},
    3: {"door": False, "knock_on_the_door": True},
    4: {"door": True, "pry_the_door": True},
    5: {"door": False, "door_stuck": True},
}


def _door_event(data: bytes, ctx: _Ctx) -> None:
    ctx.values.update(_DOOR_EVENTS.get(data[0], {}))


def _armed(data: bytes, ctx: _Ctx) -> None:
    armed = (data[0] ^ 1) > 0
    ctx.values["armed"] = armed
    if ctx.model == "DSL-C08":  # lifting the handle outside sends this object
        ctx.values["lock"] = armed
        ctx.values["lock_method"] = "manual"
        ctx.event("lock", "lock_outside_the_door")


#: 0x000B lock action (low nibble) -> (lock kind, unlocked, event action).
LOCK_ACTIONS: dict[int, tuple[str, bool, str]] = {
    0b0000: ("lock", True, "unlock_outside_the_door"),
    0b0001: ("lock", False, "locked"),
    0b0010: ("antilock", False, "turn_on_antilock"),
    0b0011: ("antilock", True, "release_the_antilock"),
    0b0100: ("lock", True, "unlock_inside_the_door"),
    0b0101: ("lock", False, "lock_inside_the_door"),
    0b0110: ("childlock", False, "turn_on_child_lock"),
    0b0111: ("childlock", True, "turn_off_child_lock"),
    0b1000: ("lock", False, "lock_outside_the_door"),
    0b1111: ("lock", True, "abnormal"),
}
#: 0x000B lock method (high nibble).
LOCK_METHODS: dict[int, str] = {
    0b0000: "bluetooth",
    0b0001: "password",
    0b0010: "biometrics",
    0b0011: "key_method",
    0b0100: "turntable_method",
    0b0101: "nfc_method",
    0b0110: "one_time_password",
    0b0111: "two_step_verification",
    0b1000: "coercion_method",
    0b1001: "homekit",
    0b1010: "manual",
    0b1011: "automatic",
    0b1111: "abnormal",
}


def _lock(data: bytes, ctx: _Ctx) -> None:
    """0x000B: action/method byte, key id (u32), timestamp (u32). ``lock`` true = unlocked."""
    action = LOCK_ACTIONS.get(data[0] & 0x0F)
    method = LOCK_METHODS.get(data[0] >> 4)
    if action is None or method is None:
        return
    kind, unlocked, name = action
    ctx.values[kind] = unlocked
    ctx.values["lock_method"] = method
    ctx.values["key_id"] = _u(data[1:5])
    ctx.event("lock", name)


def _lock_attribute(data: bytes, ctx: _Ctx) -> None:
    ctx.values["lock"] = (data[0] & 0x01) == 0
    ctx.values["childlock"] = ((data[0] >> 3) & 0x01) == 0


def _charging_state(data: bytes, ctx: _Ctx) -> None:
    ctx.values["charging_state"] = {0: "charging", 1: "not_charging", 2: "full"}.get(
        data[0], "unknown"
    )


def _scale_s200(data: bytes, ctx: _Ctx) -> None:
    """0x4E16 (S200): profile id u8, mass u32 (/100 kg), timestamp u32.

    The S200 sends a timestamped record of a finished weighing, so a mass in it is a
    stabilized one; a record with mass 0 is none (xiaomi-ble ignores it).
    """
    profile, mass, _ts = struct.unpack("<BII", data)
    ctx.values["profile_id"] = profile
    ctx.values["stabilized"] = mass > 0
    if mass:
        ctx.values["mass"] = round(mass / 100, 2)


def _scale_s400(data: bytes, ctx: _Ctx) -> None:
    """0x6E16 (S400): profile id u8, u32 bit field mass:11 heart_rate:7 impedance:14, ts u32."""
    profile, bits, _ts = struct.unpack("<BII", data)
    mass = bits & 0x7FF
    heart = (bits >> 11) & 0x7F
    impedance = bits >> 18
    if mass == 0x7FF:
        mass = 0
    ctx.values["profile_id"] = profile
    if mass == heart == impedance == 0:
        ctx.values["stabilized"] = False
        return
    if mass:
        ctx.values["mass"] = round(mass / 10, 1)
    if 0 < heart < 127:
        ctx.values["heart_rate"] = heart + 50
    if mass == 0 and heart == 0:
        ctx.values["impedance_high"] = round(impedance / 10, 1)
        ctx.values["stabilized"] = True
    elif impedance:
        ctx.values["impedance_low"] = round(impedance / 10, 1)
        ctx.values["stabilized"] = False
    else:
        ctx.values["stabilized"] = True


# --- buttons ---------------------------------------------------------------------------------

#: Press-type byte of 0x1001 for most models.
_PRESS_1001 = {0: "single", 1: "double", 2: "long", 5: "single", 6: "long"}
#: Aqara K9B wall switches swap long and double.
_PRESS_K9B = {0: "single", 1: "long", 2: "double"}
#: K9B button-type byte -> buttons pressed together (1 = left, 2 = middle/right, 3 = right).
_K9B_BUTTONS: dict[str, dict[int, tuple[int | None, ...]]] = {
    "K9B-1BTN": {0: (None,)},
    "K9B-2BTN": {0: (1,), 1: (2,), 2: (1, 2)},
    "K9B-3BTN": {0: (1,), 1: (2,), 2: (3,), 3: (1, 2), 4: (2, 3), 5: (1, 3), 6: (1, 2, 3)},
}
#: Remotes whose button-type byte is a button number (button = byte + 1).
_REMOTES = frozenset({"YLYK01YL", "YLYK01YL-FANCL", "YLYK01YL-VENFAN", "YLYB01YL-BHFRC"})


def _button_1001(data: bytes, ctx: _Ctx) -> None:
    """0x1001: button type/index, value, press type. Its meaning varies by model."""
    btype, value, press = data[0], data[1], data[2]
    model = ctx.model
    if model in _K9B_BUTTONS:
        action = _PRESS_K9B.get(press)
        buttons = _K9B_BUTTONS[model].get(btype, ())
        if action is not None:
            for button in buttons:
                ctx.event("button", action, button)
        return
    if model == "XMMF01JQD":  # Rubik's cube
        if btype in (0, 1):
            ctx.event("cube", "rotate_right" if btype == 0 else "rotate_left")
        return
    if model == "YLKG07YL/YLKG08YL":  # dimmer
        if press == 3 and btype == 0:
            ctx.event("dimmer", "single", presses=value)
        elif press == 3 and btype == 1:
            ctx.event("dimmer", "long", duration=value)
        elif press == 4 and btype == 0:
            if value <= 127:
                ctx.event("dimmer", "rotate_right", steps=value)
            else:
                ctx.event("dimmer", "rotate_left", steps=256 - value)
        elif press == 4:
            if btype <= 127:
                ctx.event("dimmer", "rotate_right_pressed", steps=btype)
            else:
                ctx.event("dimmer", "rotate_left_pressed", steps=256 - btype)
        return
    if model == "YLYK01YL" and btype in (0, 1):  # the "on"/"off" buttons: the lamp's state
        ctx.values["power_on"] = btype == 0
    action = _PRESS_1001.get(press)
    if action is None:
        return
    ctx.event("button", action, btype + 1 if model in _REMOTES else None)


#: Models whose 0x4E0C-0x4E0E and 0x560C-0x560E press objects are buttons; others (a stray
#: object on a thermometer) fire nothing, as in xiaomi-ble
#: (test_Xiaomi_button_object_ignored_for_non_button_device).
_BUTTONS_4E0X = frozenset({"XMWXKG01YL", "K9BB-1BTN", "XMWXKG01LM"})
_BUTTONS_560X = frozenset({"KS1", "KS1BP", "KS2BB"})


def _miot_button(action: str, models: frozenset[str] | None = None) -> Decoder:
    """0x4A0C-0x4A0E, 0x4E0C-0x4E0E, 0x560C-0x560E: single/double/long press objects
    (``models``: the only models they are buttons of; None: any)."""

    def decode(data: bytes, ctx: _Ctx) -> None:
        arg = data[0] if data else None
        model = ctx.model
        if models is not None and model not in models:
            return
        if model == "XMWS01XS":  # 0 left, 1 right
            if arg in (0, 1):
                ctx.event("button", action, arg + 1)
        elif model == "XMWXKG01YL":  # 1 left, 2 right, 3 both
            for button in {1: (1,), 2: (2,), 3: (1, 2)}.get(arg or 0, ()):
                ctx.event("button", action, button)
        elif model == "K9BB-1BTN":  # the argument is the press type
            kind = {1: "single", 8: "long", 15: "double"}.get(arg or 0)
            if kind is not None:
                ctx.event("button", kind)
        elif model in ("KS1", "KS1BP"):  # 1 left, 2 mid-left, 3 mid-right, 4 right
            if arg in (1, 2, 3, 4):
                ctx.event("button", action, arg)
        else:
            ctx.event("button", action)

    return decode


def _button_4a13(data: bytes, ctx: _Ctx) -> None:
    if data[0] == 1:
        ctx.event("button", "single")


def _motion_event(data: bytes, ctx: _Ctx) -> None:
    ctx.event("motion", "detected")


def _ignore(data: bytes, ctx: _Ctx) -> None:
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
        ObjDef(0x0003, "motion event", _ANY, _motion_event),
        ObjDef(0x0006, "fingerprint", _one(5), _fingerprint),
        ObjDef(0x0007, "door event", _r(1, 5), _door_event),
        ObjDef(0x0008, "armed", _r(1, 5), _armed),
        ObjDef(0x000A, "body temperature", _one(2), _body_temperature),
        ObjDef(0x000B, "lock event", _one(9), _lock),
        ObjDef(0x000F, "motion with light", _one(3), _motion_light),
        ObjDef(0x0010, "toothbrush", _r(1, 2), _toothbrush),
        ObjDef(0x1001, "button", _one(3), _button_1001),
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
        ObjDef(0x4A0C, "single press", _r(0, 1), _miot_button("single")),
        ObjDef(0x4A0D, "double press", _r(0, 1), _miot_button("double")),
        ObjDef(0x4A0E, "long press", _r(0, 1), _miot_button("long")),
        ObjDef(0x4A0F, "device forcibly removed", _one(1), _forcibly_removed),
        ObjDef(0x4A12, "opening event", _one(1), _opening_miot),
        ObjDef(0x4A13, "button", _one(1), _button_4a13),
        ObjDef(0x4A1A, "door left open", _one(1), _door_left_open),
        ObjDef(0x4A68, "water leak event", _one(1), _leak_event),
        ObjDef(0x4C01, "temperature (float)", _one(4), _set("temperature", _f32)),
        ObjDef(0x4C02, "humidity", _one(1), _set("humidity", lambda d: float(d[0]))),
        ObjDef(0x4C03, "battery", _one(1), _set("battery", lambda d: float(d[0]))),
        ObjDef(0x4C08, "humidity (float)", _one(4), _set("humidity", _f32)),
        ObjDef(0x4C14, "mode", _one(1), _set("mode", _u)),
        ObjDef(0x4E01, "low battery", _one(1), _flag("battery_low")),
        ObjDef(0x4E0C, "single press", _r(0, 1), _miot_button("single", _BUTTONS_4E0X)),
        ObjDef(0x4E0D, "double press", _r(0, 1), _miot_button("double", _BUTTONS_4E0X)),
        ObjDef(0x4E0E, "long press", _r(0, 1), _miot_button("long", _BUTTONS_4E0X)),
        ObjDef(0x4E16, "scale (S200)", _one(9), _scale_s200),
        ObjDef(0x4E1C, "device reset", _ANY, _ignore),
        ObjDef(0x5003, "battery", _one(1), _set("battery", lambda d: float(d[0]))),
        ObjDef(0x5413, "occupancy close range", _one(1), _flag("occupancy_close_range")),
        ObjDef(0x5414, "mode", _one(1), _set("mode", _u)),
        ObjDef(0x5422, "charging state", _one(1), _charging_state),
        ObjDef(0x560C, "single press", _r(0, 1), _miot_button("single", _BUTTONS_560X)),
        ObjDef(0x560D, "double press", _r(0, 1), _miot_button("double", _BUTTONS_560X)),
        ObjDef(0x560E, "long press", _r(0, 1), _miot_button("long", _BUTTONS_560X)),
        ObjDef(0x5810, "sleep", _one(1), _flag("asleep", invert=True)),
        ObjDef(0x6461, "wearing", _one(1), _flag("wearing", invert=True)),
        ObjDef(0x6E16, "scale (S400)", _one(9), _scale_s400),
    )
}


# --- frame ---------------------------------------------------------------------------------


#: Frame control (LE u16), product id (LE u16), frame counter (u8).
_FIXED = struct.Struct("<HHB")


def _walk(payload: bytes, pos: int, ctx: _Ctx, notes: list[str] | None) -> None:
    """Walk the objects from ``payload[pos:]`` into ``ctx``.

    Lenient (``notes`` given): unknown objects and objects of an unexpected length are
    skipped and noted. Strict (``notes`` is None, legacy crypto): anything odd raises.
    A length that overruns the payload raises in both modes.
    """
    end = len(payload)
    while pos + 3 <= end:
        oid = payload[pos] | payload[pos + 1] << 8
        olen = payload[pos + 2]
        nxt = pos + 3 + olen
        if nxt > end:
            raise MalformedError(f"object 0x{oid:04X} length {olen} overruns the payload")
        obj = OBJECTS.get(oid)
        if obj is not None and olen in obj.lengths:
            obj.decode(payload[pos + 3 : nxt], ctx)
        elif notes is None:
            raise MalformedError(
                f"unknown object 0x{oid:04X}"
                if obj is None
                else f"object 0x{oid:04X} has length {olen}"
            )
        else:
            data = payload[pos + 3 : nxt].hex()
            notes.append(f"0x{oid:04X}:{data}" if obj is None else f"0x{oid:04X}/len{olen}:{data}")
        pos = nxt
    if pos != end:
        if notes is None:
            raise MalformedError(f"{end - pos} stray byte(s) after the objects")
        notes.append(f"stray:{payload[pos:].hex()}")


def decode(data: bytes, mac: str | None, key: BindKey | None) -> Decoded:
    """Decode one 0xFE95 service-data payload. ``mac`` is the advertiser address (or None).

    Raises only :class:`~drivers.ble.errors.BleParseError` subclasses.
    """
    # header: fixed part, then the MAC (as sent: reversed) and capability fields if flagged
    if len(data) < 5:
        raise MalformedError(f"MiBeacon frame of {len(data)} bytes is shorter than 5")
    fc, pid, frame_counter = _FIXED.unpack_from(data)
    i = 5
    mac_field = cap = None
    if fc & _MAC_INCLUDED:
        if len(data) < 11:
            raise MalformedError("MiBeacon frame too short for its MAC field")
        mac_field = data[5:11]
        i = 11
    if fc & _CAPABILITY_INCLUDED:
        if len(data) < i + 1:
            raise MalformedError("MiBeacon frame too short for its capability field")
        cap = data[i]
        i += 1
        if cap & CAP_IO_INCLUDED:  # one I/O capability byte, skipped
            if len(data) < i + 1:
                raise MalformedError("MiBeacon frame too short for its I/O capability")
            i += 1
    version = fc >> 12
    if version < 2:
        raise UnsupportedError(f"MiBeacon version {version} is not supported")
    if fc & _MESH:
        raise UnsupportedError("MiBeacon mesh frames are not supported")
    encrypted = bool(fc & _ENCRYPTED)
    kind = _kind(pid, version, encrypted)
    if kind is None:
        raise UnsupportedError(f"unknown MiBeacon product id 0x{pid:04X}", product_id=pid)
    if mac_field is not None:
        mac_text = _mac_text(mac_field)
        if mac and mac != mac_text and mac.upper() != mac_text:
            raise _fail(
                MalformedError, "the MAC inside the MiBeacon frame is not the advertiser's", kind
            )
    elif mac:
        mac_text = mac.upper()
    else:
        raise _fail(MalformedError, "no MAC address (not in the frame, advertiser unknown)", kind)
    ctx = _Ctx(kind.model)
    counter = frame_counter
    notes: list[str] = []
    mac_rev = b""
    if encrypted and fc & _OBJECT_INCLUDED:
        # The advertiser address is parsed for the nonce only (plain frames decode from any
        # address, a macOS UUID too).
        if mac_field is not None:
            mac_rev = mac_field
        else:
            try:
                mac_rev = crypto.nonce_mac(mac, "encrypted MiBeacon")[::-1]
            except MalformedError as exc:
                raise _fail(MalformedError, str(exc), kind) from None
    if fc & _OBJECT_INCLUDED:
        if not encrypted:
            if len(data) < i + 3:
                raise _fail(MalformedError, "MiBeacon frame has the object bit but no object", kind)
            try:
                _walk(data, i, ctx, notes)
            except MalformedError as exc:
                raise _fail(MalformedError, str(exc), kind) from None
        elif key is None:
            raise _fail(NoKeyError, "encrypted MiBeacon and no bind key for this MAC", kind)
        elif version >= 4:
            if key.is_legacy:
                raise _fail(KeyInvalidError, LEGACY_KEY_FOR_V45, kind)
            if len(data) < i + 3 + 7:
                raise _fail(MalformedError, "encrypted MiBeacon v4/v5 frame too short", kind)
            plain = crypto.mibeacon_v45_decrypt(key.raw, mac_rev, data, i)
            if plain is None:
                raise _fail(KeyInvalidError, "MiBeacon v4/v5 tag mismatch (wrong bind key)", kind)
            counter = frame_counter | int.from_bytes(data[-7:-4], "little") << 8
            try:
                _walk(plain, 0, ctx, notes)
            except MalformedError as exc:
                raise _fail(MalformedError, str(exc), kind) from None
        else:
            if not key.is_legacy:
                raise _fail(KeyInvalidError, LONG_KEY_FOR_LEGACY, kind)
            if len(data) < i + 3 + 4:
                raise _fail(MalformedError, "encrypted MiBeacon v2/v3 frame too short", kind)
            ext = data[-4:-1]
            nonce = crypto.mibeacon_legacy_nonce(data, ext, mac_rev)
            plain = crypto.ccm_ctr_only(key.aes_key(), nonce, data[i:-4])
            counter = frame_counter | int.from_bytes(ext, "little") << 8
            try:
                _walk(plain, 0, ctx, None)
            except MalformedError:
                # No verified tag in the legacy scheme: garbage objects mean a wrong key.
                raise _fail(
                    KeyInvalidError,
                    "legacy MiBeacon payload does not parse after decryption (wrong key)",
                    kind,
                ) from None
    info: dict[str, str] = {}
    if cap is not None:
        info["capability"] = f"0x{cap:02X}"
    if notes:
        info["skipped_objects"] = " ".join(notes)
    return make_decoded(
        mac_text,
        kind,
        ctx.values,
        tuple(ctx.events) if ctx.events else (),
        counter,
        None,
        data,
        info,
    )


def object_ids(data: bytes) -> tuple[int, ...]:
    """The object ids a plain (unencrypted) frame carries, in order; () when it has none.

    For the downgrade guard (:mod:`drivers.ble.downgrade`): only called on frames that
    :func:`decode` accepted, so the header is known to be well formed; a TLV that overruns
    ends the walk, as in :func:`decode`.
    """
    if len(data) < 5:
        return ()
    fc = data[0] | data[1] << 8
    if not fc & _OBJECT_INCLUDED or fc & _ENCRYPTED:
        return ()
    i = 5 + (6 if fc & _MAC_INCLUDED else 0)
    if fc & _CAPABILITY_INCLUDED and len(data) > i:
        i += 2 if data[i] & CAP_IO_INCLUDED else 1
    ids: list[int] = []
    while i + 3 <= len(data) and i + 3 + data[i + 2] <= len(data):
        ids.append(data[i] | data[i + 1] << 8)
        i += 3 + data[i + 2]
    return tuple(ids)


@lru_cache(maxsize=4096)
def _mac_text(mac_field: bytes) -> str:
    """The MAC field as sent (LSB first) -> ``A4:C1:38:02:83:F4``; cached per sensor (this
    ran per advert: about 0.4 µs of a 4.6 µs encrypted decode)."""
    return mac_field[::-1].hex(":").upper()


@lru_cache(maxsize=1024)
def _kind(product_id: int, version: int, encrypted: bool) -> FrameKind | None:
    """The frame kind of a known product id (None for an unknown one); built once each."""
    prod: Product | None = product(product_id)
    if prod is None:
        return None
    return FrameKind(
        Format.MIBEACON,
        prod.model,
        prod.name,
        encrypted,
        prod.product_id,
        prod.manufacturer,
        prod.sleepy,
        version,
        UUID_MIBEACON,
    )


def _fail(cls: type[BleParseError], message: str, kind: FrameKind) -> BleParseError:
    return cls(
        message,
        model=kind.model,
        name=kind.name,
        product_id=kind.product_id,
        sleepy=kind.sleepy,
        encrypted=kind.encrypted,
    )


# --- encoding (tests and the simulated fleet) ----------------------------------------------


def encode_objects(objects: list[tuple[int, bytes]]) -> bytes:
    return b"".join(oid.to_bytes(2, "little") + bytes([len(d)]) + d for oid, d in objects)


def encode(
    *,
    product_id: int,
    frame_counter: int,
    mac: str,
    objects: list[tuple[int, bytes]],
    version: int = 5,
    key: BindKey | None = None,
    ext_counter: int = 0,
    include_mac: bool = True,
    capability: int | None = None,
    extra_flags: int = 0,
) -> bytes:
    """Build a MiBeacon frame (encrypted when ``key`` is given) for tests and simulation."""
    fc = version << 12 | extra_flags
    if include_mac:
        fc |= FrameControl.MAC_INCLUDED
    if capability is not None:
        fc |= FrameControl.CAPABILITY_INCLUDED
    if objects:
        fc |= FrameControl.OBJECT_INCLUDED
    if key is not None:
        fc |= FrameControl.ENCRYPTED
    mac_rev = bytes.fromhex(mac.replace(":", ""))[::-1]
    header = (
        fc.to_bytes(2, "little") + product_id.to_bytes(2, "little") + bytes([frame_counter & 0xFF])
    )
    out = header + (mac_rev if include_mac else b"")
    if capability is not None:
        out += bytes([capability])
    plain = encode_objects(objects)
    if key is None:
        return out + plain
    ext = (ext_counter & 0xFFFFFF).to_bytes(3, "little")
    if version >= 4:
        nonce = crypto.mibeacon_v45_nonce(mac_rev, header, ext)
        ct, tag = crypto.ccm_encrypt(key.aes_key(), nonce, plain, crypto.AAD_11)
        return out + ct + ext + tag
    nonce = crypto.mibeacon_legacy_nonce(header, ext, mac_rev)
    return out + crypto.ccm_ctr_only(key.aes_key(), nonce, plain) + ext + b"\x00"
