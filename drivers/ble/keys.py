"""Bind keys: parsing with helpful errors, and a value type that never shows its bytes."""

from __future__ import annotations

import re
from collections.abc import Mapping

from drivers.ble.errors import KeyFormatError
from drivers.ble.types import normalize_mac

_HEX = re.compile(r"[0-9a-fA-F]*")

#: The four bytes legacy MiBeacon inserts into a 12-byte key to make an AES-128 key.
LEGACY_KEY_FILL = bytes.fromhex("8d3d3c97")


class BindKey:
    """A 12-byte (legacy MiBeacon v2/v3) or 16-byte AES key. repr/str never show it.

    Immutable. ``raw`` and ``is_legacy`` are plain slots (set once here), not properties:
    every encrypted advert reads them, and a slot read is a fraction of a property call.
    """

    __slots__ = ("is_legacy", "raw")

    #: The key bytes (12 or 16).
    raw: bytes
    #: True for a 12-byte key (24 hex characters): MiBeacon v2/v3 only.
    is_legacy: bool

    def __init__(self, raw: bytes) -> None:
        if len(raw) not in (12, 16):
            raise KeyFormatError(f"a bind key is 12 or 16 bytes, not {len(raw)}")
        object.__setattr__(self, "raw", bytes(raw))
        object.__setattr__(self, "is_legacy", len(raw) == 12)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"BindKey is immutable (cannot set {name!r})")

    def aes_key(self) -> bytes:
        """The 16-byte AES key: the key itself, or the legacy 12-byte key expanded."""
        if self.is_legacy:
            return self.raw[:6] + LEGACY_KEY_FILL + self.raw[6:]
        return self.raw

    def __repr__(self) -> str:
        return f"BindKey(<{len(self.raw) * 2} hex chars>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BindKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


def parse_key(text: str, *, what: str = "bind key") -> BindKey:
    """Parse 24 or 32 hex characters (spaces, colons and a 0x prefix are tolerated).

    The error names the length found and what each length is for; it never echoes the key.
    """
    t = text.strip()
    if t.lower().startswith("0x"):
        t = t[2:]
    t = t.replace(" ", "").replace(":", "").replace("-", "")
    if not _HEX.fullmatch(t):
        raise KeyFormatError(f"{what} must be hexadecimal (0-9, a-f)")
    if len(t) == 32:
        return BindKey(bytes.fromhex(t))
    if len(t) == 24:
        return BindKey(bytes.fromhex(t))
    hint = ""
    if len(t) == 64:
        hint = " (64 characters looks like two keys pasted together)"
    raise KeyFormatError(
        f"{what} has {len(t)} hex characters; expected 32 (MiBeacon v4/v5 bindkey, BTHome, "
        f"pvvx/ATC) or 24 (legacy MiBeacon v2/v3 bindkey){hint}"
    )


def parse_keys(pairs: Mapping[str, str]) -> dict[str, BindKey]:
    """``{"A4:C1:38:..": "hex"}`` -> ``{normalized MAC: BindKey}``; errors name the MAC only."""
    out: dict[str, BindKey] = {}
    for mac, text in pairs.items():
        try:
            norm = normalize_mac(mac)
        except ValueError:
            raise KeyFormatError(f"{mac!r} is not a MAC address (AA:BB:CC:DD:EE:FF)") from None
        out[norm] = parse_key(text, what=f"bind key for {norm}")
    return out


LEGACY_KEY_FOR_V45 = (
    "the configured key has 24 hex characters (legacy v2/v3 format) but this device uses "
    "MiBeacon v4/v5 encryption and needs the 32-character bindkey; a 24-character value is "
    "often the Mi cloud token, not the bindkey"
)
LEGACY_KEY_FOR_AES = (
    "the configured key has 24 hex characters but this format needs a 32-character key "
    "(a 24-character value is often the Mi cloud token, not the bindkey)"
)
LONG_KEY_FOR_LEGACY = (
    "the configured key has 32 hex characters but this device uses legacy MiBeacon v2/v3 "
    "encryption, which needs the 24-character bindkey"
)
