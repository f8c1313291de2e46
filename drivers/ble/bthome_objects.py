"""The BTHome object table: one :data:`OBJECTS` entry per object id, and the event codes.

Declarative and long on purpose (one line per object id, as the BTHome format table lists
them, mirrored in docs/ble.md). Names are the gateway's metric names where one exists
(docs/metrics.md), otherwise the BTHome property name; units are converted to one unit per
name (mass in kg, distance in m, volume in L). :data:`NUMERIC` is the same table, for plain
numbers, as ready-made tuples for the per-advert walk in :mod:`drivers.ble.bthome`.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from decimal import Decimal


class Kind(enum.Enum):
    NUMBER = "number"
    BINARY = "binary"
    PACKET_ID = "packet_id"
    BUTTON = "button"
    DIMMER = "dimmer"
    COMMAND = "command"  # parsed, carries no value
    TIMESTAMP = "timestamp"
    TEXT = "text"
    RAW = "raw"
    DEVICE_TYPE = "device_type"
    FIRMWARE = "firmware"


@dataclass(frozen=True, slots=True)
class BtObj:
    oid: int
    name: str
    length: int  # data bytes after the id (text/raw: the length byte)
    kind: Kind = Kind.NUMBER
    signed: bool = False
    factor: float = 1.0
    #: Unit conversion applied after the factor (lb -> kg, mm -> m, mL -> L).
    convert: float = 1.0
    #: Decimals kept; -1 means "the factor's" (resolved when the table is built).
    digits: int = -1


def _factor_digits(factor: float) -> int:
    exp = Decimal(str(factor)).normalize().as_tuple().exponent
    return max(0, -int(exp))


def _resolved(obj: BtObj) -> BtObj:
    if obj.digits >= 0:
        return obj
    return dataclasses.replace(obj, digits=_factor_digits(obj.factor))


#: Metrics published as floats even when the factor is 1 (docs/metrics.md types).
FLOAT_METRICS = frozenset(
    {
        "battery",
        "humidity",
        "moisture",
        "carbon_dioxide",
        "pm25",
        "pm10",
        "volatile_organic_compounds",
        "conductivity",
        "temperature",
        "illuminance",
    }
)


def _n(
    oid: int,
    name: str,
    length: int,
    factor: float = 1.0,
    *,
    signed: bool = False,
    convert: float = 1.0,
    digits: int = -1,
) -> BtObj:
    return BtObj(oid, name, length, Kind.NUMBER, signed, factor, convert, digits)


def _b(oid: int, name: str) -> BtObj:
    return BtObj(oid, name, 1, Kind.BINARY)


_LB = 0.45359237

#: Every BTHome object id (bthome-ble 3.25 ``MEAS_TYPES``, see bthome_objects.txt).
OBJECTS: dict[int, BtObj] = {
    o.oid: _resolved(o)
    for o in (
        BtObj(0x00, "packet_id", 1, Kind.PACKET_ID),
        _n(0x01, "battery", 1),
        _n(0x02, "temperature", 2, 0.01, signed=True),
        _n(0x03, "humidity", 2, 0.01),
        _n(0x04, "pressure", 3, 0.01),
        _n(0x05, "illuminance", 3, 0.01),
        _n(0x06, "mass", 2, 0.01),
        _n(0x07, "mass", 2, 0.01, convert=_LB, digits=3),  # sent in lb
        _n(0x08, "dew_point", 2, 0.01, signed=True),
        _n(0x09, "count", 1),
        _n(0x0A, "energy", 3, 0.001),
        _n(0x0B, "power", 3, 0.01),
        _n(0x0C, "voltage", 2, 0.001),
        _n(0x0D, "pm25", 2),
        _n(0x0E, "pm10", 2),
        _b(0x0F, "generic"),
        _b(0x10, "power_on"),
        _b(0x11, "opening"),
        _n(0x12, "carbon_dioxide", 2),
        _n(0x13, "volatile_organic_compounds", 2),
        _n(0x14, "moisture", 2, 0.01),
        _b(0x15, "battery_low"),
        _b(0x16, "battery_charging"),
        _b(0x17, "carbon_monoxide"),
        _b(0x18, "cold"),
        _b(0x19, "connectivity"),
        _b(0x1A, "door"),
        _b(0x1B, "garage_door"),
        _b(0x1C, "gas_detected"),
        _b(0x1D, "heat"),
        _b(0x1E, "light"),
        _b(0x1F, "lock"),
        _b(0x20, "water_leak"),
        _b(0x21, "motion"),
        _b(0x22, "moving"),
        _b(0x23, "occupancy"),
        _b(0x24, "plug"),
        _b(0x25, "presence"),
        _b(0x26, "problem"),
        _b(0x27, "running"),
        _b(0x28, "safety"),
        _b(0x29, "smoke"),
        _b(0x2A, "sound"),
        _b(0x2B, "tamper"),
        _b(0x2C, "vibration"),
        _b(0x2D, "window"),
        _n(0x2E, "humidity", 1),
        _n(0x2F, "moisture", 1),
        BtObj(0x3A, "button", 1, Kind.BUTTON),
        BtObj(0x3B, "command", 1, Kind.COMMAND),
        BtObj(0x3C, "dimmer", 2, Kind.DIMMER),
        _n(0x3D, "count", 2),
        _n(0x3E, "count", 4),
        _n(0x3F, "rotation", 2, 0.1, signed=True),
        _n(0x40, "distance", 2, 1, convert=0.001, digits=3),  # sent in mm
        _n(0x41, "distance", 2, 0.1),
        _n(0x42, "duration", 3, 0.001),
        _n(0x43, "current", 2, 0.001),
        _n(0x44, "speed", 2, 0.01),
        _n(0x45, "temperature", 2, 0.1, signed=True),
        _n(0x46, "uv_index", 1, 0.1),
        _n(0x47, "volume", 2, 0.1),
        _n(0x48, "volume", 2, 1, convert=0.001, digits=3),  # sent in mL
        _n(0x49, "volume_flow_rate", 2, 0.001),
        _n(0x4A, "voltage", 2, 0.1),
        _n(0x4B, "gas", 3, 0.001),
        _n(0x4C, "gas", 4, 0.001),
        _n(0x4D, "energy", 4, 0.001),
        _n(0x4E, "volume", 4, 0.001),
        _n(0x4F, "water", 4, 0.001),
        BtObj(0x50, "timestamp", 4, Kind.TIMESTAMP),
        _n(0x51, "acceleration", 2, 0.001),
        _n(0x52, "gyroscope", 2, 0.001),
        BtObj(0x53, "text", 1, Kind.TEXT),
        BtObj(0x54, "raw", 1, Kind.RAW),
        _n(0x55, "volume_storage", 4, 0.001),
        _n(0x56, "conductivity", 2),
        _n(0x57, "temperature", 1, signed=True),
        _n(0x58, "temperature", 1, 0.35, signed=True),
        _n(0x59, "count", 1, signed=True),
        _n(0x5A, "count", 2, signed=True),
        _n(0x5B, "count", 4, signed=True),
        _n(0x5C, "power", 4, 0.01, signed=True),
        _n(0x5D, "current", 2, 0.001, signed=True),
        _n(0x5E, "direction", 2, 0.01),
        _n(0x5F, "precipitation", 2, 0.1),
        _n(0x60, "channel", 1),
        _n(0x61, "rotational_speed", 2),
        _n(0x62, "speed", 4, 0.000001, signed=True),
        _n(0x63, "acceleration", 4, 0.000001, signed=True),
        _n(0x64, "light_level", 1),
        _n(0x65, "settings_revision", 1),
        BtObj(0xF0, "device_type_id", 2, Kind.DEVICE_TYPE),
        BtObj(0xF1, "firmware_version", 4, Kind.FIRMWARE),
        BtObj(0xF2, "firmware_version", 3, Kind.FIRMWARE),
    )
}

#: 0x3A button event codes -> action (0x00 = no event).
BUTTON_ACTIONS = {
    0x01: "single",
    0x02: "double",
    0x03: "triple",
    0x04: "long",
    0x05: "long_double",
    0x06: "long_triple",
    0x80: "hold",
}
#: 0x3C dimmer event codes -> action.
DIMMER_ACTIONS = {0x01: "rotate_left", 0x02: "rotate_right"}


def _divisor(obj: BtObj) -> int:
    """10**k when the object's scale is exactly 10**-k (then ``raw / 10**k`` is exact)."""
    if obj.convert != 1.0:
        return 0
    for k in range(7):
        if obj.factor == 10.0**-k:
            return int(10**k)
    return 0


#: Fast plan for plain numeric objects (the bulk of real traffic): id -> (name, length,
#: signed, scale, digits, as_float, divisor); ``divisor`` is 10**k for a 10**-k factor
#: (1 for factor 1), else 0 (then round(raw * scale, digits)).
NUMERIC: dict[int, tuple[str, int, bool, float, int, bool, int]] = {
    o.oid: (
        o.name,
        o.length,
        o.signed,
        o.factor * o.convert,
        o.digits,
        o.name in FLOAT_METRICS,
        _divisor(o),
    )
    for o in OBJECTS.values()
    if o.kind is Kind.NUMBER
}
