"""BLE exceptions. Codecs raise only :class:`BleParseError` (a ``ParseError``) on air bytes."""

from __future__ import annotations

from drivers.ble.types import FailReason
from drivers.errors import NeedsHumanError, ParseError, TransientError


class BleParseError(ParseError):
    """A payload did not decode. ``reason`` says why; model facts are kept when known."""

    reason = FailReason.MALFORMED

    def __init__(
        self,
        message: str,
        *,
        model: str = "",
        name: str = "",
        product_id: int | None = None,
        sleepy: bool = False,
        encrypted: bool = False,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.name = name
        self.product_id = product_id
        self.sleepy = sleepy
        self.encrypted = encrypted


class MalformedError(BleParseError):
    reason = FailReason.MALFORMED


class NoKeyError(BleParseError):
    """The payload is encrypted and no key is configured for this MAC."""

    reason = FailReason.NO_KEY


class KeyInvalidError(BleParseError):
    """A key is configured but does not decrypt (tag mismatch, garbage objects, wrong size)."""

    reason = FailReason.KEY_INVALID


class UnsupportedError(BleParseError):
    """Well-formed but not decoded here (unknown product id, mesh frame, BTHome v3 ...)."""

    reason = FailReason.UNSUPPORTED


class KeyFormatError(NeedsHumanError, ValueError):
    """A configured key is not 24 or 32 hex characters. The message never shows the key."""


class ScannerError(TransientError):
    """The BLE adapter failed (BleakError, D-Bus error, adapter off/missing, InProgress)."""
