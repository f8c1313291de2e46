"""BTHome v1 (UUIDs 0x181C plain / 0x181E encrypted) and v2 (0xFCD2): pure codec.

The frame: device-info byte, encryption, the object walk and the encoder. The object table
(ids, sizes, factors, names, units) is :mod:`drivers.ble.bthome_objects`, re-exported
here. A repeated name gets ``_1``, ``_2`` ... suffixes; decoding stops at the first unknown
object id.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial

from drivers.ble import crypto
from drivers.ble.bthome_objects import (
    BUTTON_ACTIONS,
    DIMMER_ACTIONS,
    FLOAT_METRICS,
    NUMERIC,
    OBJECTS,
    BtObj,
    Kind,
)
from drivers.ble.errors import KeyInvalidError, MalformedError, NoKeyError, UnsupportedError
from drivers.ble.keys import LEGACY_KEY_FOR_AES, BindKey
from drivers.ble.types import (
    UUID_BTHOME_V1,
    UUID_BTHOME_V1_ENC,
    UUID_BTHOME_V2,
    BleEvent,
    Decoded,
    Format,
    FrameKind,
    Value,
    make_decoded,
)

MODEL = "BTHome"

__all__ = [
    "BUTTON_ACTIONS",
    "DIMMER_ACTIONS",
    "FLOAT_METRICS",
    "MODEL",
    "OBJECTS",
    "BtObj",
    "Kind",
    "decode_v1",
    "decode_v2",
    "encode_number",
    "encode_v1_encrypted",
    "encode_v2",
    "parse_v1_objects",
    "parse_v2_objects",
]


@dataclass(slots=True)
class _Parsed:
    pairs: list[tuple[str, Value]]
    buttons: list[int]
    events: list[BleEvent]
    packet_id: int | None
    info: dict[str, str]


def _number(obj: BtObj, data: bytes, signed: bool, fmt_float: bool) -> Value:
    if fmt_float:
        raw: float = struct.unpack("<e" if len(data) == 2 else "<f", data)[0]
    else:
        raw = int.from_bytes(data, "little", signed=signed)
    if obj.factor == 1.0 and obj.convert == 1.0 and not fmt_float:
        return float(raw) if obj.name in FLOAT_METRICS else int(raw)
    return round(raw * obj.factor * obj.convert, obj.digits)


def _apply(obj: BtObj, data: bytes, out: _Parsed, *, signed: bool, fmt_float: bool) -> None:
    kind = obj.kind
    if kind is Kind.NUMBER:
        value = _number(obj, data, signed, fmt_float)
        if isinstance(value, float) and not math.isfinite(value):
            out.info["skipped_non_finite"] = obj.name
            return
        out.pairs.append((obj.name, value))
    elif kind is Kind.BINARY:
        out.pairs.append((obj.name, data[0] > 0))
    elif kind is Kind.PACKET_ID:
        out.packet_id = data[0]
    elif kind is Kind.BUTTON:
        out.buttons.append(data[0])
    elif kind is Kind.DIMMER:
        action = DIMMER_ACTIONS.get(data[0])
        if action is not None:
            out.events.append(BleEvent("dimmer", action, None, (("steps", data[1]),)))
    elif kind is Kind.TIMESTAMP:
        out.pairs.append((obj.name, int.from_bytes(data, "little")))
    elif kind is Kind.TEXT:
        try:
            out.pairs.append((obj.name, data.decode("utf-8")))
        except UnicodeDecodeError:
            out.info["skipped_text"] = data.hex()
    elif kind is Kind.RAW:
        out.pairs.append((obj.name, data.hex()))
    elif kind is Kind.DEVICE_TYPE:
        out.info["device_type_id"] = f"0x{int.from_bytes(data, 'little'):04X}"
    elif kind is Kind.FIRMWARE:
        out.info["firmware_version"] = ".".join(str(b) for b in reversed(data))
    # Kind.COMMAND: parsed for its length only


def _finish(parsed: _Parsed) -> tuple[dict[str, Value], tuple[BleEvent, ...]]:
    values: dict[str, Value] = dict(parsed.pairs)
    if len(values) == len(parsed.pairs) and not parsed.buttons and not parsed.events:
        return values, ()  # the common case: no repeated names, no events
    counts: dict[str, int] = {}
    for name, _ in parsed.pairs:
        counts[name] = counts.get(name, 0) + 1
    seen: dict[str, int] = {}
    values = {}
    for name, value in parsed.pairs:
        if counts[name] > 1:
            seen[name] = seen.get(name, 0) + 1
            values[f"{name}_{seen[name]}"] = value
        else:
            values[name] = value
    events: list[BleEvent] = []
    many = len(parsed.buttons) > 1
    for index, code in enumerate(parsed.buttons, 1):
        action = BUTTON_ACTIONS.get(code)
        if action is not None:
            events.append(BleEvent("button", action, index if many else None))
    events.extend(parsed.events)
    return values, tuple(events)


def _truncated(out: _Parsed, what: str) -> None:
    """A truncated object ends the walk; the objects before it are kept (as bthome-ble
    does). A payload with nothing before it is malformed."""
    if not (out.pairs or out.buttons or out.events or out.packet_id is not None):
        raise MalformedError(f"BTHome {what}")
    out.info["truncated"] = what


def parse_v2_objects(payload: bytes) -> _Parsed:
    out = _Parsed([], [], [], None, {})
    pairs = out.pairs
    numeric = NUMERIC
    pos = 0
    end = len(payload)
    while pos < end:
        oid = payload[pos]
        fast = numeric.get(oid)
        if fast is not None:  # inlined NUMBER path; same result as _apply
            name, length, signed, scale, digits, as_float, divisor = fast
            nxt = pos + 1 + length
            if nxt > end:
                _truncated(out, f"object 0x{oid:02X} at {pos} is truncated")
                break
            raw = int.from_bytes(payload[pos + 1 : nxt], "little", signed=signed)
            if divisor == 1:
                pairs.append((name, float(raw) if as_float else raw))
            elif divisor:
                pairs.append((name, raw / divisor))
            else:
                pairs.append((name, round(raw * scale, digits)))
            pos = nxt
            continue
        obj = OBJECTS.get(oid)
        if obj is None:
            out.info["stopped_at"] = f"unknown object 0x{oid:02X} at {pos}"
            break
        pos += 1
        length = obj.length
        if obj.kind is Kind.TEXT or obj.kind is Kind.RAW:
            if pos >= end:
                _truncated(out, f"object 0x{oid:02X} at {pos - 1} lacks its length byte")
                break
            length = payload[pos]
            pos += 1
        if pos + length > end:
            _truncated(out, f"object 0x{oid:02X} at {pos - 1} is truncated")
            break
        _apply(obj, payload[pos : pos + length], out, signed=obj.signed, fmt_float=False)
        pos += length
    return out


def parse_v1_objects(payload: bytes) -> _Parsed:
    """v1: control byte (bits 0-4 length incl. the id byte, bits 5-7 format), id, data."""
    out = _Parsed([], [], [], None, {})
    pos = 0
    end = len(payload)
    while pos < end:
        ctrl = payload[pos]
        size = ctrl & 0x1F
        fmt = ctrl >> 5
        if size < 1 or pos + 1 + size > end:
            _truncated(out, f"v1 object at {pos} overruns the payload")
            break
        oid = payload[pos + 1]
        data = payload[pos + 2 : pos + 1 + size]
        obj = OBJECTS.get(oid)
        if obj is None:
            out.info["stopped_at"] = f"unknown object 0x{oid:02X} at {pos}"
            break
        fmt_float = fmt == 2
        if fmt_float and len(data) not in (2, 4):
            raise MalformedError(f"BTHome v1 float object 0x{oid:02X} of {len(data)} bytes")
        if (
            obj.kind in (Kind.BINARY, Kind.PACKET_ID, Kind.BUTTON, Kind.DIMMER)
            and len(data) < obj.length
        ):
            raise MalformedError(f"BTHome v1 object 0x{oid:02X} is too short")
        if not data and obj.kind not in (Kind.TEXT, Kind.RAW):
            raise MalformedError(f"BTHome v1 object 0x{oid:02X} has no data")
        _apply(obj, data, out, signed=obj.signed or fmt == 1, fmt_float=fmt_float)
        pos += 1 + size
    return out


def _decoded(
    parsed: _Parsed, mac: str, kind: FrameKind, replay: int | None, data: bytes
) -> Decoded:
    values, events = _finish(parsed)
    return make_decoded(mac, kind, values, events, parsed.packet_id, replay, data, parsed.info)


def _decrypt(
    version: str,
    key: BindKey | None,
    frame: bytes,
    nonce: Callable[[bytes], bytes],
    aad: bytes | None,
    *,
    min_len: int = 8,
) -> tuple[bytes, int]:
    """The plain objects and the replay counter of an encrypted BTHome frame (ciphertext,
    counter u32 LE, MIC u32); ``nonce`` builds the nonce from the counter. A missing,
    legacy or wrong key and a short frame are decode errors, never a crash."""
    if key is None:
        raise NoKeyError(
            f"encrypted {version} and no key for this MAC", model=MODEL, encrypted=True
        )
    if key.is_legacy:
        raise KeyInvalidError(LEGACY_KEY_FOR_AES, model=MODEL, encrypted=True)
    if len(frame) < min_len:
        raise MalformedError(f"encrypted {version} frame too short", model=MODEL, encrypted=True)
    counter = frame[-8:-4]
    plain = crypto.ccm_decrypt(key.raw, nonce(counter), frame[:-8], frame[-4:], aad)
    if plain is None:
        raise KeyInvalidError(f"{version} tag mismatch (wrong key)", model=MODEL, encrypted=True)
    return plain, int.from_bytes(counter, "little")


def decode_v2(data: bytes, mac: str | None, key: BindKey | None) -> Decoded:
    if not data:
        raise MalformedError("empty BTHome v2 service data")
    info = data[0]
    version = info >> 5
    if version != 2:
        raise UnsupportedError(f"BTHome device-info byte 0x{info:02X} announces version {version}")
    encrypted = bool(info & 0x01)
    trigger = bool(info & 0x04)
    pos = 1
    frame_mac: bytes | None = None
    if info & 0x02:  # MAC included (bthome-ble; reserved in the current spec)
        if len(data) < 7:
            raise MalformedError("BTHome v2 frame too short for its MAC")
        frame_mac = data[1:7][::-1]
        pos = 7
    replay: int | None = None
    payload = data[pos:]
    if encrypted:
        # The advertiser address is parsed for the nonce only: plain frames decode from
        # any address (a macOS UUID too).
        dev_mac = (
            frame_mac
            if frame_mac is not None
            else crypto.nonce_mac(mac, "encrypted BTHome", model=MODEL)
        )
        nonce = partial(crypto.bthome_v2_nonce, dev_mac, info)
        payload, replay = _decrypt("BTHome v2", key, payload, nonce, None)
    shown = frame_mac.hex(":").upper() if frame_mac is not None else mac.upper() if mac else ""
    kind = _kind(Format.BTHOME_V2, encrypted, trigger)
    return _decoded(parse_v2_objects(payload), shown, kind, replay, data)


def decode_v1(data: bytes, mac: str | None, key: BindKey | None, *, encrypted: bool) -> Decoded:
    payload = data
    replay: int | None = None
    if encrypted:
        dev_mac = crypto.nonce_mac(mac, "encrypted BTHome v1", model=MODEL)
        nonce = partial(crypto.bthome_v1_nonce, dev_mac)
        payload, replay = _decrypt("BTHome v1", key, data, nonce, crypto.AAD_11, min_len=9)
    kind = _kind(Format.BTHOME_V1, encrypted, False)
    return _decoded(parse_v1_objects(payload), mac.upper() if mac else "", kind, replay, data)


@lru_cache(maxsize=16)
def _kind(fmt: Format, encrypted: bool, trigger: bool) -> FrameKind:
    v1 = fmt is Format.BTHOME_V1
    uuid = (UUID_BTHOME_V1_ENC if encrypted else UUID_BTHOME_V1) if v1 else UUID_BTHOME_V2
    return FrameKind(
        fmt, MODEL, "BTHome sensor", encrypted, sleepy=trigger, version=1 if v1 else 2, uuid=uuid
    )


# --- encoding (tests and the simulated fleet) ----------------------------------------------


def encode_v2(
    objects: bytes,
    *,
    mac: str,
    key: BindKey | None = None,
    counter: int = 0,
    trigger: bool = False,
) -> bytes:
    """Build BTHome v2 service data from already-encoded objects (``id`` + value bytes)."""
    info = 0x40 | (0x04 if trigger else 0)
    if key is None:
        return bytes([info]) + objects
    info |= 0x01
    cnt = (counter & 0xFFFFFFFF).to_bytes(4, "little")
    nonce = crypto.bthome_v2_nonce(bytes.fromhex(mac.replace(":", "")), info, cnt)
    ct, tag = crypto.ccm_encrypt(key.raw, nonce, objects, None)
    return bytes([info]) + ct + cnt + tag


def encode_v1_encrypted(objects: bytes, *, mac: str, key: BindKey, counter: int) -> bytes:
    cnt = (counter & 0xFFFFFFFF).to_bytes(4, "little")
    nonce = crypto.bthome_v1_nonce(bytes.fromhex(mac.replace(":", "")), cnt)
    ct, tag = crypto.ccm_encrypt(key.raw, nonce, objects, crypto.AAD_11)
    return ct + cnt + tag


def encode_number(oid: int, value: float) -> bytes:
    """One v2 object for a numeric id of :data:`OBJECTS` (value in the object's own unit)."""
    obj = OBJECTS[oid]
    raw = round(value / obj.factor)
    return bytes([oid]) + raw.to_bytes(obj.length, "little", signed=obj.signed)
