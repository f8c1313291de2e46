"""Standard clusters: ids, names and attribute -> metric conversions (pure, declarative).

Metric names and units are the gateway's (docs/metrics.md). A conversion returns the
metrics an attribute value stands for; non-values (0x8000, 0xFFFF ...) give nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from drivers.zigbee.zcl import types as zt

BASIC = 0x0000
POWER_CONFIGURATION = 0x0001
ON_OFF = 0x0006
ANALOG_INPUT = 0x000C
MULTISTATE_INPUT = 0x0012
ILLUMINANCE = 0x0400
TEMPERATURE = 0x0402
PRESSURE = 0x0403
HUMIDITY = 0x0405
OCCUPANCY = 0x0406
IAS_ZONE = 0x0500
METERING = 0x0702
ELECTRICAL_MEASUREMENT = 0x0B04
LUMI_MANUFACTURER = 0xFCC0

NAMES: dict[int, str] = {
    BASIC: "basic",
    POWER_CONFIGURATION: "power_configuration",
    0x0003: "identify",
    ON_OFF: "on_off",
    0x0008: "level_control",
    ANALOG_INPUT: "analog_input",
    MULTISTATE_INPUT: "multistate_input",
    0x0019: "ota",
    ILLUMINANCE: "illuminance",
    TEMPERATURE: "temperature",
    PRESSURE: "pressure",
    HUMIDITY: "humidity",
    OCCUPANCY: "occupancy",
    IAS_ZONE: "ias_zone",
    METERING: "metering",
    ELECTRICAL_MEASUREMENT: "electrical_measurement",
    LUMI_MANUFACTURER: "lumi_manufacturer",
}

Metrics = list[tuple[str, object]]
Conv = Callable[[int, zt.ZclValue], Metrics]


def _plain_number(type_id: int, v: zt.ZclValue) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or zt.is_non_value(type_id, v):
        return None
    return float(v)


def scaled(metric: str, factor: float, digits: int = 2) -> Conv:
    def conv(type_id: int, v: zt.ZclValue) -> Metrics:
        x = _plain_number(type_id, v)
        return [] if x is None else [(metric, round(x * factor, digits))]

    return conv


def boolean(metric: str, bit: int | None = None, invert: bool = False) -> Conv:
    def conv(type_id: int, v: zt.ZclValue) -> Metrics:
        if isinstance(v, bool):
            b = v
        elif isinstance(v, int) and not zt.is_non_value(type_id, v):
            b = bool(v & (1 << bit)) if bit is not None else bool(v)
        else:
            return []
        return [(metric, b != invert)]

    return conv


def _illuminance_log(type_id: int, v: zt.ZclValue) -> Metrics:
    """Spec encoding: 10000 * log10(lux) + 1 (0 means too dark to measure)."""
    x = _plain_number(type_id, v)
    if x is None:
        return []
    if x == 0:
        return [("illuminance", 0.0)]
    exponent = (x - 1) / 10000
    if not -300.0 <= exponent <= 300.0:  # far beyond any light (uint32 junk): never pow()
        return [("illuminance", math.inf)]  # implausible: dropped and counted as junk
    return [("illuminance", round(math.pow(10, exponent), 1))]


def _battery_percentage(type_id: int, v: zt.ZclValue) -> Metrics:
    x = _plain_number(type_id, v)
    return [] if x is None else [("battery", round(x / 2, 1))]  # 0.5 % units


#: (cluster, attribute) -> conversion, for attributes whose meaning does not depend on the
#: model. Model-specific meanings are in drivers.zigbee.zcl.interpret.
ATTRIBUTES: dict[tuple[int, int], Conv] = {
    (POWER_CONFIGURATION, 0x0020): scaled("voltage", 0.1, 1),  # 100 mV units
    (POWER_CONFIGURATION, 0x0021): _battery_percentage,
    (ON_OFF, 0x0000): boolean("switch"),
    (ILLUMINANCE, 0x0000): _illuminance_log,
    (TEMPERATURE, 0x0000): scaled("temperature", 0.01),
    (PRESSURE, 0x0000): scaled("pressure", 1.0, 1),  # hPa (0.1 kPa)
    (HUMIDITY, 0x0000): scaled("humidity", 0.01),
    (OCCUPANCY, 0x0000): boolean("occupancy", bit=0),
    (IAS_ZONE, 0x0002): boolean("alarm", bit=0),
}


#: Plausible ranges: a value outside is junk (lumi.weather sends -100 °C), dropped and counted.
RANGES: dict[str, tuple[float, float]] = {
    "temperature": (-60.0, 85.0),
    "humidity": (0.0, 100.0),
    "pressure": (300.0, 1100.0),
    "battery": (0.0, 100.0),
    "voltage": (0.0, 400.0),
    "illuminance": (0.0, 200_000.0),
    "power": (-50_000.0, 50_000.0),
    "energy": (0.0, 10_000_000.0),
    "current": (0.0, 100.0),
    "device_temperature": (-60.0, 150.0),
}


def plausible(metric: str, value: object) -> bool:
    rng = RANGES.get(metric)
    if rng is None or isinstance(value, bool) or not isinstance(value, int | float):
        return True
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return rng[0] <= value <= rng[1]
