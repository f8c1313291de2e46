"""Values the schema is built from: :class:`Secret`, the field error the loader reports under
its key path, and the checks the sections share (ports, MQTT URLs, MACs, Raspberry Pi pins)."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.errors import ConfigError


class Secret:
    """A string that never shows in repr, str, logs or diagnostics."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class FieldError(ValueError):
    """A value the loader reports under ``<section path>.<field>``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = message


def positive(value: float, name: str) -> None:
    if not value > 0:
        raise FieldError(name, "must be > 0")


def non_negative(value: float, name: str) -> None:
    if not value >= 0:
        raise FieldError(name, "must be >= 0")


def valid_port(value: int) -> None:
    if not 0 <= value <= 65535:
        raise FieldError("port", "must be 0-65535")


def is_mqtt_url(url: str) -> bool:
    """``mqtt://host[:port]`` or ``mqtts://...``, the port (if any) 1-65535, no credentials."""
    m = re.fullmatch(r"mqtts?://[^/\s:@]+(?::(\d{1,5}))?/?", url)
    return m is not None and (m.group(1) is None or 0 < int(m.group(1)) <= 65535)


_MAC_RE = re.compile(r"(?:[0-9A-Fa-f]{2}[:-]?){5}[0-9A-Fa-f]{2}")


def ble_device_id(mac_or_id: str) -> str | None:
    """``A4:C1:38:1A:2B:3C`` (or ``a4c1381a2b3c``, or ``ble-a4c1381a2b3c``) as the device id
    ``ble-a4c1381a2b3c``; None when it is not a MAC."""
    text = mac_or_id.strip().removeprefix("ble-")
    if not _MAC_RE.fullmatch(text):
        return None
    return "ble-" + re.sub(r"[^0-9a-f]", "", text.lower())


#: Raspberry Pi 40-pin header: physical (BOARD) pin -> BCM GPIO number.
_BOARD_TO_BCM = {
    3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24,
    19: 10, 21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12,
    33: 13, 35: 19, 36: 16, 37: 26, 38: 20, 40: 21,
}  # fmt: skip


def bcm_pin(pin: int | str) -> int:
    """The BCM number of a pin given as 17, "GPIO17", "BCM17" or "BOARD11" (same pin)."""
    number: int | None = None
    if isinstance(pin, int):
        number = pin
    else:
        text = pin.strip().upper()
        if m := re.fullmatch(r"(?:GPIO|BCM)(\d{1,2})", text):
            number = int(m.group(1))
        elif m := re.fullmatch(r"BOARD(\d{1,2})", text):
            number = _BOARD_TO_BCM.get(int(m.group(1)))
            if number is None:
                raise FieldError("pin", f"{pin} is not a GPIO pin of the 40-pin header")
        elif text.isdigit():
            number = int(text)
    if number is None or not 0 <= number <= 27:
        raise FieldError(
            "pin", f"{pin!r} is not a Raspberry Pi GPIO: use 0-27, 'GPIO17' or 'BOARD11'"
        )
    return number


def read_secret(value: Secret | None, file: Path | None, what: str) -> Secret | None:
    """A secret given inline or by file (first line, stripped). Errors never show it."""
    if value is not None:
        return value
    if file is None:
        return None
    try:
        text = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {file}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"{what} file {file} is empty")
    return Secret(text.splitlines()[0].strip())
