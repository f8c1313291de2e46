"""BLE sensors: Xiaomi MiBeacon (0xFE95), ATC1441/pvvx (0x181A), BTHome v1/v2, Mi scales.

Pure codecs (bytes in, frozen values out; they raise only ``ParseError``) live in
``mibeacon``, ``bthome``, ``atc``, ``xiaomi_other`` and ``crypto``; ``decoder`` dispatches
an :class:`Advertisement` by service-data UUID. ``scanner`` is the one owner of bleak's
scanner, behind a Protocol seam so simulated scanners (``hw_mocks.ble``) plug in the same
way. See docs/ble.md.

The names below are exported lazily (PEP 562): importing a submodule such as
``drivers.ble.types`` or ``drivers.ble.presence`` runs this package first, and must not load
every decoder and ``cryptography`` with it (a Zigbee- or GPIO-only gateway, the CLI and
``gateway.config`` use no codec). ``from drivers.ble import decode_advertisement`` imports
``drivers.ble.decoder`` on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Exported name -> the submodule defining it.
_EXPORTS = {
    "Advertisement": "types",
    "BindKey": "keys",
    "BleEvent": "types",
    "Decoded": "types",
    "FailReason": "types",
    "Failed": "types",
    "Format": "types",
    "KeyStatus": "types",
    "Outcome": "types",
    "decode_advertisement": "decoder",
    "decode_payload": "decoder",
    "parse_key": "keys",
    "parse_keys": "keys",
    "primary": "decoder",
}

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


def __getattr__(name: str) -> Any:
    """An exported name, imported from its submodule on first use (then a plain global)."""
    sub = _EXPORTS.get(name)
    if sub is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{sub}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
