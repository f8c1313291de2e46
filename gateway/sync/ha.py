"""Home Assistant MQTT discovery as pure code: which entities a device has, and their
retained config payloads. Units and device classes come from :mod:`gateway.metrics`.

Topics: ``{discovery_prefix}/{component}/{node}/{object}/config`` with ``node`` the
gateway's unique prefix and ``object`` the sanitised device id plus metric. Every entity
has a stable ``unique_id``; each device block names the gateway as ``via_device``.

Event entities come from the drivers' event tables (``drivers/*/events.py``): one per event
kind and button, announcing exactly the actions the decoder sends for the model, each on its
own topic ``{event topic of the device}/{event}[/{button}]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from drivers.ble.events import TABLE as BLE_EVENTS
from drivers.events import EventSpec, EventTable
from drivers.gpio.events import TABLE as GPIO_EVENTS
from drivers.zigbee.events import TABLE as ZIGBEE_EVENTS
from gateway.metrics import OLDEST_HA, ha_device_class, metric_def
from gateway.model import Device, DeviceStatus, Event, Transport
from gateway.sync.payload import Topics

#: What each transport's models send as events (drivers/*/events.py).
EVENT_TABLES: dict[Transport, EventTable] = {
    Transport.BLE: BLE_EVENTS,
    Transport.ZIGBEE: ZIGBEE_EVENTS,
    Transport.GPIO: GPIO_EVENTS,
}
#: Seconds between announcing a new event entity and publishing its event: Home Assistant
#: subscribes to a new entity's topic after a debounce (0.1 s, 1 s at its start).
NEW_ENTITY_SETTLE_S = 1.5
#: Home Assistant's event entity device classes.
EVENT_DEVICE_CLASSES = frozenset({"button", "doorbell", "motion"})

_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]+")


def safe_id(text: str) -> str:
    """Discovery topic ids and unique_ids allow [a-zA-Z0-9_-]: ``a4:c1:38`` -> ``a4_c1_38``."""
    return _UNSAFE.sub("_", text).strip("_") or "x"


@dataclass(frozen=True, slots=True)
class Discovery:
    topic: str
    config: dict[str, Any]

    def payload(self) -> bytes:
        return json.dumps(self.config, separators=(",", ":"), ensure_ascii=False).encode()


def gateway_identifier(gateway: str) -> str:
    return f"migw_{safe_id(gateway)}"


def device_identifier(gateway: str, device_id: str) -> str:
    return f"migw_{safe_id(gateway)}_{safe_id(device_id)}"


def gateway_entity(t: Topics) -> Discovery:
    """The gateway itself: a connectivity binary sensor on the status topic."""
    gid = gateway_identifier(t.gateway)
    return Discovery(
        f"{t.discovery_prefix}/binary_sensor/{gid}/status/config",
        {
            "name": "Uplink",
            "unique_id": f"{gid}_status",
            "device_class": "connectivity",
            "entity_category": "diagnostic",
            "state_topic": t.status,
            "payload_on": "online",
            "payload_off": "offline",
            "device": {
                "identifiers": [gid],
                "name": f"migw {t.gateway}",
                "manufacturer": "migw",
                "model": "mi-gateway",
            },
        },
    )


#: Manufacturer and human model where the driver names neither (custom firmwares, protocols
#: that do not say who made the device, GPIO kinds). The driver's manufacturer wins when it
#: names one, and its ``model_name``/``model_code`` attributes (Zigbee) for the model.
KNOWN_MODELS: dict[tuple[Transport, str], tuple[str, str]] = {
    (Transport.BLE, "pvvx"): ("pvvx", "Thermometer, pvvx custom firmware"),
    (Transport.BLE, "ATC1441"): ("atc1441", "Thermometer, ATC custom firmware"),
    (Transport.BLE, "BTHome"): ("BTHome", "BTHome v2 device"),
    (Transport.GPIO, "gpio-button"): ("GPIO", "Push button on a GPIO pin"),
    (Transport.GPIO, "gpio-contact"): ("GPIO", "Contact on a GPIO pin"),
    (Transport.GPIO, "gpio-motion"): ("GPIO", "PIR motion sensor on a GPIO pin"),
    (Transport.GPIO, "gpio-relay"): ("GPIO", "Relay on a GPIO pin"),
    (Transport.GPIO, "gpio-led"): ("GPIO", "LED on a GPIO pin"),
}


def _device_block(t: Topics, dev: Device) -> dict[str, Any]:
    block: dict[str, Any] = {
        "identifiers": [device_identifier(t.gateway, dev.id)],
        "name": dev.name or dev.id,
        "via_device": gateway_identifier(t.gateway),
    }
    known = KNOWN_MODELS.get((dev.transport, dev.model))
    manufacturer = dev.manufacturer or (known[0] if known else "")
    model = known[1] if known else dev.model
    name, code = dev.attrs.get("model_name", ""), dev.attrs.get("model_code", "")
    if name:  # the driver's human name and model code (Zigbee: xiaomi.identity)
        model = f"{name} ({code})" if code else name
    if model:
        block["model"] = model
    if manufacturer:
        block["manufacturer"] = manufacturer
    if dev.room:
        block["suggested_area"] = dev.room  # HA puts a new device in this area
    return block


def _availability(t: Topics, device_id: str) -> dict[str, Any]:
    return {
        "availability": [
            {"topic": t.status, "payload_available": "online", "payload_not_available": "offline"},
            {
                "topic": t.availability(device_id),
                "payload_available": "online",
                "payload_not_available": "offline",
            },
        ],
        "availability_mode": "all",
    }


def _is_bool(metric: str, value: object) -> bool:
    m = metric_def(metric)
    if m is not None:
        return m.kind == "bool"
    return isinstance(value, bool)  # a metric METRICS does not name: its value tells


def metric_entity(
    t: Topics,
    dev: Device,
    metric: str,
    *,
    commandable: bool,
    value: object = None,
    min_version: str = OLDEST_HA,
) -> Discovery:
    """One entity for one metric of a device: sensor, binary_sensor or (relay) switch.
    ``value`` (the latest) decides for a metric METRICS does not name: a boolean becomes a
    binary sensor, anything else a sensor without unit or class."""
    node = gateway_identifier(t.gateway)
    obj = f"{safe_id(dev.id)}_{safe_id(metric)}"
    uid = f"{device_identifier(t.gateway, dev.id)}_{safe_id(metric)}"
    m = metric_def(metric)
    key = json.dumps(metric)  # a safe Jinja string literal for the template
    config: dict[str, Any] = {
        "name": metric.replace("_", " ").capitalize(),
        "unique_id": uid,
        "state_topic": t.state(dev.id),
        "device": _device_block(t, dev),
        **_availability(t, dev.id),
    }
    if m is not None and m.diagnostic:
        config["entity_category"] = "diagnostic"
    device_class = ha_device_class(m, min_version) if m is not None else None
    if metric == "switch" and commandable:
        component = "switch"
        config.update(
            command_topic=t.command(dev.id),
            qos=1,
            payload_on='{"switch":true}',
            payload_off='{"switch":false}',
            state_on="ON",
            state_off="OFF",
            value_template="{{ 'ON' if value_json[%s] else 'OFF' }}" % key,  # noqa: UP031
        )
    elif _is_bool(metric, value):
        component = "binary_sensor"
        config.update(
            payload_on="ON",
            payload_off="OFF",
            value_template="{{ 'ON' if value_json[%s] else 'OFF' }}" % key,  # noqa: UP031
        )
        if device_class:
            config["device_class"] = device_class
    else:
        component = "sensor"
        config["value_template"] = "{{ value_json[%s] }}" % key  # noqa: UP031
        if m is not None:
            if m.unit:
                config["unit_of_measurement"] = m.unit
            if device_class:
                config["device_class"] = device_class
            if m.state_class:
                config["state_class"] = m.state_class
    return Discovery(f"{t.discovery_prefix}/{component}/{node}/{obj}/config", config)


def _event_suffix(event: str, button: int | None) -> str:
    return safe_id(event) if button is None else f"{safe_id(event)}_{button}"


def event_topic(t: Topics, device_id: str, event: str, button: int | None) -> str:
    """Each event entity has its own topic: HA's event entity takes every message on its
    topic, and would log any action it does not announce as invalid."""
    tail = safe_id(event) if button is None else f"{safe_id(event)}/{button}"
    return f"{t.event(device_id)}/{tail}"


def event_entity(
    t: Topics, dev: Device, spec: EventSpec, button: int | None, actions: Iterable[str] = ()
) -> Discovery:
    """The event entity of one event kind (and button) of a device; ``actions`` adds action
    types the table does not declare (seen from a model it does not know)."""
    node = gateway_identifier(t.gateway)
    suffix = _event_suffix(spec.event, button)
    name = spec.event.replace("_", " ").capitalize()
    config: dict[str, Any] = {
        "name": name if button is None else f"{name} {button}",
        "unique_id": f"{device_identifier(t.gateway, dev.id)}_{suffix}",
        "state_topic": event_topic(t, dev.id, spec.event, button),
        "event_types": list(dict.fromkeys((*spec.actions, *actions))),
        "device": _device_block(t, dev),
        **_availability(t, dev.id),
    }
    if spec.event in EVENT_DEVICE_CLASSES:
        config["device_class"] = spec.event
    return Discovery(f"{t.discovery_prefix}/event/{node}/{safe_id(dev.id)}_{suffix}/config", config)


def event_specs(dev: Device) -> tuple[EventSpec, ...]:
    """The event kinds (with their buttons) the device's model is known to send."""
    table = EVENT_TABLES.get(dev.transport)
    return table.specs(dev.model) if table is not None else ()


def event_spec(dev: Device, event: str, button: int | None) -> EventSpec:
    """The declaration of one event of a device, narrowed to its button: from the model's
    table, else from what the event kind can carry, else nothing known yet (no action)."""
    table = EVENT_TABLES.get(dev.transport)
    spec = table.spec(dev.model, event, button) if table is not None else None
    return spec if spec is not None else EventSpec(event, (), (button,))


class EventCatalog:
    """The event entities announced per device, and the action types each announced: an
    event is published only after an entity that announces its action (re-announced with
    the action added when a model sends one its table does not declare)."""

    def __init__(self) -> None:
        self._announced: dict[str, dict[tuple[str, int | None], tuple[str, ...]]] = {}

    def forget(self) -> None:
        self._announced.clear()

    def device(self, t: Topics, dev: Device) -> list[Discovery]:
        """Entities of every event the model is known to send, not announced yet."""
        seen = self._announced.setdefault(dev.id, {})
        out = []
        for spec in event_specs(dev):
            for button in spec.buttons:
                if (spec.event, button) not in seen:
                    seen[(spec.event, button)] = spec.actions
                    out.append(event_entity(t, dev, spec, button))
        return out

    def event(
        self, t: Topics, dev: Device, event: str, action: str, button: int | None
    ) -> list[Discovery]:
        """What to (re-)announce before publishing this event: nothing when its entity
        already announces the action."""
        seen = self._announced.setdefault(dev.id, {})
        known = seen.get((event, button))
        if known is not None and action in known:
            return []
        spec = event_spec(dev, event, button)
        extra = tuple(a for a in (*(known or ()), action) if a not in spec.actions)
        seen[(event, button)] = (*spec.actions, *extra)
        return [event_entity(t, dev, spec, button, extra)]


def device_entities(
    t: Topics,
    dev: Device,
    metrics: Iterable[str],
    *,
    commandable: bool,
    values: Mapping[str, object] | None = None,
    min_version: str = OLDEST_HA,
) -> list[Discovery]:
    """The metric entities of ``metrics`` (events: :class:`EventCatalog`)."""
    vals = values or {}
    return [
        metric_entity(
            t, dev, m, commandable=commandable, value=vals.get(m), min_version=min_version
        )
        for m in sorted(set(metrics))
    ]


def availability_payload(status: DeviceStatus) -> bytes:
    return b"offline" if status is DeviceStatus.UNAVAILABLE else b"online"


def state_payload(values: dict[str, Any]) -> bytes:
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def event_message(t: Topics, ev: Event) -> tuple[str, bytes]:
    """Topic and payload of one event for its event entity: ``event_type``, ``button`` and
    the event's properties (a dimmer's ``steps``) as event attributes."""
    body: dict[str, Any] = {"event_type": ev.action}
    if ev.button is not None:
        body["button"] = ev.button
    for name, value in ev.properties:
        body.setdefault(name, value)
    payload = json.dumps(body, separators=(",", ":")).encode()
    return event_topic(t, ev.device_id, ev.event, ev.button), payload
