"""Metric names, units and types (docs/metrics.md): one table for readings, API, MQTT and
Home Assistant discovery. They follow Home Assistant's device classes.

Every metric a decoder can emit (``drivers/``) has an entry: ``tests/test_metrics.py`` walks
the decoders' tables and inputs against :data:`METRICS`, and ``make interop`` checks each
entry's unit, device class and state class against Home Assistant's own tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["float", "int", "bool", "text"]
StateClass = Literal["measurement", "total", "total_increasing"]

#: The oldest Home Assistant release discovery is written for (docs/mqtt.md): device
#: classes newer than ``homeassistant.min_version`` are left out of discovery.
OLDEST_HA = "2024.3"


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    unit: str | None
    kind: Kind
    #: Home Assistant device class (sensor or binary_sensor), None where HA has none.
    device_class: str | None
    diagnostic: bool = False
    #: Home Assistant state class of a numeric sensor (None: not a statistic).
    state_class: StateClass | None = None
    #: The first Home Assistant release that knows ``device_class`` ("" = before OLDEST_HA).
    class_since: str = ""


def _m(
    name: str,
    unit: str | None,
    kind: Kind,
    device_class: str | None,
    diagnostic: bool = False,
    state_class: StateClass | None = "measurement",
    since: str = "",
) -> MetricDef:
    if kind in ("bool", "text"):
        state_class = None
    return MetricDef(name, unit, kind, device_class, diagnostic, state_class, since)


def _b(name: str, device_class: str | None = None, diagnostic: bool = False) -> MetricDef:
    return _m(name, None, "bool", device_class, diagnostic)


_TOTAL: StateClass = "total_increasing"

METRICS: dict[str, MetricDef] = {
    m.name: m
    for m in (
        # --- docs/metrics.md ----------------------------------------------------------------
        _m("temperature", "°C", "float", "temperature"),
        _m("humidity", "%", "float", "humidity"),
        _m("pressure", "hPa", "float", "atmospheric_pressure"),
        _m("dew_point", "°C", "float", "temperature"),
        _m("battery", "%", "float", "battery"),
        _m("voltage", "V", "float", "voltage"),
        _m("illuminance", "lx", "float", "illuminance"),
        _m("moisture", "%", "float", "moisture"),
        _m("conductivity", "µS/cm", "float", "conductivity", since="2024.8"),
        _m("formaldehyde", "mg/m³", "float", None),
        _m("carbon_dioxide", "ppm", "float", "carbon_dioxide"),
        _m("pm25", "µg/m³", "float", "pm25"),
        _m("pm10", "µg/m³", "float", "pm10"),
        _m("volatile_organic_compounds", "µg/m³", "float", "volatile_organic_compounds"),
        _m("power", "W", "float", "power"),
        _m("energy", "kWh", "float", "energy", state_class=_TOTAL),
        _m("current", "A", "float", "current"),
        _m("device_temperature", "°C", "float", "temperature", diagnostic=True),
        _m("mass", "kg", "float", "weight"),
        _m("mass_non_stabilized", "kg", "float", "weight"),
        _m("impedance", "Ω", "float", None),
        _m("impedance_low", "Ω", "float", None),
        _m("no_motion_time", "s", "float", "duration"),
        _m("rssi", "dBm", "int", "signal_strength", diagnostic=True),
        _m("linkquality", None, "int", None, diagnostic=True),
        # --- BTHome numbers (bthome_objects.txt units) ---------------------------------------
        _m("acceleration", "m/s²", "float", None),
        _m("channel", None, "int", None),
        _m("count", None, "int", None),
        _m("direction", "°", "float", None),
        _m("distance", "m", "float", "distance"),
        _m("duration", "s", "float", "duration"),
        _m("gas", "m³", "float", "gas", state_class=_TOTAL),
        _m("gyroscope", "°/s", "float", None),
        _m("light_level", None, "int", None),
        _m("precipitation", "mm", "float", "precipitation", state_class=_TOTAL),
        _m("rotation", "°", "float", None),
        _m("rotational_speed", "rpm", "int", None),
        _m("settings_revision", None, "int", None, diagnostic=True, state_class=None),
        _m("speed", "m/s", "float", "speed"),
        _m("timestamp", None, "int", None, state_class=None),
        _m("uv_index", None, "float", None),
        _m("volume", "L", "float", "volume", state_class=_TOTAL),
        _m("volume_flow_rate", "m³/h", "float", "volume_flow_rate"),
        _m("volume_storage", "L", "float", "volume_storage"),
        _m("water", "L", "float", "water", state_class=_TOTAL),
        _m("text", None, "text", None),
        _m("raw", None, "text", None),
        # --- MiBeacon numbers and texts ------------------------------------------------------
        _m("consumable", "%", "int", None),
        _m("counter", None, "int", None, state_class=_TOTAL),
        _m("duration_cleared", "min", "int", "duration"),
        _m("duration_detected", "min", "int", "duration"),
        _m("heart_rate", "bpm", "int", None),
        _m("key_id", None, "int", None, diagnostic=True, state_class=None),
        _m("mode", None, "int", None, state_class=None),
        _m("pressure_not_present_duration", "s", "int", "duration"),
        _m("pressure_present_duration", "s", "int", "duration"),
        _m("profile_id", None, "int", None, state_class=None),
        _m("score", None, "int", None),
        _m("charging_state", None, "text", None),
        _m("lock_method", None, "text", None),
        # --- booleans: true = the device class's "on" ----------------------------------------
        _b("motion", "motion"),
        _b("occupancy", "occupancy"),
        _b("occupancy_close_range", "occupancy"),
        _b("presence", "presence"),
        _b("opening", "opening"),
        _b("door", "door"),
        _b("garage_door", "garage_door"),
        _b("window", "window"),
        _b("light", "light"),
        _b("water_leak", "moisture"),
        _b("smoke", "smoke"),
        _b("gas_detected", "gas"),
        _b("carbon_monoxide", "carbon_monoxide"),  # BTHome's binary CO alarm
        _b("battery_low", "battery"),
        _b("battery_charging", "battery_charging"),
        _b("cold", "cold"),
        _b("heat", "heat"),
        _b("connectivity", "connectivity"),
        _b("lock", "lock"),  # true = unlocked, as HA's lock class
        _b("moving", "moving"),
        _b("plug", "plug"),
        _b("power_on", "power"),
        _b("problem", "problem"),
        _b("running", "running"),
        _b("safety", "safety"),  # true = unsafe
        _b("sound", "sound"),
        _b("tamper", "tamper"),
        _b("vibration", "vibration"),
        _b("device_forcibly_removed", "tamper"),
        _b("pry_the_door", "tamper"),
        _b("door_left_open", "problem"),
        _b("door_stuck", "problem"),
        _b("alarm", "safety"),  # IAS zone alarm 1 of a zone type migw does not name
        _b("generic"),
        _b("switch"),
        _b("antilock"),
        _b("childlock"),
        _b("armed"),
        _b("asleep"),
        _b("fingerprint"),
        _b("knock_on_the_door"),
        _b("stabilized"),
        _b("toothbrush"),
        _b("wearing"),
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


def version_tuple(version: str) -> tuple[int, ...]:
    """``"2024.8"`` -> ``(2024, 8)``; ``"2024.3.3"`` -> ``(2024, 3, 3)``."""
    return tuple(int(p) for p in version.split("."))


def ha_device_class(m: MetricDef, min_version: str = OLDEST_HA) -> str | None:
    """The device class to announce to Home Assistant releases from ``min_version`` on:
    None when the class is newer than that (HA rejects a class it does not know)."""
    if m.class_since and version_tuple(m.class_since) > version_tuple(min_version):
        return None
    return m.device_class
