"""What a BLE operator configures and is told: the bind keys of the config (inline and key
files) and what to do about a scanner fault (shown by ``migw doctor`` and the API's health).

Split from :mod:`gateway.adapters.ble` (the driver: adverts to readings), which uses both.
"""

from __future__ import annotations

from drivers.ble.errors import KeyFormatError
from drivers.ble.keys import BindKey, parse_key
from drivers.ble.types import normalize_mac
from gateway.config import BleSection, read_secret
from gateway.errors import ConfigError


def load_keys(section: BleSection) -> tuple[dict[str, BindKey], list[str]]:
    """Keys of the config (inline and files); problems are listed by MAC, never with the key."""
    keys: dict[str, BindKey] = {}
    problems: list[str] = []
    items = [(mac, secret) for mac, secret in section.keys.items()]
    for mac, path in section.key_files.items():
        try:
            secret = read_secret(None, path, f"bind key for {mac}")
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if secret is not None:
            items.append((mac, secret))
    for mac, secret in items:
        try:
            norm = normalize_mac(mac)
            keys[norm] = parse_key(secret.reveal(), what=f"ble.keys.{mac}")
        except ValueError as exc:  # KeyFormatError is a ValueError too
            problems.append(str(exc) if isinstance(exc, KeyFormatError) else f"{mac}: {exc}")
    return keys, problems


#: What to do about a scanner fault, by words of its reason (first match), for `migw doctor`.
_HINTS = (
    (("removed", "not found", "no bluetooth adapters"),
     ("the adapter is gone: check `ls /sys/class/bluetooth`, a USB dongle's cable and `dmesg`; "
      "scanning resumes by itself when it is back")),
    (("powered off",),
     "power it on: `bluetoothctl power on` (and AutoEnable=true in /etc/bluetooth/main.conf)"),
    (("bluetoothd",),
     ("bluetoothd stopped or restarted: `systemctl status bluetooth`; scanning resumes by "
      "itself once it is back")),
    (("d-bus",), "the system D-Bus is not reachable: `systemctl status dbus`"),
    (("inprogress",), "another program scans on this adapter: stop it, or use another adapter"),
    (("no adverts for",),
     "the adapter went silent: `sudo systemctl restart bluetooth`; `dmesg` for USB resets"),
)  # fmt: skip


def fault_hint(reason: str) -> str:
    """What an operator does about a BLE scanner fault (shown by `migw doctor`)."""
    text = reason.lower()
    for words, hint in _HINTS:
        if any(w in text for w in words):
            return hint
    return "sudo systemctl restart bluetooth; `journalctl -u migw` for details"
