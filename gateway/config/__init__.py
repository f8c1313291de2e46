"""Configuration: TOML (tomllib) validated into frozen typed objects.

The schema is the dataclasses of :mod:`.sections` (gateway, store, api, the broker sections,
ble, zigbee, gpio, devices) and :mod:`.automations` (location, presence, automations), put
together by :class:`~.schema.Config`. :mod:`.loader` walks their type hints, so an unknown key
or a wrong type is an error naming the key path (``gpio.devices[1].pin``) and its line.
Secrets are :class:`~.fields.Secret` values that never print, and may come from files
(``*_file`` keys). Callers import everything from ``gateway.config``.
"""

from __future__ import annotations

from gateway.config.automations import (
    ActionDef,
    ActionType,
    AutomationDef,
    ChoiceDef,
    ConditionDef,
    ConditionType,
    LocationSection,
    PresencePerson,
    PresenceSection,
    TriggerDef,
    TriggerType,
)
from gateway.config.fields import Secret, bcm_pin, ble_device_id, read_secret
from gateway.config.loader import from_dict, load, loads
from gateway.config.schema import KEY_DIR_NAME, Config, key_dir, with_key_dir
from gateway.config.sections import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_STATE_DIR,
    ApiSection,
    BleSection,
    BrokerFields,
    DeviceEntry,
    GatewaySection,
    GpioDevice,
    GpioKind,
    GpioSection,
    HomeAssistantSection,
    StoreSection,
    UpstreamSection,
    ZigbeeSection,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_STATE_DIR",
    "KEY_DIR_NAME",
    "ActionDef",
    "ActionType",
    "ApiSection",
    "AutomationDef",
    "BleSection",
    "BrokerFields",
    "ChoiceDef",
    "ConditionDef",
    "ConditionType",
    "Config",
    "DeviceEntry",
    "GatewaySection",
    "GpioDevice",
    "GpioKind",
    "GpioSection",
    "HomeAssistantSection",
    "LocationSection",
    "PresencePerson",
    "PresenceSection",
    "Secret",
    "StoreSection",
    "TriggerDef",
    "TriggerType",
    "UpstreamSection",
    "ZigbeeSection",
    "bcm_pin",
    "ble_device_id",
    "from_dict",
    "key_dir",
    "load",
    "loads",
    "read_secret",
    "with_key_dir",
]
