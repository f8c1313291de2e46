"""BLE sensors: Xiaomi MiBeacon (0xFE95), ATC1441/pvvx (0x181A), BTHome v1/v2, Mi scales.

Pure codecs (bytes in, frozen values out; they raise only ``ParseError``) live in
``mibeacon``, ``bthome``, ``atc``, ``xiaomi_other`` and ``crypto``; ``decoder`` dispatches
an :class:`Advertisement` by service-data UUID. ``scanner`` is the one owner of bleak's
scanner, behind a Protocol seam so simulated scanners (``hw_mocks.ble``) plug in the same
way. See docs/ble.md.
"""

from __future__ import annotations

from drivers.ble.decoder import decode_advertisement, decode_payload, primary
from drivers.ble.keys import BindKey, parse_key, parse_keys
from drivers.ble.types import (
    Advertisement,
    BleEvent,
    Decoded,
    Failed,
    FailReason,
    Format,
    KeyStatus,
    Outcome,
)

__all__ = [
    "Advertisement",
    "BindKey",
    "BleEvent",
    "Decoded",
    "FailReason",
    "Failed",
    "Format",
    "KeyStatus",
    "Outcome",
    "decode_advertisement",
    "decode_payload",
    "parse_key",
    "parse_keys",
    "primary",
]
