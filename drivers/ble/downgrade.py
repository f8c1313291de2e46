"""Downgrade protection: a MAC that encrypts may not be impersonated in plaintext. Pure.

Anyone in radio range can send a plaintext advert under any MAC address. For a device
whose frames are encrypted, the key is the only thing that proves a frame came from it, so
once a MAC is *keyed* a plaintext frame of an encryptable format carrying readings is
rejected and counted, never reported (bthome-ble does the same for BTHome:
``downgrade_detected``). A MAC is keyed for a format family when

* a bind key is configured for it (every family: a device with a key encrypts whatever it
  sends, pvvx firmware included), or
* an encrypted frame of that family has been received from it (decrypted or not: a device
  that encrypts does not switch to plaintext by itself).

Families: BTHome (v1 0x181C/0x181E and v2 0xFCD2 are one family, a device may be flashed
from one to the other), MiBeacon (0xFE95), and the ATC/pvvx custom formats (0x181A). The
Xiaomi scale and HHCCJCY10 formats have no encryption and are never refused.

MiBeacon is finer grained because real keyed devices send some frames in plaintext:

* frames without objects (pairing/presence beacons) carry no reading and always pass;
* :data:`PLAINTEXT_OBJECTS` lists the objects that keyed devices really send unencrypted
  (evidence: the MS1BB(MI) door sensor sends 0x4A1A "door left open" as a plain v5 frame
  beside its encrypted 0x4804/0x4A12/0x4A13 frames, xiaomi-ble's
  ``test_Xiaomi_MS1BB_MI_obj4a1a``); a plain frame whose objects are all in that set passes;
* any other plain frame that decodes to readings or events is rejected.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from drivers.ble import mibeacon
from drivers.ble.types import Decoded, Failed, FailReason, Format


class Family(enum.StrEnum):
    BTHOME = "bthome"
    MIBEACON = "mibeacon"
    CUSTOM = "atc/pvvx"


FAMILIES: dict[Format, Family] = {
    Format.BTHOME_V1: Family.BTHOME,
    Format.BTHOME_V2: Family.BTHOME,
    Format.MIBEACON: Family.MIBEACON,
    Format.ATC1441: Family.CUSTOM,
    Format.PVVX: Family.CUSTOM,
}

#: MiBeacon objects that keyed (encrypting) devices send in plaintext frames (see above).
PLAINTEXT_OBJECTS: frozenset[int] = frozenset({0x4A1A})

#: One shared set per combination of families (a handful), for :class:`DowngradeGuard`.
_SETS: dict[frozenset[Family], frozenset[Family]] = {}


def _shared(families: frozenset[Family]) -> frozenset[Family]:
    return _SETS.setdefault(families, families)


_ONE = {family: _shared(frozenset({family})) for family in Family}

#: At most this many MACs learned from encrypted frames are remembered (oldest forgotten);
#: MACs with a configured key are protected whatever this says.
MAX_LEARNED = 4096


@dataclass(slots=True)
class DowngradeGuard:
    """Per-MAC memory of encryption; :meth:`accept` refuses plaintext impersonation."""

    rejected: int = 0
    #: The MAC and family of the last rejected frame (for health/diagnostics).
    last: str = ""
    #: The bound on MACs learned from encrypted frames (see :data:`MAX_LEARNED`).
    max_learned: int = MAX_LEARNED
    #: MAC -> its families, oldest MAC first; the family sets are shared (frozen, one per
    #: combination), not one set per MAC.
    _learned: dict[str, frozenset[Family]] = field(default_factory=dict)

    def learn(self, mac: str, fmt: Format | None) -> None:
        """Remember that ``mac`` sends encrypted frames of ``fmt``'s family."""
        family = FAMILIES.get(fmt) if fmt is not None else None
        if family is None or not mac:
            return
        learned = self._learned
        families = learned.get(mac)
        if families is None:
            learned[mac] = _ONE[family]
            if len(learned) > self.max_learned:
                del learned[next(iter(learned))]
        elif family not in families:  # (the usual case, a known family: nothing to do)
            learned[mac] = _shared(families | {family})

    def learn_failed(self, failed: Failed) -> None:
        """An encrypted frame that did not decrypt (no key, wrong key) still proves the
        device encrypts."""
        if failed.encrypted and failed.reason in (FailReason.NO_KEY, FailReason.KEY_INVALID):
            self.learn(failed.mac, failed.format)

    def learned(self, mac: str) -> frozenset[Family]:
        return frozenset(self._learned.get(mac, ()))

    def accept(self, result: Decoded, *, keyed: bool) -> bool:
        """False (and counted) for a plaintext frame that impersonates a keyed MAC.

        ``keyed``: a bind key is configured for ``result.mac``. Encrypted frames are
        accepted and teach the guard that this MAC encrypts.
        """
        kind = result.kind
        if kind.encrypted:
            self.learn(result.mac, kind.format)
            return True
        family = FAMILIES.get(kind.format)
        if family is None or not result.mac:
            return True
        if not keyed:
            learned = self._learned.get(result.mac)
            if learned is None or family not in learned:
                return True
        if family is Family.MIBEACON:
            if not result.values and not result.events:
                return True  # no objects, or none that carries a reading
            if all(oid in PLAINTEXT_OBJECTS for oid in mibeacon.object_ids(result.payload)):
                return True
        self.rejected += 1
        self.last = f"{result.mac} ({family})"
        return False
