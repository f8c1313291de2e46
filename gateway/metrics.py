"""Metric names, units and types (docs/metrics.md): one table for readings, API, MQTT and
Home Assistant discovery. They follow Home Assistant's device classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["float", "int", "bool"]


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    unit: str | None
    kind: Kind
    #: Home Assistant device class (sensor or binary_sensor), None where HA has none.
    device_class: str | None
    diagnostic: bool = False


def _m(
    name: str, unit: str | None, kind: Kind, device_class: str | None, diagnostic: bool = False
) -> MetricDef:
    return MetricDef(name, unit, kind, device_class, diagnostic)


METRICS: dict[str, MetricDef] = {
    m.name: m
    for m in (
        _m("temperature", "°C", "float", "temperature"),
        _m("humidity", "%", "float", "humidity"),
        _m("pressure", "hPa", "float", "atmospheric_pressure"),
        _m("dew_point", "°C", "float", "temperature"),
        _m("battery", "%", "float", "battery"),
        _m("voltage", "V", "float", "voltage"),
        _m("illuminance", "lx", "float", "illuminance"),
        _m("moisture", "%", "float", "moisture"),
        _m("conductivity", "µS/cm", "float", "conductivity"),
        _m("formaldehyde", "mg/m³", "float", None),
        _m("carbon_dioxide", "ppm", "float", "carbon_dioxide"),
        _m("pm25", "µg/m³", "float", "pm25"),
        _m("pm10", "µg/m³", "float", "pm10"),
        _m("volatile_organic_compounds", "µg/m³", "float", "volatile_organic_compounds"),
        _m("power", "W", "float", "power"),
        _m("energy", "kWh", "float", "energy"),
        _m("current", "A", "float", "current"),
        _m("device_temperature", "°C", "float", "temperature", diagnostic=True),
        _m("mass", "kg", "float", "weight"),
        _m("impedance", "Ω", "float", None),
        _m("motion", None, "bool", "motion"),
        _m("occupancy", None, "bool", "occupancy"),
        _m("opening", None, "bool", "opening"),
        _m("light", None, "bool", "light"),
        _m("water_leak", None, "bool", "moisture"),
        _m("smoke", None, "bool", "smoke"),
        _m("battery_low", None, "bool", "battery"),
        _m("switch", None, "bool", None),
        _m("no_motion_time", "s", "float", "duration"),
        _m("rssi", "dBm", "int", "signal_strength", diagnostic=True),
        _m("linkquality", None, "int", None, diagnostic=True),
    )
}


def base_name(metric: str) -> str:
    """``temperature_1`` (a repeated BTHome object) -> ``temperature``."""
    head, sep, tail = metric.rpartition("_")
    if sep and tail.isdigit() and head in METRICS:
        return head
    return metric


def metric_def(metric: str) -> MetricDef | None:
    return METRICS.get(base_name(metric))


def unit_of(metric: str) -> str | None:
    m = metric_def(metric)
    return m.unit if m is not None else None
