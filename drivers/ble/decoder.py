"""One entry point: an :class:`Advertisement` (or one service-data payload) -> outcomes.

Dispatch is a table keyed by service-data UUID. A payload either decodes
(:class:`~drivers.ble.types.Decoded`) or fails with a reason
(:class:`~drivers.ble.types.Failed`); nothing here raises on untrusted bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from drivers.ble import atc, bthome, mibeacon, xiaomi_other
from drivers.ble.errors import BleParseError, MalformedError
from drivers.ble.keys import BindKey
from drivers.ble.types import (
    UUID_ATC,
    UUID_BTHOME_V1,
    UUID_BTHOME_V1_ENC,
    UUID_BTHOME_V2,
    UUID_MIBEACON,
    Advertisement,
    Decoded,
    Failed,
    FailReason,
    Format,
    Outcome,
)
from drivers.errors import ParseError

PayloadDecoder = Callable[[bytes, str | None, BindKey | None], Decoded]


def _needs_mac(fn: Callable[[bytes, str], Decoded]) -> PayloadDecoder:
    def decode(data: bytes, mac: str | None, key: BindKey | None) -> Decoded:
        return fn(data, mac or "")

    return decode


def _bthome_v1(data: bytes, mac: str | None, key: BindKey | None) -> Decoded:
    return bthome.decode_v1(data, mac, key, encrypted=False)


def _bthome_v1_enc(data: bytes, mac: str | None, key: BindKey | None) -> Decoded:
    return bthome.decode_v1(data, mac, key, encrypted=True)


@dataclass(frozen=True, slots=True)
class FormatDef:
    uuid: str
    format: Format
    decode: PayloadDecoder


#: Service-data UUID -> decoder, in priority order (the first decoded one is "primary":
#: pvvx firmware may send BTHome, MiBeacon and 0x181A in turn, and BlueZ keeps the last
#: payload of each UUID, so BTHome wins over the others).
FORMATS: dict[str, FormatDef] = {
    d.uuid: d
    for d in (
        FormatDef(UUID_BTHOME_V2, Format.BTHOME_V2, bthome.decode_v2),
        FormatDef(UUID_BTHOME_V1, Format.BTHOME_V1, _bthome_v1),
        FormatDef(UUID_BTHOME_V1_ENC, Format.BTHOME_V1, _bthome_v1_enc),
        FormatDef(UUID_MIBEACON, Format.MIBEACON, mibeacon.decode),
        FormatDef(UUID_ATC, Format.PVVX, atc.decode),
        FormatDef(
            xiaomi_other.UUID_SCALE_V1,
            Format.XIAOMI_SCALE_V1,
            _needs_mac(xiaomi_other.decode_scale_v1),
        ),
        FormatDef(
            xiaomi_other.UUID_SCALE_V2,
            Format.XIAOMI_SCALE_V2,
            _needs_mac(xiaomi_other.decode_scale_v2),
        ),
        FormatDef(
            xiaomi_other.UUID_HHCCJCY10, Format.HHCCJCY10, _needs_mac(xiaomi_other.decode_hhccjcy10)
        ),
    )
}


_PRIORITY = {uuid: i for i, uuid in enumerate(FORMATS)}


def decode_payload(uuid: str, data: bytes, mac: str | None, key: BindKey | None) -> Outcome | None:
    """Decode one service-data payload; None when the UUID is not one of ours."""
    fdef = FORMATS.get(uuid)
    if fdef is None:
        return None
    return _decode(fdef, data, mac, key)


def _decode(fdef: FormatDef, data: bytes, mac: str | None, key: BindKey | None) -> Outcome:
    try:
        return fdef.decode(data, mac, key)
    except ParseError as exc:
        return _failed(fdef, data, mac, exc)


def _failed(fdef: FormatDef, data: bytes, mac: str | None, exc: ParseError) -> Failed:
    if not isinstance(exc, BleParseError):  # pragma: no cover - codecs raise BleParseError
        return Failed(
            mac or "", fdef.format, FailReason.MALFORMED, str(exc), uuid=fdef.uuid, payload=data
        )
    return Failed(
        mac=mac or "",
        format=fdef.format,
        reason=exc.reason,
        detail=str(exc),
        model=exc.model,
        name=exc.name,
        product_id=exc.product_id,
        sleepy=exc.sleepy,
        encrypted=exc.encrypted,
        uuid=fdef.uuid,
        payload=data,
    )


#: Service-data UUID -> its decoder (the per-advert lookup; FORMATS for the rest).
_DECODERS: dict[str, PayloadDecoder] = {uuid: fdef.decode for uuid, fdef in FORMATS.items()}


def decode_advertisement(adv: Advertisement, keys: Mapping[str, BindKey]) -> list[Outcome]:
    """Every supported service-data payload of ``adv``, decoded, in priority order."""
    mac = adv.address.upper() if adv.address else None
    key = keys.get(mac) if mac else None
    sd = adv.service_data
    if len(sd) == 1:  # the common case, one payload: _decode inlined (this runs per advert)
        for uuid in sd:  # (cheaper than .items() for one entry)
            decode = _DECODERS.get(uuid)
            if decode is None:
                return []
            payload = sd[uuid]
            # bleak gives bytes; anything else (a bytearray) is copied once
            data = payload if type(payload) is bytes else bytes(payload)
            try:
                return [decode(data, mac, key)]
            except ParseError as exc:
                return [_failed(FORMATS[uuid], data, mac, exc)]
    uuids = [u for u in sd if u in FORMATS]
    uuids.sort(key=_PRIORITY.__getitem__)
    return [_decode(FORMATS[u], bytes(sd[u]), mac, key) for u in uuids]


def primary(outcomes: list[Outcome]) -> Outcome | None:
    """The outcome to show for an advert: the first decoded one, else the first failure."""
    for outcome in outcomes:
        if isinstance(outcome, Decoded):
            return outcome
    return outcomes[0] if outcomes else None


__all__ = [
    "FORMATS",
    "FormatDef",
    "MalformedError",
    "decode_advertisement",
    "decode_payload",
    "primary",
]
