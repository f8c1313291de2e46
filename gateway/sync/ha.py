"""Home Assistant MQTT discovery as pure code: which entities a device has, and their
retained config payloads. Units and device classes come from :mod:`gateway.metrics`.

Topics: ``{discovery_prefix}/{component}/{node}/{object}/config`` with ``node`` the
gateway's unique prefix and ``object`` the sanitised device id plus metric. Every entity
has a stable ``unique_id``; each device block names the gateway as ``via_device``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.metrics import metric_def
from gateway.model import Device, DeviceStatus
from gateway.sync.payload import Topics

#: Button actions an ``event`` entity announces (docs/metrics.md).
EVENT_TYPES = ("single", "double", "triple", "long", "release", "hold")

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


def _device_block(t: Topics, dev: Device) -> dict[str, Any]:
    block: dict[str, Any] = {
        "identifiers": [device_identifier(t.gateway, dev.id)],
        "name": dev.name or dev.id,
        "via_device": gateway_identifier(t.gateway),
    }
    if dev.model:
        block["model"] = dev.model
    if dev.manufacturer:
        block["manufacturer"] = dev.manufacturer
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


def metric_entity(t: Topics, dev: Device, metric: str, *, commandable: bool) -> Discovery:
    """One entity for one metric of a device: sensor, binary_sensor or (relay) switch."""
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
    if metric == "switch" and commandable:
        component = "switch"
        config.update(
            command_topic=t.command(dev.id),
            payload_on='{"switch":true}',
            payload_off='{"switch":false}',
            state_on="ON",
            state_off="OFF",
            value_template="{{ 'ON' if value_json[%s] else 'OFF' }}" % key,  # noqa: UP031
        )
    elif m is not None and m.kind == "bool":
        component = "binary_sensor"
        config.update(
            payload_on="ON",
            payload_off="OFF",
            value_template="{{ 'ON' if value_json[%s] else 'OFF' }}" % key,  # noqa: UP031
        )
        if m.device_class:
            config["device_class"] = m.device_class
    else:
        component = "sensor"
        config["value_template"] = "{{ value_json[%s] }}" % key  # noqa: UP031
        if m is not None:
            if m.unit:
                config["unit_of_measurement"] = m.unit
            if m.device_class:
                config["device_class"] = m.device_class
            config["state_class"] = "total_increasing" if m.name == "energy" else "measurement"
    return Discovery(f"{t.discovery_prefix}/{component}/{node}/{obj}/config", config)


def event_entity(t: Topics, dev: Device) -> Discovery:
    node = gateway_identifier(t.gateway)
    uid = f"{device_identifier(t.gateway, dev.id)}_button"
    return Discovery(
        f"{t.discovery_prefix}/event/{node}/{safe_id(dev.id)}_button/config",
        {
            "name": "Button",
            "unique_id": uid,
            "state_topic": t.event(dev.id),
            "event_types": list(EVENT_TYPES),
            "device_class": "button",
            "device": _device_block(t, dev),
            **_availability(t, dev.id),
        },
    )


def device_entities(
    t: Topics, dev: Device, metrics: Iterable[str], *, events: bool, commandable: bool
) -> list[Discovery]:
    out = [metric_entity(t, dev, m, commandable=commandable) for m in sorted(set(metrics))]
    if events:
        out.append(event_entity(t, dev))
    return out


def availability_payload(status: DeviceStatus) -> bytes:
    return b"offline" if status is DeviceStatus.UNAVAILABLE else b"online"


def state_payload(values: dict[str, Any]) -> bytes:
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def event_payload(action: str, button: int | None) -> bytes:
    body: dict[str, Any] = {"event_type": action}
    if button is not None:
        body["button"] = button
    return json.dumps(body, separators=(",", ":")).encode()
