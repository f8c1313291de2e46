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


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What a model's reports mean beyond the standard clusters."""

    model: str
    description: str
    tags: dict[int, Conv] = field(default_factory=dict)
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
        ModelSpec("lumi.sensor_ht", "Mi temperature and humidity sensor (WSDCGQ01LM)", _HT),
        ModelSpec("lumi.weather", "Aqara temperature, humidity, pressure (WSDCGQ11LM)", _WEATHER),
        # T1 (0xFCC0/0x00F7): tag 0x66 is already hPa (zha vector: 1001)
        ModelSpec(
            "lumi.sensor_ht.agl02",
            "Aqara temperature and humidity sensor T1 (WSDCGQ12LM)",
            {**_HT, 0x66: _scaled("pressure", 1, 2)},
        ),
        ModelSpec(
            "lumi.sensor_motion.aq2",
            "Aqara motion and illuminance sensor (RTCGQ11LM)",
            {0x0B: _scaled("illuminance", 1, 1)},
            motion_clear_s=90.0,
        ),
        # MCCGQ11LM: tag 0x64 is the contact, 1 = open (z2m: contact = value == 0)
        ModelSpec(
            "lumi.sensor_magnet.aq2",
            "Aqara door and window sensor (MCCGQ11LM)",
            {0x64: _boolean("opening")},
        ),
        ModelSpec("lumi.sensor_switch.aq2", "Aqara wireless mini switch (WXKG11LM)"),
        # SJCGQ11LM: tag 0x64 is the leak state but unreliable (z2m ignores it): IAS decides
        ModelSpec("lumi.sensor_wleak.aq1", "Aqara water leak sensor (SJCGQ11LM)"),
        ModelSpec("lumi.plug", "Mi smart plug (ZNCZ02LM)", _PLUG, sleepy=False, switch_endpoint=1),
        ModelSpec(
            "lumi.ctrl_neutral1",
            "Aqara single-rocker wall switch, no neutral (QBKG04LM)",
            {0x64: _boolean("switch")},
            sleepy=False,
            switch_endpoint=2,
        ),
    )
}

#: Other names the same hardware reports (truncated model strings, newer revisions).
ALIASES: dict[str, str] = {
    "lumi.sens": "lumi.sensor_ht",
    "lumi.remote.b1acn01": "lumi.sensor_switch.aq2",
    "lumi.plug.maeu01": "lumi.plug",
    "lumi.magnet.agl02": "lumi.sensor_magnet.aq2",
}


def spec_for(model: str | None) -> ModelSpec | None:
    if not model:
        return None
    model = model.rstrip("\x00").strip()
    return MODELS.get(ALIASES.get(model, model))


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
    return out


def mija_metrics(value: zt.ZclValue) -> list[tuple[str, object]]:
    """0xFF02 struct of old Mija devices: element 2 is the battery in mV."""
    if not isinstance(value, list) or len(value) < 2:
        return []
    _, mv = value[1]
    x = _num(mv)
    return [] if x is None else [("voltage", round(x / 1000, 3))]
