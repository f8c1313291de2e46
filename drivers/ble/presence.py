"""BLE presence of people's devices: beacon identity, RPA resolution, home/away tracking.

Pure code (no asyncio, no I/O): adverts and times in, identities and state changes out.

Identities a person can carry:

* an iBeacon (Apple manufacturer data 0x004C, type 0x02 0x15: UUID, major, minor);
* an Eddystone-UID transmitter (service data 0xFEAA, frame 0x00: namespace, instance);
* a device with a static (or public) address, such as a band in discoverable mode;
* a phone with a rotating resolvable private address (RPA), identified by its Identity
  Resolving Key: Bluetooth Core specification Vol 3 Part H 2.2.2, ``ah(k, r) = e(k, r')
  mod 2^24`` with ``r'`` the 24-bit ``prand`` padded with 104 zero bits on the left. An RPA
  is ``prand || hash`` (most significant bits first, as a MAC is written) where the top two
  bits of ``prand`` are ``0b01``; it belongs to the IRK when ``ah(irk, prand) == hash``.

Home/away per person: every matching advert updates an exponentially smoothed RSSI. A person
arrives when the smoothed RSSI reaches ``home_rssi``; a sighting keeps them home while the
smoothed RSSI stays at or above ``home_rssi - hysteresis_db``; they leave when no such
sighting came for ``away_after_s`` seconds. Arrival needs a strong signal, staying needs a
weaker one: a phone at the edge of range does not flap.
"""

from __future__ import annotations

import enum
import hashlib
import re
import uuid as uuid_mod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from drivers.ble.types import Advertisement, mac_digits, uuid16

APPLE_COMPANY_ID = 0x004C
UUID_EDDYSTONE = uuid16(0xFEAA)
_IBEACON_PREFIX = b"\x02\x15"
_EDDYSTONE_UID = 0x00
#: Addresses whose digits and IRK owner are kept (cleared when full: RPAs are unbounded).
_ADDRESSES_MAX = 4096
#: What is kept of an address that is nobody's (and no address identity is configured).
_NOBODY: tuple[str | None, str | None] = (None, None)


class PresenceConfigError(ValueError):
    """An identity that cannot be used (bad IRK, UUID or address)."""


def ah(irk: bytes, prand: bytes) -> bytes:
    """The random address hash function ``ah`` (Core Vol 3 Part H 2.2.2), MSB-first bytes.

    ``irk``: 16 bytes, ``prand``: 3 bytes; returns the 3-byte hash.
    """
    if len(irk) != 16 or len(prand) != 3:
        raise ValueError("ah needs a 16-byte IRK and a 3-byte prand")
    # imported on use: only an IRK identity resolves addresses, and importing this module (as
    # gateway.config does, for its timings) must not load cryptography (~9 MB of RSS)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(irk), modes.ECB()).encryptor()  # noqa: S305 - ah is AES-ECB by spec
    out = enc.update(bytes(13) + prand) + enc.finalize()
    return out[13:]


def is_resolvable(address: bytes) -> bool:
    """True when a 6-byte address (MSB first) has the RPA marker bits ``0b01``."""
    return len(address) == 6 and address[0] >> 6 == 0b01


def resolves(irk: bytes, address: bytes) -> bool:
    """True when the RPA ``address`` (6 bytes, MSB first) was generated from ``irk``."""
    return is_resolvable(address) and ah(irk, address[:3]) == address[3:]


def make_rpa(irk: bytes, prand: bytes) -> str:
    """An RPA for ``irk`` from 3 random bytes (the marker bits are forced): for simulators."""
    if len(prand) != 3:
        raise ValueError("prand must be 3 bytes")
    p = bytes([(prand[0] & 0x3F) | 0x40]) + prand[1:]
    raw = p + ah(irk, p)
    return ":".join(f"{b:02X}" for b in raw)


def parse_irk(text: str) -> bytes:
    """An IRK as 32 hex digits, most significant byte first (the spec's notation)."""
    t = text.strip().replace(":", "").replace(" ", "")
    if not re.fullmatch(r"[0-9A-Fa-f]{32}", t):
        raise PresenceConfigError("an IRK is 32 hex digits")
    return bytes.fromhex(t)


# --------------------------------------------------------------------------- beacons


@dataclass(frozen=True, slots=True)
class IBeacon:
    uuid: str  # lowercase, with dashes
    major: int
    minor: int
    tx_power: int


@dataclass(frozen=True, slots=True)
class EddystoneUid:
    namespace: str  # 20 lowercase hex digits
    instance: str  # 12 lowercase hex digits
    tx_power: int


def parse_ibeacon(manufacturer_data: Mapping[int, bytes]) -> IBeacon | None:
    """The iBeacon frame in Apple's manufacturer data, or None (anything else, or short)."""
    data = manufacturer_data.get(APPLE_COMPANY_ID)
    if data is None or len(data) < 23 or data[:2] != _IBEACON_PREFIX:
        return None
    return IBeacon(
        uuid=str(uuid_mod.UUID(bytes=data[2:18])),
        major=int.from_bytes(data[18:20], "big"),
        minor=int.from_bytes(data[20:22], "big"),
        tx_power=int.from_bytes(data[22:23], "big", signed=True),
    )


def parse_eddystone_uid(service_data: Mapping[str, bytes]) -> EddystoneUid | None:
    """An Eddystone-UID frame (type 0x00) in service data 0xFEAA, or None."""
    data = service_data.get(UUID_EDDYSTONE)
    if data is None or len(data) < 18 or data[0] != _EDDYSTONE_UID:
        return None
    return EddystoneUid(
        namespace=data[2:12].hex(),
        instance=data[12:18].hex(),
        tx_power=int.from_bytes(data[1:2], "big", signed=True),
    )


# --------------------------------------------------------------------------- identities


class IdentityKind(enum.StrEnum):
    IBEACON = "ibeacon"
    EDDYSTONE = "eddystone"
    ADDRESS = "address"
    IRK = "irk"


@dataclass(frozen=True, slots=True)
class Identity:
    """One way to recognise a person's device. ``value`` is normalised by :func:`identity`;
    for an IRK it is a fingerprint (the key itself never shows in a repr or a log)."""

    kind: IdentityKind
    value: str
    irk: bytes = field(default=b"", repr=False)


def identity(kind: str, value: str) -> Identity:
    """Validate and normalise: ``ibeacon`` "UUID[/major[/minor]]", ``eddystone``
    "namespace[/instance]", ``address`` "AA:BB:..", ``irk`` 32 hex digits."""
    try:
        k = IdentityKind(kind)
    except ValueError:
        raise PresenceConfigError(
            f"unknown identity kind {kind!r}: use ibeacon, eddystone, address or irk"
        ) from None
    v = value.strip().lower()
    if k is IdentityKind.IBEACON:
        parts = v.split("/")
        if len(parts) > 3:
            raise PresenceConfigError("an iBeacon is UUID, UUID/major or UUID/major/minor")
        try:
            parts[0] = str(uuid_mod.UUID(parts[0]))
            nums = [int(p) for p in parts[1:]]
        except ValueError:
            raise PresenceConfigError(f"not an iBeacon UUID[/major[/minor]]: {value!r}") from None
        if any(not 0 <= n <= 0xFFFF for n in nums):
            raise PresenceConfigError("iBeacon major and minor are 0-65535")
        return Identity(k, "/".join([parts[0], *map(str, nums)]))
    if k is IdentityKind.EDDYSTONE:
        parts = v.split("/")
        ok = len(parts) <= 2 and re.fullmatch(r"[0-9a-f]{20}", parts[0]) is not None
        if ok and len(parts) == 2:
            ok = re.fullmatch(r"[0-9a-f]{12}", parts[1]) is not None
        if not ok:
            raise PresenceConfigError("an Eddystone UID is 20 hex digits [/ 12 hex digits]")
        return Identity(k, v)
    if k is IdentityKind.ADDRESS:
        digits = mac_digits(v)
        if digits is None:
            raise PresenceConfigError(f"not a MAC address: {value!r}")
        return Identity(k, digits)
    irk = parse_irk(v)
    return Identity(k, "irk-" + hashlib.sha256(irk).hexdigest()[:8], irk=irk)


def matches(ident: Identity, adv: Advertisement) -> bool:
    """True when the advert comes from a device with this identity."""
    if ident.kind is IdentityKind.ADDRESS:
        return mac_digits(adv.address) == ident.value
    if ident.kind is IdentityKind.IRK:
        digits = mac_digits(adv.address)
        return digits is not None and resolves(ident.irk, bytes.fromhex(digits))
    if ident.kind is IdentityKind.IBEACON:
        beacon = parse_ibeacon(adv.manufacturer_data)
        if beacon is None:
            return False
        have = f"{beacon.uuid}/{beacon.major}/{beacon.minor}".split("/")
        want = ident.value.split("/")
        return have[: len(want)] == want
    uid = parse_eddystone_uid(adv.service_data)
    if uid is None:
        return False
    want = ident.value.split("/")
    return [uid.namespace, uid.instance][: len(want)] == want


# --------------------------------------------------------------------------- tracking


@dataclass(frozen=True, slots=True)
class PresenceTimings:
    #: Arrive when the smoothed RSSI reaches this (dBm).
    home_rssi: float = -90.0
    #: Stay while the smoothed RSSI is at least ``home_rssi - hysteresis_db``.
    hysteresis_db: float = 6.0
    #: Leave after this many seconds without a sighting strong enough to stay.
    away_after_s: float = 180.0
    #: Weight of a new RSSI sample in the exponential average (0 < rssi_alpha <= 1).
    rssi_alpha: float = 0.3


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    identities: tuple[Identity, ...]


@dataclass(frozen=True, slots=True)
class PresenceChange:
    person: str
    home: bool
    rssi: float | None
    at: float
    identity: str  # "irk", "ibeacon", ... ("" for a timeout)


@dataclass(slots=True)
class _PersonState:
    #: None until known: seen (home), or not seen for away_after_s since start (away).
    home: bool | None = None
    rssi: float | None = None
    last_strong: float | None = None


class PresenceTracker:
    """Home/away per person from adverts. Call :meth:`observe` per advert and :meth:`tick`
    now and then (both with a monotonic ``now``); both return the state changes.

    A person's state is unknown at first: the first change is "home" on a strong enough
    sighting, or "away" once ``away_after_s`` passed since the first call without one (so a
    restart does not report everybody away and back)."""

    def __init__(self, people: Iterable[Person], timings: PresenceTimings | None = None) -> None:
        self.people = tuple(people)
        self.timings = timings or PresenceTimings()
        self._state = {p.name: _PersonState() for p in self.people}
        #: The identities recognised from an advert's content or its fixed address, in order.
        self._plain = tuple(
            (p.name, i) for p in self.people for i in p.identities if i.kind is not IdentityKind.IRK
        )
        #: Whether an address identity is configured (else an address's digits are not kept).
        self._by_address = any(i.kind is IdentityKind.ADDRESS for _n, i in self._plain)
        self._irks = tuple(
            (p.name, i) for p in self.people for i in p.identities if i.kind is IdentityKind.IRK
        )
        #: Address as heard -> (its 12 hex digits or None, the person whose IRK resolves it
        #: or None): worked out once per address (an RPA rotates about every 15 minutes).
        self._addresses: dict[str, tuple[str | None, str | None]] = {}
        self._started: float | None = None

    def is_home(self, person: str) -> bool:
        return self._state[person].home is True

    def rssi(self, person: str) -> float | None:
        return self._state[person].rssi

    def _who(self, adv: Advertisement) -> tuple[str, str] | None:
        known = self._addresses.get(adv.address)
        if known is None:
            known = self._address(adv.address)
        digits, owner = known
        for name, ident in self._plain:
            if ident.kind is IdentityKind.ADDRESS:
                hit = digits == ident.value
            else:
                hit = matches(ident, adv)
            if hit:
                return name, str(ident.kind)
        return (owner, "irk") if owner is not None else None

    def _address(self, address: str) -> tuple[str | None, str | None]:
        digits = mac_digits(address)
        owner: str | None = None
        if digits is not None and self._irks and is_resolvable(raw := bytes.fromhex(digits)):
            owner = next((name for name, i in self._irks if resolves(i.irk, raw)), None)
        if len(self._addresses) >= _ADDRESSES_MAX:
            self._addresses.clear()
        # the many addresses of no one share one entry (their digits matter to no identity)
        known = _NOBODY if owner is None and not self._by_address else (digits, owner)
        self._addresses[address] = known
        return known

    def observe(self, adv: Advertisement, now: float) -> list[PresenceChange]:
        if self._started is None:
            self._started = now
        who = self._who(adv)
        if who is None:
            return []
        name, kind = who
        st = self._state[name]
        t = self.timings
        if adv.rssi is not None:
            st.rssi = (
                float(adv.rssi)
                if st.rssi is None
                else st.rssi + t.rssi_alpha * (float(adv.rssi) - st.rssi)
            )
        rssi = st.rssi if st.rssi is not None else t.home_rssi
        changes: list[PresenceChange] = []
        if st.home is not True and rssi >= t.home_rssi:
            st.home = True
            changes.append(PresenceChange(name, True, st.rssi, now, kind))
        if st.home and rssi >= t.home_rssi - t.hysteresis_db:
            st.last_strong = now
        return changes + self.tick(now)

    def tick(self, now: float) -> list[PresenceChange]:
        if self._started is None:
            self._started = now
        changes: list[PresenceChange] = []
        away_after = self.timings.away_after_s
        for name, st in self._state.items():
            if st.home is None and now - self._started >= away_after:
                st.home = False
                changes.append(PresenceChange(name, False, None, now, ""))
            elif st.home and st.last_strong is not None and now - st.last_strong >= away_after:
                st.home = False
                st.rssi = None
                changes.append(PresenceChange(name, False, None, now, ""))
        return changes
