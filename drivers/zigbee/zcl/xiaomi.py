"""Xiaomi / Aqara (LUMI) specifics: the TLV heartbeat and per-model tag meanings (pure).

The heartbeat arrives as Basic 0xFF01 (char 0x42 or octet 0x41 string), 0xFF02 (a real ZCL
struct on old "Mija" devices) or manufacturer cluster 0xFCC0 attribute 0x00F7. Its value is a
list of ``tag u8, ZCL type u8, value`` entries. The ZCL layer already cut the string at
``min(declared length, bytes left)``; here entries are parsed until fewer than two bytes are
left, a trailing 0x00 is ignored, and an entry cut short ends the walk (what came before it
is kept).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.errors import ParseError
from drivers.zigbee.zcl import types as zt


@dataclass(frozen=True, slots=True)
class Tlv:
    values: dict[int, zt.ZclValue] = field(default_factory=dict)
    types: dict[int, int] = field(default_factory=dict)
    #: An entry was cut short or had an unknown type: parsing stopped there.
    truncated: bool = False


def parse_tlv(raw: bytes) -> Tlv:
    """Parse a Xiaomi TLV buffer. Never raises: what cannot be read ends the walk."""
    values: dict[int, zt.ZclValue] = {}
    types: dict[int, int] = {}
    pos = 0
    n = len(raw)
    truncated = False
    while n - pos >= 2:
        tag = raw[pos]
        type_id = raw[pos + 1]
        if tag == 0 and type_id == 0 and not raw[pos:].strip(b"\x00"):
            break  # stray zero padding
        try:
            value, pos = zt.read_value(type_id, raw, pos + 2)
        except ParseError:
            truncated = True
            break
        values[tag] = value
        types[tag] = type_id
    else:
        if pos < n and raw[pos:] != b"\x00":
            truncated = True
    return Tlv(values, types, truncated)


# --- per-model meaning ---------------------------------------------------------------------

#: A tag converter: raw value -> list of (metric, value). Non-numbers give nothing.
Conv = Callable[[zt.ZclValue], list[tuple[str, object]]]


def _num(v: zt.ZclValue) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _scaled(metric: str, divisor: float, digits: int = 3) -> Conv:
    def conv(v: zt.ZclValue) -> list[tuple[str, object]]:
        x = _num(v)
        return [] if x is None else [(metric, round(x / divisor, digits))]

    return conv


def _boolean(metric: str, true_value: int = 1) -> Conv:
    def conv(v: zt.ZclValue) -> list[tuple[str, object]]:
        x = int(v) if isinstance(v, bool) else _num(v)
        return [] if x is None else [(metric, int(x) == true_value)]

    return conv


COMMON_TAGS: dict[int, Conv] = {
    0x01: _scaled("voltage", 1000),  # battery mV
    0x03: _scaled("device_temperature", 1, 1),  # chip temperature, °C
    0x17: _scaled("voltage", 1000),  # battery mV on newer 0x00F7 reports
    0x18: _scaled("battery", 1, 1),  # battery % as sent (0x00F7)
}

_HT: dict[int, Conv] = {
    0x64: _scaled("temperature", 100, 2),
    0x65: _scaled("humidity", 100, 2),
}
_WEATHER: dict[int, Conv] = {**_HT, 0x66: _scaled("pressure", 100, 2)}  # Pa -> hPa
_PLUG: dict[int, Conv] = {
    0x64: _boolean("switch"),
    0x95: _scaled("energy", 1, 3),
    0x96: _scaled("voltage", 10, 1),
    0x97: _scaled("current", 1000, 3),
    0x98: _scaled("power", 1, 2),
}


#: The battery tags of COMMON_TAGS, not published for mains-powered models.
MAINS_IGNORE = frozenset({0x01, 0x17, 0x18})


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What a model's reports mean beyond the standard clusters.

    ``vendor``, ``model_code`` and ``name`` are how zigbee2mqtt names the device
    (zigbee-herdsman-converters ``vendor``, ``model``, ``description``).
    """

    model: str
    description: str
    tags: dict[int, Conv] = field(default_factory=dict)
    vendor: str = "Aqara"
    model_code: str = ""
    name: str = ""
    #: Tags of COMMON_TAGS this model sends as junk (not published).
    ignore_common: frozenset[int] = frozenset()
    sleepy: bool = True
    #: Endpoint that takes On/Off commands (None: not switchable).
    switch_endpoint: int | None = None
    #: Seconds after a motion report before "no motion" is published.
    motion_clear_s: float | None = None


MODELS: dict[str, ModelSpec] = {
    m.model: m
    for m in (
        ModelSpec(
            "lumi.sensor_ht",
            "Mi temperature and humidity sensor (WSDCGQ01LM)",
            _HT,
            vendor="Xiaomi",
            model_code="WSDCGQ01LM",
            name="Mi temperature and humidity sensor",
        ),
        ModelSpec(
            "lumi.weather",
            "Aqara temperature, humidity, pressure (WSDCGQ11LM)",
            _WEATHER,
            model_code="WSDCGQ11LM",
            name="Temperature, humidity and pressure sensor",
        ),
        # T1 (0xFCC0/0x00F7): tag 0x66 is already hPa (zha vector: 1001)
        ModelSpec(
            "lumi.sensor_ht.agl02",
            "Aqara temperature and humidity sensor T1 (WSDCGQ12LM)",
            {**_HT, 0x66: _scaled("pressure", 1, 2)},
            model_code="WSDCGQ12LM",
            name="Temperature and humidity sensor T1",
        ),
        ModelSpec(
            "lumi.sensor_motion.aq2",
            "Aqara motion and illuminance sensor (RTCGQ11LM)",
            {0x0B: _scaled("illuminance", 1, 1)},
            motion_clear_s=90.0,
            model_code="RTCGQ11LM",
            name="Motion sensor",
        ),
        # MCCGQ11LM: tag 0x64 is the contact, 1 = open (z2m: contact = value == 0)
        ModelSpec(
            "lumi.sensor_magnet.aq2",
            "Aqara door and window sensor (MCCGQ11LM)",
            {0x64: _boolean("opening")},
            model_code="MCCGQ11LM",
            name="Door and window sensor",
        ),
        # MCCGQ12LM (T1): the contact comes on On/Off (1 = open), as zha's and z2m's
        # converters take it; its 0x00F7 heartbeat's tag 0x64 is not read as the contact
        ModelSpec(
            "lumi.magnet.agl02",
            "Aqara door and window sensor T1 (MCCGQ12LM)",
            model_code="MCCGQ12LM",
            name="Door and window sensor T1",
        ),
        ModelSpec(
            "lumi.sensor_switch.aq2",
            "Aqara wireless mini switch (WXKG11LM)",
            model_code="WXKG11LM",
            name="Wireless mini switch",
        ),
        # SJCGQ11LM: tag 0x64 is the leak state but unreliable (z2m ignores it): IAS decides
        ModelSpec(
            "lumi.sensor_wleak.aq1",
            "Aqara water leak sensor (SJCGQ11LM)",
            model_code="SJCGQ11LM",
            name="Water leak sensor",
        ),
        ModelSpec(
            "lumi.plug",
            "Mi smart plug (ZNCZ02LM)",
            _PLUG,
            # mains powered: a tag 0x01 is no battery voltage (zha ignores it too), and our
            # `voltage` is the mains voltage from tag 0x96
            ignore_common=MAINS_IGNORE,
            sleepy=False,
            switch_endpoint=1,
            vendor="Xiaomi",
            model_code="ZNCZ02LM",
            name="Mi power plug ZigBee",
        ),
        ModelSpec(
            "lumi.ctrl_neutral1",
            "Aqara single-rocker wall switch, no neutral (QBKG04LM)",
            {0x64: _boolean("switch")},
            ignore_common=MAINS_IGNORE,
            sleepy=False,
            switch_endpoint=2,
            model_code="QBKG04LM",
            name="Smart wall switch (no neutral, single rocker)",
        ),
    )
}

#: Other names the same hardware reports (truncated model strings, newer revisions).
ALIASES: dict[str, str] = {
    "lumi.sens": "lumi.sensor_ht",
    "lumi.remote.b1acn01": "lumi.sensor_switch.aq2",
    "lumi.plug.maeu01": "lumi.plug",
}


def spec_for(model: str | None) -> ModelSpec | None:
    if not model:
        return None
    model = model.rstrip("\x00").strip()
    return MODELS.get(ALIASES.get(model, model))


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a device and what it is called (zigbee2mqtt's vendor/model/description)."""

    manufacturer: str
    model_code: str
    model_name: str


def identity(model: str | None, manufacturer: str | None = None) -> Identity | None:
    """The human names of a known model; None for a model we do not know."""
    spec = spec_for(model)
    if spec is None:
        return None
    return Identity(spec.vendor, spec.model_code, spec.name or spec.description)


#: zigbee2mqtt's Aqara battery curve ("3V_2850_3000"): linear from 2.85 V (0 %) to 3.0 V
#: (100 %), clamped, rounded to a whole percent.
BATTERY_EMPTY_MV = 2850
BATTERY_FULL_MV = 3000


def battery_percent(millivolts: float) -> float:
    mv = min(max(millivolts, BATTERY_EMPTY_MV), BATTERY_FULL_MV)
    # a whole percent, halves up (JavaScript's Math.round)
    return float(int((mv - BATTERY_EMPTY_MV) * 100 / (BATTERY_FULL_MV - BATTERY_EMPTY_MV) + 0.5))


def _with_battery(
    spec: ModelSpec | None, out: list[tuple[str, object]]
) -> list[tuple[str, object]]:
    """A battery device that sent its voltage but no percentage: the percentage from it."""
    if spec is None or not spec.sleepy or any(m == "battery" for m, _ in out):
        return out
    volts = next((v for m, v in out if m == "voltage" and isinstance(v, float)), None)
    if volts is None:
        return out
    return [*out, ("battery", battery_percent(volts * 1000))]


def tlv_metrics(model: str | None, tlv: Tlv) -> list[tuple[str, object]]:
    """The metrics a heartbeat carries for ``model`` (unknown models: the common tags)."""
    spec = spec_for(model)
    out: list[tuple[str, object]] = []
    for tag, value in tlv.values.items():
        conv = spec.tags.get(tag) if spec is not None else None
        if conv is None:
            if spec is not None and tag in spec.ignore_common:
                continue
            conv = COMMON_TAGS.get(tag)
        if conv is not None:
            out += conv(value)
    return _with_battery(spec, out)


def mija_metrics(model: str | None, value: zt.ZclValue) -> list[tuple[str, object]]:
    """0xFF02 struct of old Mija devices: element 2 is the battery in mV."""
    if not isinstance(value, list) or len(value) < 2:
        return []
    _, mv = value[1]
    x = _num(mv)
    return [] if x is None else _with_battery(spec_for(model), [("voltage", round(x / 1000, 3))])
