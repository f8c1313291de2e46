"""Xiaomi MiBeacon (service data UUID 0xFE95), versions 2-5: pure codec.

Frame layout, frame-control bits, nonces and object ids: docs/ble.md and the MiBeacon v5
protocol and Object Definition documents. This module is the frame: header, MAC, crypto and
the object walk (building frames, for tests and the simulated fleet:
:mod:`drivers.ble.mibeacon_encode`). The object table is :mod:`drivers.ble.mibeacon_objects`
(:data:`OBJECTS`, re-exported here), the objects that fire events
:mod:`drivers.ble.mibeacon_events`.

:func:`decode` runs per advert (hundreds per second on a Pi): the usual frame of a bound
sensor is checked against what the full path last decoded with its key (:data:`_BOUND`), the
object found by one lookup of its header, and the result built as one tuple; docs/ble.md has
the cost breakdown.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidTag

from drivers.ble import crypto
from drivers.ble.errors import (
    BleParseError,
    KeyInvalidError,
    MalformedError,
    NoKeyError,
    UnsupportedError,
)
from drivers.ble.keys import LEGACY_KEY_FOR_V45, LONG_KEY_FOR_LEGACY, BindKey
from drivers.ble.mibeacon_objects import BY_HEADER, DISPATCH, OBJECTS
from drivers.ble.products import Product, product
from drivers.ble.types import (
    UUID_MIBEACON,
    BleEvent,
    Decoded,
    Format,
    FrameKind,
    Value,
    make_decoded,
)

__all__ = [
    "OBJECTS",
    "FrameControl",
    "decode",
    "object_ids",
]


class FrameControl(enum.IntFlag):
    """Frame-control bits (LE u16 at offset 0); the version is bits 12-15."""

    REQUEST_TIMING = 0x0001  # v4 name; reserved in v5
    ENCRYPTED = 0x0008
    MAC_INCLUDED = 0x0010
    CAPABILITY_INCLUDED = 0x0020
    OBJECT_INCLUDED = 0x0040
    MESH = 0x0080
    REGISTERED = 0x0100
    SOLICITED = 0x0200


#: Capability byte bit 5: an I/O capability field follows (1 byte, as sent by real devices).
CAP_IO_INCLUDED = 0x20

# Plain ints for the hot path (IntFlag arithmetic is slow).
_ENCRYPTED = int(FrameControl.ENCRYPTED)
_MAC_INCLUDED = int(FrameControl.MAC_INCLUDED)
_CAPABILITY_INCLUDED = int(FrameControl.CAPABILITY_INCLUDED)
_OBJECT_INCLUDED = int(FrameControl.OBJECT_INCLUDED)
_MESH = int(FrameControl.MESH)


# --- frame ---------------------------------------------------------------------------------


#: Frame control and product id as one LE u32 (``fc | pid << 16``), frame counter (u8).
_HEAD = struct.Struct("<IB").unpack_from
#: The bits of that u32 that fix the frame kind: product id, version, encrypted.
_KIND_BITS = 0xFFFF_F000 | _ENCRYPTED
#: ``head & _KIND_BITS`` -> FrameKind, for known product ids (bounded: cleared when full).
_KINDS: dict[int, FrameKind] = {}
_CACHE_MAX = 1024
#: Header, MAC, ciphertext of at least one object (3), ext counter (3) and tag (4).
_FAST_MIN = 11 + 3 + 7

#: What the fast path of :func:`decode` needs of a bound sensor, all constant per sensor:
#: frame control + product id as sent (4 bytes), its kind, the MAC field as sent, its text,
#: the nonce's first 8 bytes (MAC field + product id) and the key's bound AESCCM decrypt.
_Bound = tuple[
    bytes, FrameKind, bytes, str, bytes, str, Callable[[bytes, bytes, bytes | None], bytes]
]
#: Raw bind key -> the sensor whose usual frame (v4/v5, encrypted, MAC and objects included,
#: no capability, no mesh) the full path last decoded with it, with the model last (see
#: :data:`_Bound`). Frames of that sensor with that header take the fast path in
#: :func:`decode`; everything else (and any failure there) the full path. Bounded: cleared
#: when full. (A key shared by two sensors flips between them: still correct, slower.)
_BOUND: dict[bytes, _Bound] = {}
#: u32 (LE) at ``-8``: the last ciphertext byte and the 3-byte extended counter.
_U32_AT = struct.Struct("<I").unpack_from
_AAD = crypto.AAD_11
#: ``.get`` of the object tables, bound once: Python 3.11 compiles a method call on an
#: imported name as an attribute load (a new bound method per call), not as LOAD_METHOD.
_single_object = BY_HEADER.get
_dispatch = DISPATCH.get
#: ``tuple.__new__``: the fast path builds its Decoded as make_decoded does, without the call.
_new_decoded: Any = tuple.__new__


def _walk(
    payload: bytes, pos: int, values: dict[str, Value], model: str, info: dict[str, str] | None
) -> tuple[BleEvent, ...]:
    """Walk the objects from ``payload[pos:]`` into ``values``; the events they fired.

    Lenient (``info`` given): unknown objects, objects of an unexpected length and stray
    bytes are skipped and listed in ``info["skipped_objects"]``. Strict (``info`` is None,
    legacy crypto): anything odd raises. A length that overruns the payload raises in both.
    """
    end = len(payload)
    events: tuple[BleEvent, ...] = ()
    while pos + 3 <= end:
        oid = payload[pos] | payload[pos + 1] << 8
        olen = payload[pos + 2]
        nxt = pos + 3 + olen
        if nxt > end:
            raise MalformedError(f"object 0x{oid:04X} length {olen} overruns the payload")
        decoder = _dispatch(oid << 8 | olen)  # id and length checked in one lookup
        if decoder is not None:
            fired = decoder(payload[pos + 3 : nxt], values, model)
            if fired:
                events += fired
        else:
            _skip(oid, olen, payload[pos + 3 : nxt], info)
        pos = nxt
    if pos != end:
        if info is None:
            raise MalformedError(f"{end - pos} stray byte(s) after the objects")
        _note(info, f"stray:{payload[pos:].hex()}")
    return events


def _skip(oid: int, olen: int, data: bytes, info: dict[str, str] | None) -> None:
    """An object with no decoder for its id and length: noted, or (strict) an error."""
    known = oid in OBJECTS
    if info is None:
        raise MalformedError(
            f"object 0x{oid:04X} has length {olen}" if known else f"unknown object 0x{oid:04X}"
        )
    _note(info, f"0x{oid:04X}/len{olen}:{data.hex()}" if known else f"0x{oid:04X}:{data.hex()}")


def _note(info: dict[str, str], note: str) -> None:
    """Add one space-separated entry to ``info["skipped_objects"]``."""
    old = info.get("skipped_objects")
    info["skipped_objects"] = f"{old} {note}" if old else note


def decode(data: bytes, mac: str | None, key: BindKey | None) -> Decoded:
    """Decode one 0xFE95 service-data payload. ``mac`` is the advertiser address (or None).

    Raises only :class:`~drivers.ble.errors.BleParseError` subclasses.
    """
    size = len(data)
    bound = _BOUND.get(key.raw) if key is not None else None
    if bound is not None and size >= _FAST_MIN:
        # The usual frame of a bound sensor (see _BOUND): the same header and MAC as the
        # frame the full path last decoded with this key, every other check of _decode kept,
        # inline (this runs per advert). Anything else (another MAC, a wrong key, odd
        # objects) falls through to _decode, which decodes it or raises its error.
        header, kind, mac_field, mac_text, nonce_head, model, decrypt = bound
        if (
            data.startswith(header)
            and data.startswith(mac_field, 5)
            and (mac == mac_text or not mac)
        ):
            # frame counter | ext counter << 8, read as one u32 with the byte before it
            counter = data[4] | _U32_AT(data, -8)[0] & 0xFFFF_FF00
            try:
                # nonce: MAC field, product id, frame counter, ext counter; ciphertext + tag
                plain = decrypt(
                    nonce_head + counter.to_bytes(4, "little"), data[11:-7] + data[-4:], _AAD
                )
            except InvalidTag:
                pass
            else:
                values: dict[str, Value] = {}
                info: dict[str, str] = {}
                # one object filling the plaintext (the usual frame): its decoder by its
                # header, as _walk would find it; several objects, or odd ones: _walk
                one = _single_object(plain[:3]) if len(plain) == 3 + plain[2] else None
                try:
                    if one is not None:
                        events = one(plain[3:], values, model) or ()
                    else:
                        events = _walk(plain, 0, values, model, info)
                except MalformedError:
                    pass
                else:
                    out: Decoded = _new_decoded(
                        Decoded, (mac_text, kind, values, events, counter, counter, data, info)
                    )
                    return out
    if size < 5:
        raise MalformedError(f"MiBeacon frame of {size} bytes is shorter than 5")
    head, frame_counter = _HEAD(data)
    return _decode(data, mac, key, head, frame_counter)


def _decode(
    data: bytes, mac: str | None, key: BindKey | None, head: int, frame_counter: int
) -> Decoded:
    """Every MiBeacon frame, with every check in order (the fast path's fallback)."""
    # header: fixed part, then the MAC (as sent: reversed) and capability fields if flagged
    size = len(data)
    fc = head & 0xFFFF
    i = 5
    mac_field = cap = None
    if fc & _MAC_INCLUDED:
        if size < 11:
            raise MalformedError("MiBeacon frame too short for its MAC field")
        mac_field = data[5:11]
        i = 11
    if fc & _CAPABILITY_INCLUDED:
        if size < i + 1:
            raise MalformedError("MiBeacon frame too short for its capability field")
        cap = data[i]
        i += 1
        if cap & CAP_IO_INCLUDED:  # one I/O capability byte, skipped
            if size < i + 1:
                raise MalformedError("MiBeacon frame too short for its I/O capability")
            i += 1
    version = fc >> 12
    if version < 2:
        raise UnsupportedError(f"MiBeacon version {version} is not supported")
    if fc & _MESH:
        raise UnsupportedError("MiBeacon mesh frames are not supported")
    kind = _KINDS.get(head & _KIND_BITS) or _new_kind(head)
    if mac_field is not None:
        mac_text = _mac_text(mac_field)
        if mac and mac != mac_text and mac.upper() != mac_text:
            raise _fail(
                MalformedError, "the MAC inside the MiBeacon frame is not the advertiser's", kind
            )
    elif mac:
        mac_text = mac.upper()
    else:
        raise _fail(MalformedError, "no MAC address (not in the frame, advertiser unknown)", kind)
    values: dict[str, Value] = {}
    events: tuple[BleEvent, ...] = ()
    counter = frame_counter
    #: v4/v5 encrypted: the 4-byte counter, authenticated (it is in the nonce), for the
    #: adapter's replay guard; None otherwise (a plain or v2/v3 frame proves nothing)
    replay: int | None = None
    info: dict[str, str] = {}
    if cap is not None:
        info["capability"] = f"0x{cap:02X}"
    if not fc & _OBJECT_INCLUDED:
        pass
    elif not fc & _ENCRYPTED:
        if size < i + 3:
            raise _fail(MalformedError, "MiBeacon frame has the object bit but no object", kind)
        try:
            events = _walk(data, i, values, kind.model, info)
        except MalformedError as exc:
            raise _fail(MalformedError, str(exc), kind) from None
    else:
        # The advertiser address is parsed for the nonce only (plain frames decode from any
        # address, a macOS UUID too).
        mac_rev = mac_field if mac_field is not None else _nonce_mac(mac, kind)
        if key is None:
            raise _fail(NoKeyError, "encrypted MiBeacon and no bind key for this MAC", kind)
        if version >= 4:
            if key.is_legacy:
                raise _fail(KeyInvalidError, LEGACY_KEY_FOR_V45, kind)
            if size < i + 3 + 7:
                raise _fail(MalformedError, "encrypted MiBeacon v4/v5 frame too short", kind)
            ext = data[-7:-4]
            plain = crypto.mibeacon_v45_decrypt(
                key.raw, mac_rev + data[2:5] + ext, data[i:-7] + data[-4:]
            )
            if plain is None:
                raise _fail(KeyInvalidError, "MiBeacon v4/v5 tag mismatch (wrong bind key)", kind)
            counter = replay = frame_counter | int.from_bytes(ext, "little") << 8
            try:
                events = _walk(plain, 0, values, kind.model, info)
            except MalformedError as exc:
                raise _fail(MalformedError, str(exc), kind) from None
            if mac_field is not None and cap is None:  # the usual frame: see _BOUND
                _bind(key.raw, data, kind, mac_field, mac_text)
        else:
            counter, events = _decode_legacy(data, i, key, mac_rev, values, kind)
    return make_decoded(mac_text, kind, values, events, counter, replay, data, info)


def _decode_legacy(
    data: bytes,
    i: int,
    key: BindKey,
    mac_rev: bytes,
    values: dict[str, Value],
    kind: FrameKind,
) -> tuple[int, tuple[BleEvent, ...]]:
    """Encrypted MiBeacon v2/v3 (CTR only, no verified tag): ``(counter, events)``."""
    if not key.is_legacy:
        raise _fail(KeyInvalidError, LONG_KEY_FOR_LEGACY, kind)
    if len(data) < i + 3 + 4:
        raise _fail(MalformedError, "encrypted MiBeacon v2/v3 frame too short", kind)
    ext = data[-4:-1]
    nonce = crypto.mibeacon_legacy_nonce(data, ext, mac_rev)
    plain = crypto.ccm_ctr_only(key.aes_key(), nonce, data[i:-4])
    try:
        events = _walk(plain, 0, values, kind.model, None)
    except MalformedError:
        # No verified tag in the legacy scheme: garbage objects mean a wrong key.
        raise _fail(
            KeyInvalidError,
            "legacy MiBeacon payload does not parse after decryption (wrong key)",
            kind,
        ) from None
    return data[4] | int.from_bytes(ext, "little") << 8, events


def _nonce_mac(mac: str | None, kind: FrameKind) -> bytes:
    """The advertiser's MAC, reversed as the frame would carry it, for the nonce."""
    try:
        return crypto.nonce_mac(mac, "encrypted MiBeacon")[::-1]
    except MalformedError as exc:
        raise _fail(MalformedError, str(exc), kind) from None


def _bind(key: bytes, data: bytes, kind: FrameKind, mac_field: bytes, mac_text: str) -> None:
    """Later frames of this sensor with this header and key take the fast path in
    :func:`decode` (``data`` is a frame the full path just decoded; bounded)."""
    if len(_BOUND) >= _CACHE_MAX and key not in _BOUND:
        _BOUND.clear()
    _BOUND[key] = (
        data[:4],
        kind,
        mac_field,
        mac_text,
        mac_field + data[2:4],
        kind.model,
        crypto.decryptor(key),
    )


def _new_kind(head: int) -> FrameKind:
    """The kind of a header not seen yet (cached in :data:`_KINDS`); unknown product: raise."""
    pid = head >> 16
    kind = _kind(pid, (head >> 12) & 0xF, bool(head & _ENCRYPTED))
    if kind is None:
        raise UnsupportedError(f"unknown MiBeacon product id 0x{pid:04X}", product_id=pid)
    if len(_KINDS) >= _CACHE_MAX:
        _KINDS.clear()
    _KINDS[head & _KIND_BITS] = kind
    return kind


def object_ids(data: bytes) -> tuple[int, ...]:
    """The object ids a plain (unencrypted) frame carries, in order; () when it has none.

    For the downgrade guard (:mod:`drivers.ble.downgrade`): only called on frames that
    :func:`decode` accepted, so the header is known to be well formed; a TLV that overruns
    ends the walk, as in :func:`decode`.
    """
    if len(data) < 5:
        return ()
    fc = data[0] | data[1] << 8
    if not fc & _OBJECT_INCLUDED or fc & _ENCRYPTED:
        return ()
    i = 5 + (6 if fc & _MAC_INCLUDED else 0)
    if fc & _CAPABILITY_INCLUDED and len(data) > i:
        i += 2 if data[i] & CAP_IO_INCLUDED else 1
    ids: list[int] = []
    while i + 3 <= len(data) and i + 3 + data[i + 2] <= len(data):
        ids.append(data[i] | data[i + 1] << 8)
        i += 3 + data[i + 2]
    return tuple(ids)


@lru_cache(maxsize=4096)
def _mac_text(mac_field: bytes) -> str:
    """The MAC field as sent (LSB first) -> ``A4:C1:38:02:83:F4``; cached per sensor (this
    ran per advert: about 0.4 µs of a 4.6 µs encrypted decode)."""
    return mac_field[::-1].hex(":").upper()


@lru_cache(maxsize=1024)
def _kind(product_id: int, version: int, encrypted: bool) -> FrameKind | None:
    """The frame kind of a known product id (None for an unknown one); built once each."""
    prod: Product | None = product(product_id)
    if prod is None:
        return None
    return FrameKind(
        Format.MIBEACON,
        prod.model,
        prod.name,
        encrypted,
        prod.product_id,
        prod.manufacturer,
        prod.sleepy,
        version,
        UUID_MIBEACON,
    )


def _fail(cls: type[BleParseError], message: str, kind: FrameKind) -> BleParseError:
    return cls(
        message,
        model=kind.model,
        name=kind.name,
        product_id=kind.product_id,
        sleepy=kind.sleepy,
        encrypted=kind.encrypted,
    )
