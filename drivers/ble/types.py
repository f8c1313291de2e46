"""Typed values of the BLE driver: adverts in, decode results out (no I/O here)."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from drivers.events import DeviceEvent

#: A decoded value as the air carries it, scaled to the unit of its metric.
Value = float | int | bool | str

#: 16-bit SIG UUIDs as bleak spells them in ``AdvertisementData.service_data``.
UUID_MIBEACON = "0000fe95-0000-1000-8000-00805f9b34fb"
UUID_ATC = "0000181a-0000-1000-8000-00805f9b34fb"
UUID_BTHOME_V1 = "0000181c-0000-1000-8000-00805f9b34fb"
UUID_BTHOME_V1_ENC = "0000181e-0000-1000-8000-00805f9b34fb"
UUID_BTHOME_V2 = "0000fcd2-0000-1000-8000-00805f9b34fb"

_SIG_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def uuid16(short: int) -> str:
    """``0xFE95`` -> ``0000fe95-0000-1000-8000-00805f9b34fb``."""
    return f"0000{short:04x}{_SIG_SUFFIX}"


def normalize_uuid(text: str) -> str:
    """Accept ``fe95``, ``0xFE95`` or a full UUID; return bleak's lowercase 128-bit form.

    Raises ValueError for text that is none of those.
    """
    t = text.strip().lower()
    t = t.removeprefix("0x")
    if len(t) == 4:
        return uuid16(int(t, 16))
    if len(t) == 36 and t.count("-") == 4:
        int(t.replace("-", ""), 16)
        return t
    raise ValueError(f"not a UUID: {text!r}")


#: Twelve ASCII hex digits (``int(x, 16)`` would also take "_", "0x", "+" and spaces).
_MAC_DIGITS = re.compile("[0-9A-Fa-f]{12}")


def mac_digits(text: str) -> str | None:
    """The 12 upper-case hex digits of a MAC written with or without ``:``/``-``, else None.

    Anything else (a macOS CoreBluetooth UUID, a typo) is None, never an exception.
    """
    digits = text.strip().replace(":", "").replace("-", "")
    return digits.upper() if _MAC_DIGITS.fullmatch(digits) else None


def normalize_mac(text: str) -> str:
    """``a4c1381a2b3c`` or ``A4-C1-38-1A-2B-3C`` -> ``A4:C1:38:1A:2B:3C`` (ValueError if not)."""
    digits = mac_digits(text)
    if digits is None:
        raise ValueError(f"not a MAC address: {text!r}")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


#: ``tuple.__new__``: builds the tuple-based values below in one call.
_new_tuple: Any = tuple.__new__


class _AdvertisementFields(NamedTuple):
    """The fields of :class:`Advertisement` (an immutable tuple: built in one C call per
    advert)."""

    address: str  # "A4:C1:38:02:83:F4"
    rssi: int | None
    #: Bytes after the 16-bit UUID, keyed by bleak's lowercase 128-bit UUID string.
    service_data: Mapping[str, bytes]
    manufacturer_data: Mapping[int, bytes]
    local_name: str | None
    #: Monotonic receive time (seconds); 0.0 when unknown (offline decoding).
    time: float


class Advertisement(_AdvertisementFields):
    """One BLE advertisement as received (what bleak's callback gives, typed).

    Immutable and typed like a frozen dataclass (read-only attributes, field-wise equality),
    but a tuple underneath, as :class:`Decoded`: the scanner makes one per advert heard,
    repeats included, and a frozen dataclass's six ``object.__setattr__`` calls cost about
    0.8 µs of the 2.2 µs a repeat cost in all (:func:`make_advertisement` builds it in
    one call, about 0.15 µs).
    """

    __slots__ = ()

    def __new__(
        cls,
        address: str,
        rssi: int | None = None,
        service_data: Mapping[str, bytes] | None = None,
        manufacturer_data: Mapping[int, bytes] | None = None,
        local_name: str | None = None,
        time: float = 0.0,
    ) -> Advertisement:
        # the mappings default to a new dict each (a shared default could be changed)
        result: Advertisement = _new_tuple(
            cls,
            (
                address,
                rssi,
                {} if service_data is None else service_data,
                {} if manufacturer_data is None else manufacturer_data,
                local_name,
                time,
            ),
        )
        return result


def make_advertisement(
    address: str,
    rssi: int | None,
    service_data: Mapping[str, bytes],
    manufacturer_data: Mapping[int, bytes],
    local_name: str | None,
    time: float,
) -> Advertisement:
    """``Advertisement(...)`` with every field given, for the scanner's per-advert path:
    the tuple is built directly, an ordinary, equal Advertisement."""
    result: Advertisement = _new_tuple(
        Advertisement, (address, rssi, service_data, manufacturer_data, local_name, time)
    )
    return result


class Format(enum.StrEnum):
    MIBEACON = "mibeacon"
    ATC1441 = "atc1441"
    PVVX = "pvvx"
    BTHOME_V1 = "bthome_v1"
    BTHOME_V2 = "bthome_v2"
    XIAOMI_SCALE_V1 = "xiaomi_scale_v1"
    XIAOMI_SCALE_V2 = "xiaomi_scale_v2"
    HHCCJCY10 = "hhccjcy10"


class KeyStatus(enum.StrEnum):
    NOT_ENCRYPTED = "not_encrypted"
    OK = "ok"  # decrypted and authenticated (or, for legacy MiBeacon, walked cleanly)


class FailReason(enum.StrEnum):
    """Why an advert did not decode; the values are the ``error`` of ``migw decode ble``."""

    NO_KEY = "no_key"
    KEY_INVALID = "key_invalid"
    MALFORMED = "malformed"
    UNSUPPORTED = "unsupported"


#: A button/dimmer/... event: the one event type of every driver family.
BleEvent = DeviceEvent


@dataclass(frozen=True, slots=True)
class FrameKind:
    """What kind of payload this is: constant per format, product, version and encryption.

    Codecs build one per combination and reuse it (``functools.lru_cache``), so a decoded
    advert carries these facts without copying them each time.
    """

    format: Format
    model: str
    name: str
    encrypted: bool = False
    product_id: int | None = None
    manufacturer: str = ""
    #: Sends on change only: silence is not unavailability.
    sleepy: bool = False
    #: Protocol version (MiBeacon 2-5, BTHome 1-2).
    version: int | None = None
    uuid: str = ""


class _DecodedFields(NamedTuple):
    """The fields of :class:`Decoded` (an immutable tuple: built in one C call per advert)."""

    mac: str
    kind: FrameKind
    values: dict[str, Value]
    events: tuple[BleEvent, ...]
    #: Frame counter (MiBeacon), packet id (BTHome 0x00, ATC/pvvx), or encryption counter.
    counter: int | None
    #: The authenticated encryption counter (u32) of an encrypted BTHome or MiBeacon v4/v5
    #: frame, for replay protection; None for any other frame.
    replay_counter: int | None
    #: The raw service data (for de-duplication and diagnostics; never contains keys).
    payload: bytes
    #: Descriptive facts (firmware version, device type id, objects skipped ...).
    info: dict[str, str]


class Decoded(_DecodedFields):
    """One service-data payload decoded into values and events.

    Immutable and typed like a frozen dataclass (attributes are read-only; two results are
    equal when every field is), but a tuple underneath: a frozen dataclass sets each of its
    eight fields through ``object.__setattr__`` (about 0.5 µs per advert, an eighth of a
    MiBeacon v5 decode), a tuple is built in one call (:func:`make_decoded`, about 0.15 µs).
    """

    __slots__ = ()

    def __new__(
        cls,
        mac: str,
        kind: FrameKind,
        values: dict[str, Value],
        events: tuple[BleEvent, ...] = (),
        counter: int | None = None,
        replay_counter: int | None = None,
        payload: bytes = b"",
        info: dict[str, str] | None = None,
    ) -> Decoded:
        # ``info`` defaults to a new dict per result (a shared default would leak notes)
        fields = (mac, kind, values, events, counter, replay_counter, payload, info)
        result: Decoded = _new_tuple(cls, fields if info is not None else (*fields[:7], {}))
        return result

    @property
    def format(self) -> Format:
        return self.kind.format

    @property
    def model(self) -> str:
        return self.kind.model

    @property
    def name(self) -> str:
        return self.kind.name

    @property
    def encrypted(self) -> bool:
        return self.kind.encrypted

    @property
    def key_status(self) -> KeyStatus:
        """A decoded encrypted payload was authenticated (or, legacy, walked cleanly)."""
        return KeyStatus.OK if self.kind.encrypted else KeyStatus.NOT_ENCRYPTED

    @property
    def product_id(self) -> int | None:
        return self.kind.product_id

    @property
    def manufacturer(self) -> str:
        return self.kind.manufacturer

    @property
    def sleepy(self) -> bool:
        return self.kind.sleepy

    @property
    def version(self) -> int | None:
        return self.kind.version

    @property
    def uuid(self) -> str:
        return self.kind.uuid


def make_decoded(
    mac: str,
    kind: FrameKind,
    values: dict[str, Value],
    events: tuple[BleEvent, ...],
    counter: int | None,
    replay_counter: int | None,
    payload: bytes,
    info: dict[str, str],
) -> Decoded:
    """``Decoded(...)`` with every field given, for the codecs' per-advert hot path: the
    tuple is built directly (no keyword defaults to resolve), an ordinary, equal Decoded."""
    result: Decoded = _new_tuple(
        Decoded, (mac, kind, values, events, counter, replay_counter, payload, info)
    )
    return result


@dataclass(frozen=True, slots=True)
class Failed:
    """A payload that did not decode; ``model``/``product_id`` are set when known."""

    mac: str
    format: Format | None
    reason: FailReason
    detail: str
    model: str = ""
    name: str = ""
    product_id: int | None = None
    sleepy: bool = False
    encrypted: bool = False
    uuid: str = ""
    payload: bytes = b""


Outcome = Decoded | Failed
