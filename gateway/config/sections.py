"""The sections of the config file but automations: [gateway], [store], [api], the two broker
sections ([upstream], [homeassistant]), [ble], [zigbee], [gpio] and [devices]. The loader
walks their type hints; each class checks its own fields in ``__post_init__``."""

from __future__ import annotations

import re
import socket
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Literal

from drivers.gpio import PinKind, PinSpec
from gateway.config.fields import (
    FieldError,
    Secret,
    bcm_pin,
    ble_device_id,
    is_mqtt_url,
    non_negative,
    positive,
    valid_port,
)
from gateway.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/migw/config.toml")
DEFAULT_STATE_DIR = Path("/var/lib/migw")
#: The highest ``[gateway] max_devices`` (~600 bytes of memory a device: ~60 MB).
MAX_DEVICES_LIMIT = 100_000


def _default_gateway_id() -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", socket.gethostname().lower()).strip("-")
    return name or "migw"


@dataclass(frozen=True, slots=True)
class GatewaySection:
    #: Identifier in MQTT topics and discovery: [a-z0-9_-], defaults to the host name.
    id: str = field(default_factory=_default_gateway_id)
    state_dir: Path = DEFAULT_STATE_DIR
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Devices kept at most (those in the database count): a new device past it is refused,
    #: its messages dropped and counted. A home has tens to a few hundred; the bound keeps a
    #: flood of spoofed BLE addresses (``[ble] join = "all"``) from exhausting memory.
    max_devices: int = 2000

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9_-]{1,64}", self.id):
            raise FieldError("id", "must be 1-64 characters of a-z, 0-9, '_' or '-'")
        if not 1 <= self.max_devices <= MAX_DEVICES_LIMIT:
            raise FieldError("max_devices", f"must be between 1 and {MAX_DEVICES_LIMIT}")


@dataclass(frozen=True, slots=True)
class StoreSection:
    #: Readings kept in the recent history table (oldest pruned first).
    history_max_rows: int = 200_000
    #: A write transaction commits after at most this many rows ...
    batch_max_rows: int = 500
    #: ... or this many milliseconds, whichever comes first.
    batch_max_ms: int = 100

    def __post_init__(self) -> None:
        positive(self.history_max_rows, "history_max_rows")
        if self.history_max_rows > 100_000_000:
            raise FieldError("history_max_rows", "must be at most 100000000")
        if not 1 <= self.batch_max_rows <= 500:
            raise FieldError("batch_max_rows", "must be between 1 and 500")
        if not 1 <= self.batch_max_ms <= 100:
            raise FieldError("batch_max_ms", "must be between 1 and 100")


@dataclass(frozen=True, slots=True)
class ApiSection:
    enabled: bool = True
    listen: str = "0.0.0.0"  # noqa: S104 - a LAN API on a gateway; every route but health needs a token
    port: int = 8380
    max_body_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        valid_port(self.port)
        if self.max_body_bytes < 1024:
            raise FieldError("max_body_bytes", "must be >= 1024")


@dataclass(frozen=True, slots=True)
class BrokerFields:
    """Where a broker is and how to log in: the keys both broker sections ([upstream],
    [homeassistant]) share, and the sync's connection settings build on."""

    #: mqtt://host:1883 or mqtts://host:8883. [upstream]: empty disables the uplink;
    #: [homeassistant]: a second (LAN) broker for discovery and state, empty uses upstream's.
    url: str = ""
    _: KW_ONLY
    username: str = ""
    password: Secret | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: Plaintext MQTT to a broker that is not loopback needs this.
    allow_insecure: bool = False

    def check_broker(self) -> None:
        """The URL's form, and one password source at most (the sections call it)."""
        if self.url and not is_mqtt_url(self.url):
            raise FieldError("url", "must look like mqtt://host:1883 or mqtts://host:8883")
        if self.password is not None and self.password_file is not None:
            raise FieldError("password_file", "give password or password_file, not both")


@dataclass(frozen=True, slots=True)
class UpstreamSection(BrokerFields):
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str = ""
    topic_prefix: str = "migw"
    keepalive: int = 60
    batch_max_readings: int = 1000
    batch_max_ms: int = 1000
    compress: bool = False
    outbox_max_bytes: int = 512 * 1024 * 1024
    outbox_ttl_days: float = 30.0
    outbox_full: Literal["drop_oldest", "reject_new"] = "drop_oldest"
    #: Backlog readings per second while draining after an outage (live data comes first).
    drain_rate: int = 5000
    #: Largest telemetry message; lower it to the broker's limit with MQTT 3.1.1 (MQTT 5
    #: brokers announce theirs). Bigger batches are split.
    max_message_bytes: int = 256 * 1024
    #: Reconnect backoff: capped exponential with full jitter, reset after a stable period.
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    reconnect_stable_s: float = 30.0

    def __post_init__(self) -> None:
        self.check_broker()
        if not re.fullmatch(r"[A-Za-z0-9_/-]{1,64}", self.topic_prefix):
            raise FieldError("topic_prefix", "must be letters, digits, '_', '-' or '/'")
        positive(self.batch_max_readings, "batch_max_readings")
        positive(self.batch_max_ms, "batch_max_ms")
        positive(self.outbox_max_bytes, "outbox_max_bytes")
        positive(self.drain_rate, "drain_rate")
        if self.outbox_ttl_days <= 0:
            raise FieldError("outbox_ttl_days", "must be > 0")
        if self.max_message_bytes < 1024:
            raise FieldError("max_message_bytes", "must be >= 1024")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise FieldError("reconnect_min_s", "need 0 < reconnect_min_s <= reconnect_max_s")
        positive(self.reconnect_stable_s, "reconnect_stable_s")
        positive(self.keepalive, "keepalive")


@dataclass(frozen=True, slots=True)
class HomeAssistantSection(BrokerFields):
    enabled: bool = True
    discovery_prefix: str = "homeassistant"
    #: The oldest Home Assistant release that reads this discovery (docs/mqtt.md): device
    #: classes it does not know yet are left out.
    min_version: str = "2024.3"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"20\d\d\.\d{1,2}", self.min_version):
            raise FieldError("min_version", "must be a Home Assistant release like 2024.3")
        self.check_broker()
        if not re.fullmatch(r"[A-Za-z0-9_/-]{1,64}", self.discovery_prefix):
            raise FieldError("discovery_prefix", "must be letters, digits, '_', '-' or '/'")


@dataclass(frozen=True, slots=True)
class BleSection:
    enabled: bool = False
    adapter: str = "hci0"
    #: Passive scanning (BlueZ advertisement monitor); falls back to active with a log line.
    passive: bool = True
    #: Bind keys per MAC: 32 hex (MiBeacon v4/v5, BTHome, pvvx) or 24 hex (legacy v2/v3).
    keys: dict[str, Secret] = field(default_factory=dict)
    #: Files holding one key each, per MAC, for keys kept out of the config.
    key_files: dict[str, Path] = field(default_factory=dict)
    #: Repeats of one frame within this many seconds are dropped as duplicates.
    dedup_window_s: float = 60.0
    #: A non-sleepy BLE device silent for this long is unavailable.
    unavailable_after_s: float = 900.0
    #: Which sensors in range become devices: "allowlisted" (those in ``allow``, those with a
    #: bind key and those named in [devices]) or "all" (every decodable sensor in range).
    join: Literal["all", "allowlisted"] = "allowlisted"
    #: MACs always added (with join = "allowlisted").
    allow: tuple[str, ...] = ()
    #: MACs never added, whatever ``join`` says.
    ignore: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        non_negative(self.dedup_window_s, "dedup_window_s")
        positive(self.unavailable_after_s, "unavailable_after_s")
        for name in ("allow", "ignore"):
            for i, mac in enumerate(getattr(self, name)):
                if ble_device_id(mac) is None:
                    raise FieldError(
                        f"{name}[{i}]", f"{mac!r} is not a MAC address (A4:C1:38:12:34:56)"
                    )


@dataclass(frozen=True, slots=True)
class ZigbeeSection:
    enabled: bool = False
    #: Prefer /dev/serial/by-id/... : it survives replugging and reboots.
    port: str = ""
    baud: int = 115200
    rtscts: bool = False
    #: 11-26; used when forming a new network only.
    channel: int = 15
    #: Send the CC2652 bootloader-skip sequence on connect.
    skip_bootloader: bool = True
    unavailable_after_s: float = 7200.0
    #: Seconds between automatic network backups into the state dir.
    backup_interval_s: float = 86400.0
    #: Aqara motion sensors send only "motion": "no motion" is reported after this many
    #: quiet seconds (the sensor re-arms after about 60 s).
    motion_clear_s: float = 90.0

    def __post_init__(self) -> None:
        positive(self.motion_clear_s, "motion_clear_s")
        positive(self.baud, "baud")
        positive(self.unavailable_after_s, "unavailable_after_s")
        positive(self.backup_interval_s, "backup_interval_s")
        if not 11 <= self.channel <= 26:
            raise FieldError("channel", "must be 11-26")
        if self.enabled and not self.port:
            raise FieldError("port", "is required when zigbee is enabled")


#: What a ``[[gpio.devices]]`` entry is: button, contact, motion, relay or led.
GpioKind = PinKind


@dataclass(frozen=True, slots=True)
class GpioDevice(PinSpec):
    """One ``[[gpio.devices]]`` entry: the GPIO driver's :class:`~drivers.gpio.PinSpec` (its
    fields are the keys, documented there), checked here."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9_-]{1,48}", self.name):
            raise FieldError("name", "must be 1-48 characters of a-z, 0-9, '_' or '-'")
        bcm_pin(self.pin)
        non_negative(self.bounce_s, "bounce_s")
        positive(self.hold_s, "hold_s")
        positive(self.multi_press_s, "multi_press_s")
        positive(self.clear_s, "clear_s")


@dataclass(frozen=True, slots=True)
class GpioSection:
    devices: tuple[GpioDevice, ...] = ()

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        names: set[str] = set()
        for i, dev in enumerate(self.devices):
            key = str(bcm_pin(dev.pin))
            if key in seen:
                raise ConfigError(
                    f"pin {dev.pin} is already used by {seen[key]!r}",
                    path=f"gpio.devices[{i}].pin",
                )
            seen[key] = dev.name
            if dev.name in names:
                raise ConfigError(f"duplicate name {dev.name!r}", path=f"gpio.devices[{i}].name")
            names.add(dev.name)


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """``[devices."ble-a4c1381a2b3c"]``: what the home owner calls a device, and where it is."""

    name: str = ""
    room: str = ""

    def __post_init__(self) -> None:
        for key in ("name", "room"):
            value = getattr(self, key)
            if len(value) > 64 or not value.isprintable():
                raise FieldError(key, "must be at most 64 printable characters")
