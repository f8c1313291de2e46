"""The whole config file as one frozen object (:class:`Config`), and the bind-key files
``migw ble key`` keeps beside it in the state directory."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config.automations import (
    AutomationDef,
    LocationSection,
    PresenceSection,
    check_references,
)
from gateway.config.fields import ble_device_id
from gateway.config.sections import (
    ApiSection,
    BleSection,
    DeviceEntry,
    GatewaySection,
    GpioSection,
    HomeAssistantSection,
    StoreSection,
    UpstreamSection,
    ZigbeeSection,
)


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewaySection = field(default_factory=GatewaySection)
    store: StoreSection = field(default_factory=StoreSection)
    api: ApiSection = field(default_factory=ApiSection)
    upstream: UpstreamSection = field(default_factory=UpstreamSection)
    homeassistant: HomeAssistantSection = field(default_factory=HomeAssistantSection)
    ble: BleSection = field(default_factory=BleSection)
    zigbee: ZigbeeSection = field(default_factory=ZigbeeSection)
    gpio: GpioSection = field(default_factory=GpioSection)
    #: Names and rooms per device id (``migw name`` keeps its own in the state dir).
    devices: dict[str, DeviceEntry] = field(default_factory=dict)
    location: LocationSection = field(default_factory=LocationSection)
    presence: PresenceSection = field(default_factory=PresenceSection)
    automations: tuple[AutomationDef, ...] = ()

    def __post_init__(self) -> None:
        check_references(self)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


#: ``migw ble key`` keeps bind keys here, one file per MAC, under the state directory.
KEY_DIR_NAME = "ble-keys"


def key_dir(cfg: Config) -> Path:
    return Path(cfg.gateway.state_dir) / KEY_DIR_NAME


def with_key_dir(cfg: Config) -> Config:
    """``cfg`` with the key files ``migw ble key`` wrote (``<state_dir>/ble-keys/<MAC>``)
    added to ``ble.key_files``; a MAC with a key in the config keeps the config's."""
    try:
        files = sorted(p for p in key_dir(cfg).iterdir() if p.is_file())
    except OSError:
        return cfg
    configured = {ble_device_id(m) for m in (*cfg.ble.keys, *cfg.ble.key_files)}
    extra = {
        p.name: p
        for p in files
        if ble_device_id(p.name) is not None and ble_device_id(p.name) not in configured
    }
    if not extra:
        return cfg
    ble = dataclasses.replace(cfg.ble, key_files={**cfg.ble.key_files, **extra})
    return cfg.replace(ble=ble)
