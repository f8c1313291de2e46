"""``migw doctor``: field checks, each pass/warn/fail with a concrete fix hint.

Checks: config valid; the service and its API; the API token file; the Zigbee serial port
(present, permitted, answering a ZNP ping); the BLE adapter (present, unblocked, powered) and
BlueZ (version, passive scanning); gpiochip access; the MQTT broker (TCP, TLS handshake,
MQTT login); clock synchronised; disk space for the outbox; state database integrity; the
systemd unit. Exit code 1 when any check fails. Results stream as each check finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import grp
import os
import pwd
import re
import shutil
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.api.token import TokenError, file_mode, read_token, token_path
from gateway.cli.base import CliContext, cli, json_option, pass_ctx
from gateway.cli.client import (
    ApiClient,
    ApiFailure,
    ServiceDown,
    Target,
    console,
    human_bytes,
    print_json,
    resolve,
)
from gateway.clock import clock_synchronized
from gateway.config import DEFAULT_CONFIG_PATH, Config, read_secret
from gateway.errors import GatewayError
from gateway.store import open_readonly

#: Every check must finish within this many seconds.
CHECK_TIMEOUT_S = 20.0
#: The stick must answer a SYS_PING within this many seconds (per attempt).
PING_TIMEOUT_S = 1.0
PING_ATTEMPTS = 2
BOOTLOADER_WAIT_S = 1.0
BROKER_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 5.0
#: Free space below this fails; below the outbox limit warns.
DISK_MIN_BYTES = 100 * 1024 * 1024
#: Passive BLE scanning (advertisement monitor) needs BlueZ >= 5.56 with experimental on.
BLUEZ_PASSIVE = (5, 56)
UNIT = "migw.service"

# Where the system is looked at (tests point these into a temporary tree).
SYS_BLUETOOTH = Path("/sys/class/bluetooth")
SYS_RFKILL = Path("/sys/class/rfkill")
DEV = Path("/dev")
SERIAL_BY_ID = Path("/dev/serial/by-id")
BLUEZ_MAIN_CONF = Path("/etc/bluetooth/main.conf")
SYSTEMD_RUN = Path("/run/systemd/system")


class Level(enum.StrEnum):
    PASS = "pass"  # noqa: S105 - a check result, not a password
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    level: Level
    detail: str
    hint: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "level": self.level.value,
            "detail": self.detail,
            "hint": self.hint,
        }


@dataclass(slots=True)
class Doctor:
    """What the checks share: the config, and what the running service says (if it runs)."""

    ctx: CliContext
    config: Config | None = None
    config_error: str = ""
    target: Target | None = None
    status: dict[str, Any] | None = None
    service_error: str = ""
    radios: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.status is not None

    def radio(self, name: str) -> dict[str, Any] | None:
        """The running service's view of a radio; it wins over the config file (a demo
        runs radios on simulated hardware that the config does not enable)."""
        return self.radios.get(name)

    @staticmethod
    def radio_ok(radio: dict[str, Any] | None) -> bool:
        return radio is not None and radio.get("health") == "ok"

    # ---------------------------------------------------------------------------- checks

    async def check_config(self) -> Check:
        path = self.ctx.config_path
        if path is None and DEFAULT_CONFIG_PATH.exists():
            path = DEFAULT_CONFIG_PATH
        try:
            self.target = resolve(self.ctx)
            self.config = self.target.config
            cfg = self.config
            read_secret(cfg.upstream.password, cfg.upstream.password_file, "upstream.password")
            for mac, key_file in cfg.ble.key_files.items():
                read_secret(None, key_file, f"ble.key_files.{mac}")
        except GatewayError as exc:
            self.config_error = str(exc)
            return Check(
                "config",
                Level.FAIL,
                f"{path or 'config'}: {exc}",
                "fix the key named above (see config.example.toml), then "
                f"`migw config check {path or 'FILE'}`",
            )
        if path is None:
            return Check(
                "config",
                Level.WARN,
                f"no config file ({DEFAULT_CONFIG_PATH} is missing): built-in defaults",
                f"copy config.example.toml to {DEFAULT_CONFIG_PATH} and edit it, or pass --config",
            )
        return Check("config", Level.PASS, f"{path} is valid")

    async def check_service(self) -> Check:
        if self.target is None:
            return Check("service", Level.SKIP, "no valid config")
        async with ApiClient(self.target) as api:
            try:
                self.status = await api.get("/api/v1/status")
            except ServiceDown as exc:
                self.service_error = str(exc)
                return Check(
                    "service",
                    Level.WARN,
                    f"not running (nothing answers at {self.target.base_url})",
                    f"sudo systemctl start {UNIT}; `journalctl -u migw -n 50` shows why it stopped",
                )
            except ApiFailure as exc:
                self.service_error = str(exc)
                return Check(
                    "service",
                    Level.FAIL,
                    f"the API at {self.target.base_url} answered: {exc}",
                    "run doctor as the service user or with sudo so it can read the API token",
                )
        assert self.status is not None
        self.radios = {r["name"]: r for r in self.status.get("radios", [])}
        svc = self.status["service"]
        if svc["status"] != "ok":
            return Check(
                "service",
                Level.WARN,
                "running but degraded: " + "; ".join(svc.get("reasons", [])),
                "see the checks below and `journalctl -u migw` for the degraded parts",
            )
        return Check(
            "service",
            Level.PASS,
            f"running, healthy, up {svc['uptime_s']:.0f} s, version {svc.get('version', '?')}",
        )

    async def check_token(self) -> Check:
        if self.target is None:
            return Check("api token", Level.SKIP, "no valid config")
        path = token_path(self.target.state_dir)
        try:
            token = read_token(self.target.state_dir)
        except TokenError as exc:
            return Check("api token", Level.WARN, str(exc), "run `sudo migw doctor`")
        if token is None:
            return Check(
                "api token",
                Level.WARN,
                f"no token file {path} yet",
                "the service creates it at its first start and logs where "
                "(`migw token --create` makes one here before that)",
            )
        mode = file_mode(self.target.state_dir)
        if mode is not None and mode & 0o077:
            return Check(
                "api token",
                Level.FAIL,
                f"{path} has mode {mode:04o}: other users can read the API token",
                f"chmod 600 {path}; then `migw token --rotate`",
            )
        return Check("api token", Level.PASS, f"{path} (mode 0600)")

    async def check_serial(self) -> Check:
        cfg = self.config
        if cfg is None:
            return Check("zigbee serial port", Level.SKIP, "no valid config")
        radio = self.radio("zigbee")
        if radio is not None and self.radio_ok(radio):
            # the running service owns the port: never open it under its feet
            firmware = radio.get("info", {}).get("firmware", "")
            where = radio.get("info", {}).get("port", "") or cfg.zigbee.port
            return Check(
                "zigbee serial port",
                Level.PASS,
                f"{where}: the running service talks to the stick"
                + (f" ({firmware})" if firmware else ""),
            )
        if not cfg.zigbee.enabled and not cfg.zigbee.port and radio is None:
            return Check("zigbee serial port", Level.SKIP, "zigbee is disabled in the config")
        port = cfg.zigbee.port or radio_port(radio)
        if radio is not None and not port:
            return Check(
                "zigbee serial port",
                Level.FAIL,
                f"the service cannot use the stick: {radio['reason'] or radio['state']}",
                "`journalctl -u migw` for details",
            )
        path = Path(port)
        if not _exists(path):
            found = _by_id()
            detail = f"{port} does not exist"
            if found:
                detail += "; sticks present: " + ", ".join(found)
            return Check(
                "zigbee serial port",
                Level.FAIL,
                detail,
                "plug the stick in; `ls -l /dev/serial/by-id/` lists it; set zigbee.port "
                "to that /dev/serial/by-id/... path",
            )
        real = _resolve(path)
        if not os.access(real, os.R_OK | os.W_OK):
            group = _group_of(real)
            return Check(
                "zigbee serial port",
                Level.FAIL,
                f"no permission to open {port} ({real}, group {group})",
                f"sudo usermod -aG {group} {_user()} and log in again (the migw service "
                f"user needs group {group} too)",
            )
        if radio is not None:
            # the running service owns the port: never open it under its feet
            return Check(
                "zigbee serial port",
                Level.FAIL,
                f"{port}: the service cannot use the stick: {radio['reason'] or radio['state']}",
                "replug the stick; check that no other program (zigbee2mqtt, ZHA) uses it; "
                "`journalctl -u migw` for details",
            )
        try:
            answer = await _ping_stick(
                port, cfg.zigbee.baud, cfg.zigbee.rtscts, cfg.zigbee.skip_bootloader
            )
        except GatewayError as exc:
            return Check("zigbee serial port", Level.FAIL, str(exc), _STICK_HINT)
        except Exception as exc:  # noqa: BLE001 - any driver error is a finding, not a crash
            return Check(
                "zigbee serial port",
                Level.FAIL,
                f"{port}: {type(exc).__name__}: {exc}",
                _STICK_HINT,
            )
        if answer is None:
            return Check(
                "zigbee serial port",
                Level.FAIL,
                f"no answer from the stick at {port} ({cfg.zigbee.baud} baud)",
                _STICK_HINT,
            )
        return Check("zigbee serial port", Level.PASS, f"{port} answers a ping ({answer})")

    async def check_ble(self) -> Check:
        cfg = self.config
        if cfg is None:
            return Check("ble adapter", Level.SKIP, "no valid config")
        radio = self.radio("ble")
        if radio is not None and self.radio_ok(radio):
            where = radio.get("info", {}).get("adapter", "") or cfg.ble.adapter
            return Check("ble adapter", Level.PASS, f"{where}: the running service scans")
        if not cfg.ble.enabled and radio is None:
            return Check("ble adapter", Level.SKIP, "ble is disabled in the config")
        adapter = cfg.ble.adapter
        if not (SYS_BLUETOOTH / adapter).exists():
            present = sorted(p.name for p in _listdir(SYS_BLUETOOTH))
            return Check(
                "ble adapter",
                Level.FAIL,
                f"no Bluetooth adapter {adapter}"
                + (f" (present: {', '.join(present)})" if present else ""),
                "check `bluetoothctl list`; on a Pi enable Bluetooth (no dtoverlay=disable-bt "
                "in /boot/firmware/config.txt) and `sudo systemctl enable --now bluetooth`",
            )
        blocked = _rfkill_blocked()
        if blocked:
            return Check(
                "ble adapter",
                Level.FAIL,
                f"{adapter} is blocked by rfkill ({blocked})",
                "sudo rfkill unblock bluetooth",
            )
        powered = await _powered(adapter)
        if powered is False:
            return Check(
                "ble adapter",
                Level.FAIL,
                f"{adapter} is powered off",
                f"bluetoothctl power on (and AutoEnable=true in {BLUEZ_MAIN_CONF})",
            )
        if radio is not None:
            return Check(
                "ble adapter",
                Level.WARN,
                f"{adapter} present, but the service's scanner is degraded: {radio['reason']}",
                "sudo systemctl restart bluetooth; `journalctl -u migw` for details",
            )
        state = "powered" if powered else "present (power state unknown: no busctl/bluetoothctl)"
        return Check("ble adapter", Level.PASS, f"{adapter} {state}")

    async def check_bluez(self) -> Check:
        cfg = self.config
        if cfg is None:
            return Check("bluez", Level.SKIP, "no valid config")
        radio = self.radio("ble")
        if radio is not None and radio.get("info", {}).get("adapter") == "simulated":
            return Check(
                "bluez", Level.SKIP, "the running service scans a simulated adapter (demo)"
            )
        if not cfg.ble.enabled and radio is None:
            return Check("bluez", Level.SKIP, "ble is disabled in the config")
        version = await _bluez_version()
        if version is None:
            return Check(
                "bluez",
                Level.FAIL,
                "BlueZ not found (no bluetoothd/bluetoothctl)",
                "sudo apt-get install bluez",
            )
        text = ".".join(map(str, version))
        if cfg.ble.passive:
            if version < BLUEZ_PASSIVE:
                return Check(
                    "bluez",
                    Level.WARN,
                    f"BlueZ {text}: too old for passive scanning (needs 5.56): scans actively",
                    "upgrade BlueZ (Raspberry Pi OS Bookworm ships 5.66)",
                )
            if not _bluez_experimental():
                return Check(
                    "bluez",
                    Level.WARN,
                    f"BlueZ {text}: passive scanning needs its experimental features: "
                    "scans actively",
                    f"set Experimental = true in [General] of {BLUEZ_MAIN_CONF} and "
                    "sudo systemctl restart bluetooth (or ble.passive = false)",
                )
            return Check("bluez", Level.PASS, f"BlueZ {text}, passive scanning available")
        return Check("bluez", Level.PASS, f"BlueZ {text} (active scanning configured)")

    async def check_gpio(self) -> Check:
        cfg = self.config
        if cfg is None:
            return Check("gpiochip", Level.SKIP, "no valid config")
        radio = self.radio("gpio")
        if radio is not None and self.radio_ok(radio):
            count = radio.get("info", {}).get("devices", "?")
            return Check("gpiochip", Level.PASS, f"the running service drives {count} GPIO devices")
        if radio is not None:
            return Check(
                "gpiochip",
                Level.FAIL,
                f"the service cannot drive its GPIO devices: {radio['reason'] or radio['state']}",
                "`journalctl -u migw` for details; check the pins in [[gpio.devices]]",
            )
        if not cfg.gpio.devices:
            return Check("gpiochip", Level.SKIP, "no GPIO devices configured")
        chips = sorted(p for p in _listdir(DEV) if p.name.startswith("gpiochip"))
        if not chips:
            return Check(
                "gpiochip",
                Level.FAIL,
                f"no {DEV}/gpiochip* device: not a Raspberry Pi, or the GPIO driver is missing",
                "run on the Pi; or remove the [[gpio.devices]] entries",
            )
        denied = [p for p in chips if not os.access(p, os.R_OK | os.W_OK)]
        if len(denied) == len(chips):
            group = _group_of(chips[0])
            return Check(
                "gpiochip",
                Level.FAIL,
                f"no permission on {', '.join(p.name for p in chips)} (group {group})",
                f"sudo usermod -aG {group} {_user()} and log in again",
            )
        return Check(
            "gpiochip", Level.PASS, f"{', '.join(p.name for p in chips if p not in denied)} usable"
        )

    async def check_broker(self) -> Check:
        cfg = self.config
        if cfg is None:
            return Check("mqtt broker", Level.SKIP, "no valid config")
        url = cfg.upstream.url
        if not url:
            return Check("mqtt broker", Level.SKIP, "upstream disabled (no upstream.url)")
        parts = urlsplit(url)
        host = parts.hostname or ""
        tls = parts.scheme == "mqtts"
        port = parts.port or (8883 if tls else 1883)
        where = f"{parts.scheme}://{host}:{port}"
        up = self.status.get("upstream") if self.status else None
        try:
            ctx = _tls_context(cfg) if tls else None
        except (OSError, ssl.SSLError) as exc:
            return Check(
                "mqtt broker",
                Level.FAIL,
                f"{where}: TLS files unusable: {exc}",
                "check upstream.ca_file / cert_file / key_file paths and permissions",
            )
        try:
            async with asyncio.timeout(BROKER_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            return Check(
                "mqtt broker",
                Level.FAIL,
                f"{where}: no answer in {BROKER_TIMEOUT_S:g} s",
                "check the network route and firewall to the broker",
            )
        except OSError as exc:
            return Check(
                "mqtt broker",
                Level.FAIL,
                f"{where}: cannot connect: {exc.strerror or exc}",
                "check the host name, port and that the broker runs (`systemctl status mosquitto`)",
            )
        try:
            if ctx is not None:
                async with asyncio.timeout(BROKER_TIMEOUT_S):
                    await writer.start_tls(ctx, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            writer.close()
            return Check(
                "mqtt broker",
                Level.FAIL,
                f"{where}: TLS handshake failed: {exc.verify_message}",
                "set upstream.ca_file to the CA that signed the broker's certificate; the "
                "URL host must match the certificate",
            )
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            writer.close()
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            return Check(
                "mqtt broker",
                Level.FAIL,
                f"{where}: TLS handshake failed: {reason}",
                "is this the broker's TLS port (8883)? check upstream.ca_file, cert_file "
                "and key_file",
            )
        proto = ""
        if ctx is not None:
            obj = writer.get_extra_info("ssl_object")
            proto = f", TLS ok ({obj.version()})" if obj is not None else ", TLS ok"
        try:
            rc = await _mqtt_login(reader, writer, cfg)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        if rc is None:
            return Check(
                "mqtt broker",
                Level.FAIL,
                f"{where} accepted the connection{proto} but did not answer an MQTT CONNECT",
                "is this the broker's MQTT port (1883 plain, 8883 TLS)? check the broker's log",
            )
        if rc != 0:
            return Check(
                "mqtt broker",
                Level.FAIL,
                f"{where} reachable{proto}, but the broker refused the login: "
                f"{_CONNACK.get(rc, f'code {rc}')}",
                "check upstream.username and upstream.password(_file), and the broker's ACL "
                "for this client",
            )
        state = f"; the service's uplink is {up}" if up else ""
        if up is not None and str(up).lower() not in ("connected", "online", "up", "disabled"):
            return Check(
                "mqtt broker",
                Level.WARN,
                f"{where} reachable{proto}, MQTT login ok{state}",
                "`journalctl -u migw` shows the uplink's last error",
            )
        return Check("mqtt broker", Level.PASS, f"{where} reachable{proto}, MQTT login ok{state}")

    async def check_clock(self) -> Check:
        synced = bool(self.status["clock"]["synchronized"]) if self.status else clock_synchronized()
        if not synced:
            return Check(
                "clock",
                Level.WARN,
                "the system clock is not synchronised: readings are re-stamped once it is",
                "timedatectl status; sudo timedatectl set-ntp true; allow UDP 123 to the NTP "
                "server",
            )
        return Check("clock", Level.PASS, f"synchronised ({time.strftime('%Y-%m-%d %H:%M:%S %Z')})")

    async def check_disk(self) -> Check:
        if self.config is None or self.target is None:
            return Check("disk space", Level.SKIP, "no valid config")
        where = self.target.state_dir
        while not where.exists() and where != where.parent:
            where = where.parent
        try:
            usage = shutil.disk_usage(where)
        except OSError as exc:
            return Check("disk space", Level.FAIL, f"{where}: {exc}", "check the mount")
        limit = self.config.upstream.outbox_max_bytes
        free = human_bytes(usage.free)
        if usage.free < DISK_MIN_BYTES:
            return Check(
                "disk space",
                Level.FAIL,
                f"only {free} free for {self.target.state_dir}",
                "free space (sudo journalctl --vacuum-size=50M; apt-get clean)",
            )
        if usage.free < limit:
            return Check(
                "disk space",
                Level.WARN,
                f"{free} free, less than the outbox limit {human_bytes(limit)}",
                "free space or lower upstream.outbox_max_bytes so an outage cannot fill the disk",
            )
        return Check("disk space", Level.PASS, f"{free} free for {self.target.state_dir}")

    async def check_database(self) -> Check:
        if self.target is None:
            return Check("state database", Level.SKIP, "no valid config")
        path = self.target.db_path
        if not path.exists():
            return Check(
                "state database",
                Level.WARN,
                f"no state database at {path} yet",
                "the service creates it at its first start",
            )
        try:
            reader = await open_readonly(path)
        except GatewayError as exc:
            return Check("state database", Level.FAIL, str(exc), _DB_HINT)
        try:
            result = await reader.integrity_check()
        except Exception as exc:  # noqa: BLE001 - sqlite errors on a broken file are findings
            result = f"{type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):
                await reader.close()
        if result != "ok":
            return Check("state database", Level.FAIL, f"{path}: {result}", _DB_HINT)
        return Check("state database", Level.PASS, f"{path}: integrity ok")

    async def check_systemd(self) -> Check:
        systemctl = shutil.which("systemctl")
        if systemctl is None or not _exists(SYSTEMD_RUN):
            return Check("systemd unit", Level.SKIP, "no systemd on this machine")
        out = await _command(systemctl, "show", "-p", "LoadState,ActiveState,SubState", UNIT)
        props = dict(line.split("=", 1) for line in (out or "").splitlines() if "=" in line)
        if props.get("LoadState") in (None, "not-found"):
            return Check(
                "systemd unit",
                Level.WARN if self.running else Level.FAIL,
                f"{UNIT} is not installed",
                "sudo make install (installs and enables the unit)",
            )
        active = props.get("ActiveState", "unknown")
        if active == "active":
            return Check("systemd unit", Level.PASS, f"{UNIT} active ({props.get('SubState')})")
        if self.running:
            return Check(
                "systemd unit",
                Level.WARN,
                f"{UNIT} is {active}, but a migw service answers (started by hand?)",
                f"stop the manual one and sudo systemctl enable --now {UNIT}",
            )
        return Check(
            "systemd unit",
            Level.FAIL,
            f"{UNIT} is {active}",
            f"sudo systemctl enable --now {UNIT}; journalctl -u migw -n 50 shows why it stopped",
        )


_STICK_HINT = (
    "check zigbee.port (prefer /dev/serial/by-id/...) and zigbee.baud; stop any other "
    "program using the stick (zigbee2mqtt, ZHA); replug it; it needs Z-Stack coordinator "
    "firmware"
)
_DB_HINT = (
    "stop migw and start it again: a corrupt database is moved aside (state.db.corrupt-*) "
    "and a new one is created; the old file is kept for recovery"
)

CHECKS: tuple[tuple[str, Callable[[Doctor], Awaitable[Check]]], ...] = (
    ("config", Doctor.check_config),
    ("service", Doctor.check_service),
    ("api token", Doctor.check_token),
    ("zigbee serial port", Doctor.check_serial),
    ("ble adapter", Doctor.check_ble),
    ("bluez", Doctor.check_bluez),
    ("gpiochip", Doctor.check_gpio),
    ("mqtt broker", Doctor.check_broker),
    ("clock", Doctor.check_clock),
    ("disk space", Doctor.check_disk),
    ("state database", Doctor.check_database),
    ("systemd unit", Doctor.check_systemd),
)


# ------------------------------------------------------------------------------ probes


async def _ping_stick(port: str, baud: int, rtscts: bool, skip_bootloader: bool) -> str | None:
    """SYS_PING (and SYS_VERSION) through the zigbee driver's own link and codec.

    None when the stick does not answer. Raises GatewayError-like errors on open failure.
    """
    from drivers.errors import DriverError
    from drivers.zigbee.api import ZnpApi
    from drivers.zigbee.coordinator import PRODUCTS
    from drivers.zigbee.transport import BOOTLOADER_TOGGLE_S, open_serial
    from drivers.zigbee.znp import commands as c

    api = ZnpApi("doctor")
    try:
        link = await open_serial(
            port,
            baudrate=baud,
            rtscts=rtscts,
            on_bytes=api.data_received,
            on_lost=api.connection_lost,
        )
    except DriverError as exc:
        raise GatewayError(str(exc)) from None
    api.attach(link)
    try:
        if skip_bootloader:
            link.set_control_lines(dtr=False, rts=False)
            await asyncio.sleep(BOOTLOADER_TOGGLE_S)
            link.set_control_lines(rts=True)
            await asyncio.sleep(BOOTLOADER_TOGGLE_S)
            link.set_control_lines(rts=False)
        for attempt in range(PING_ATTEMPTS):
            try:
                await api.request(c.SYS_PING, wait_s=PING_TIMEOUT_S)
            except TimeoutError:
                if skip_bootloader and attempt == 0:
                    api.write_raw(b"\xef")  # the CC2652 bootloader's "run the application"
                    await asyncio.sleep(BOOTLOADER_WAIT_S)
                continue
            try:
                ver = await api.request(c.SYS_VERSION, wait_s=PING_TIMEOUT_S)
            except (TimeoutError, DriverError):
                return "SYS_PING ok"
            product = int(ver["ProductId"])
            return PRODUCTS.get(product, f"Z-Stack product {product}")
        return None
    finally:
        await api.aclose()


def radio_port(radio: dict[str, Any] | None) -> str:
    return str(radio.get("info", {}).get("port", "")) if radio is not None else ""


def _exists(path: Path) -> bool:
    return path.exists()


def _resolve(path: Path) -> Path:
    return path.resolve()


def _by_id() -> list[str]:
    return sorted(str(p) for p in _listdir(SERIAL_BY_ID))


def _listdir(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except OSError:
        return []


def _group_of(path: Path) -> str:
    try:
        gid = path.stat().st_gid
        return grp.getgrgid(gid).gr_name
    except (OSError, KeyError):
        return "dialout"


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "$USER"


def _rfkill_blocked() -> str:
    for dev in _listdir(SYS_RFKILL):
        try:
            if (dev / "type").read_text().strip() != "bluetooth":
                continue
            soft = (dev / "soft").read_text().strip() == "1"
            hard = (dev / "hard").read_text().strip() == "1"
        except OSError:
            continue
        if soft or hard:
            return "hard" if hard else "soft"
    return ""


async def _command(*argv: str) -> str | None:
    """stdout of a short command, or None when it fails or hangs."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return None
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return out.decode(errors="replace") if proc.returncode == 0 else None


async def _powered(adapter: str) -> bool | None:
    busctl = shutil.which("busctl")
    if busctl is not None:
        out = await _command(
            busctl,
            "get-property",
            "org.bluez",
            f"/org/bluez/{adapter}",
            "org.bluez.Adapter1",
            "Powered",
        )
        if out is not None:
            return out.strip() == "b true"
    btctl = shutil.which("bluetoothctl")
    if btctl is not None:
        out = await _command(btctl, "show")
        if out is not None and (m := re.search(r"Powered:\s*(yes|no)", out)):
            return m.group(1) == "yes"
    return None


async def _bluez_version() -> tuple[int, ...] | None:
    candidates = [
        shutil.which("bluetoothd"),
        "/usr/libexec/bluetooth/bluetoothd",
        "/usr/lib/bluetooth/bluetoothd",
        shutil.which("bluetoothctl"),
    ]
    for exe in candidates:
        if exe is None or not _exists(Path(exe)):
            continue
        out = await _command(exe, "--version")
        if out and (m := re.search(r"(\d+)\.(\d+)", out)):
            return (int(m.group(1)), int(m.group(2)))
    return None


def _bluez_experimental() -> bool:
    try:
        conf = BLUEZ_MAIN_CONF.read_text()
    except OSError:
        conf = ""
    if re.search(r"^\s*Experimental\s*=\s*true", conf, re.MULTILINE | re.IGNORECASE):
        return True
    for proc in _listdir(Path("/proc")):
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"bluetoothd"):
            return any(a in (b"-E", b"--experimental") for a in cmdline)
    return False


_CONNACK = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


def _mqtt_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return len(raw).to_bytes(2, "big") + raw


def mqtt_connect_packet(client_id: str, username: str = "", password: str | None = None) -> bytes:
    """An MQTT 3.1.1 CONNECT (clean session, keep-alive 10 s)."""
    flags = 0x02 | (0x80 if username else 0) | (0x40 if password is not None else 0)
    body = b"\x00\x04MQTT\x04" + bytes((flags,)) + (10).to_bytes(2, "big")
    body += _mqtt_string(client_id)
    if username:
        body += _mqtt_string(username)
    if password is not None:
        body += _mqtt_string(password)
    n = len(body)
    length = bytearray()
    while True:
        byte, n = n % 128, n // 128
        length.append(byte | (0x80 if n else 0))
        if not n:
            break
    return b"\x10" + bytes(length) + body


async def _mqtt_login(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cfg: Config
) -> int | None:
    """The CONNACK return code of a login with the configured credentials (None: no
    MQTT answer). The password is read here and never shown."""
    up = cfg.upstream
    secret = read_secret(up.password, up.password_file, "upstream.password")
    client_id = f"migw-doctor-{os.getpid()}-{int(time.time()) % 100000}"
    packet = mqtt_connect_packet(
        client_id, up.username, secret.reveal() if secret is not None else None
    )
    try:
        async with asyncio.timeout(BROKER_TIMEOUT_S):
            writer.write(packet)
            await writer.drain()
            connack = await reader.readexactly(4)
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ssl.SSLError):
        return None
    if connack[0] != 0x20 or connack[1] != 0x02:
        return None
    with contextlib.suppress(OSError, ssl.SSLError):
        writer.write(b"\xe0\x00")  # DISCONNECT
        await writer.drain()
    return connack[3]


def _tls_context(cfg: Config) -> ssl.SSLContext:
    up = cfg.upstream
    ctx = ssl.create_default_context(cafile=str(up.ca_file) if up.ca_file else None)
    if up.cert_file is not None:
        ctx.load_cert_chain(str(up.cert_file), str(up.key_file) if up.key_file else None)
    return ctx


# ------------------------------------------------------------------------------ command

_MARK = {Level.PASS: "PASS", Level.WARN: "WARN", Level.FAIL: "FAIL", Level.SKIP: "skip"}
_STYLE = {Level.PASS: "green", Level.WARN: "yellow", Level.FAIL: "bold red", Level.SKIP: "dim"}


async def run_checks(
    ctx: CliContext, on_start: Callable[[int, str], None], on_done: Callable[[int, Check], None]
) -> list[Check]:
    doctor = Doctor(ctx)
    results: list[Check] = []
    for i, (name, fn) in enumerate(CHECKS, 1):
        on_start(i, name)
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                check = await fn(doctor)
        except TimeoutError:
            check = Check(name, Level.FAIL, f"the check did not finish in {CHECK_TIMEOUT_S:g} s")
        except Exception as exc:  # noqa: BLE001 - a broken check is reported, never a crash
            check = Check(name, Level.FAIL, f"the check itself failed: {type(exc).__name__}: {exc}")
        results.append(check)
        on_done(i, check)
    return results


@cli.command()
@json_option
@pass_ctx
def doctor(ctx: CliContext, as_json: bool) -> int:
    """Check this gateway and print pass/warn/fail with a fix for each problem.

    Exit code 1 when any check fails.
    """
    con = console()
    err = console(stderr=True)
    total = len(CHECKS)
    status_cm: list[Any] = []

    def on_start(i: int, name: str) -> None:
        if err.is_terminal:
            cm = err.status(f"[{i}/{total}] checking {name}...")
            cm.__enter__()
            status_cm.append(cm)

    def on_done(i: int, check: Check) -> None:
        while status_cm:
            status_cm.pop().__exit__(None, None, None)
        if as_json:
            return
        mark = _MARK[check.level]
        con.print(
            f"[{i:>2}/{total}] [{_STYLE[check.level]}]{mark}[/] {check.name:<19} {check.detail}",
            markup=True,
            highlight=False,
        )
        if check.hint and check.level in (Level.WARN, Level.FAIL):
            con.print(f"{'':>8} fix: {check.hint}", markup=False)

    results = asyncio.run(run_checks(ctx, on_start, on_done))
    counts = {lvl.value: sum(c.level is lvl for c in results) for lvl in Level}
    failed = counts["fail"] > 0
    if as_json:
        print_json({"ok": not failed, "summary": counts, "checks": [c.to_json() for c in results]})
    else:
        con.print(
            f"{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed, "
            f"{counts['skip']} skipped",
            markup=False,
        )
    return 1 if failed else 0
