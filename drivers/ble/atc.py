"""ATC1441 and pvvx custom formats on service data UUID 0x181A: pure codec.

The four variants are told apart by the service-data length only (13 atc1441, 15 pvvx,
11 pvvx encrypted, 8 atc1441 encrypted); layouts in docs/ble.md section 4 (structs from
pvvx ``custom_beacon.h``).
"""

from __future__ import annotations

import struct
from functools import lru_cache

from drivers.ble import crypto
from drivers.ble.errors import KeyInvalidError, NoKeyError, UnsupportedError
from drivers.ble.keys import LEGACY_KEY_FOR_AES, BindKey
from drivers.ble.types import UUID_ATC, Decoded, Format, FrameKind, Value, make_decoded

LEN_ATC1441 = 13
LEN_PVVX = 15
LEN_PVVX_ENC = 11
LEN_ATC_ENC = 8

MODEL_ATC = "ATC1441"
MODEL_PVVX = "pvvx"


def _mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02X}" for b in mac)


def _result(
    fmt: Format,
    model: str,
    mac: str,
    values: dict[str, Value],
    counter: int,
    data: bytes,
    encrypted: bool,
    info: dict[str, str] | None = None,
) -> Decoded:
    return make_decoded(
        mac, _kind(fmt, model, encrypted), values, (), counter, None, data, info or {}
    )


@lru_cache(maxsize=8)
def _kind(fmt: Format, model: str, encrypted: bool) -> FrameKind:
    return FrameKind(fmt, model, "Thermometer (custom firmware)", encrypted, uuid=UUID_ATC)


def decode(data: bytes, mac: str | None, key: BindKey | None) -> Decoded:
    n = len(data)
    if n == LEN_ATC1441:
        # MAC (display order), temp s16 BE x0.1, hum u8, batt u8, mV u16 BE, counter
        temp, hum, batt, mv, cnt = struct.unpack(">hBBHB", data[6:])
        values: dict[str, Value] = {
            "temperature": round(temp / 10, 1),
            "humidity": float(hum),
            "battery": float(batt),
            "voltage": round(mv / 1000, 3),
        }
        return _result(
            Format.ATC1441, MODEL_ATC, mac or _mac_text(data[0:6]), values, cnt, data, False
        )
    if n == LEN_PVVX:
        # MAC (reversed), temp s16 LE x0.01, hum u16 x0.01, mV u16, batt u8, counter, flags
        temp, hum, mv, batt, cnt, flags = struct.unpack("<hHHBBB", data[6:])
        values = {
            "temperature": round(temp / 100, 2),
            "humidity": round(hum / 100, 2),
            "voltage": round(mv / 1000, 3),
            "battery": float(batt),
        }
        return _result(
            Format.PVVX,
            MODEL_PVVX,
            mac or _mac_text(data[0:6][::-1]),
            values,
            cnt,
            data,
            False,
            {"flags": f"0x{flags:02X}"},
        )
    if n in (LEN_PVVX_ENC, LEN_ATC_ENC):
        fmt = Format.PVVX if n == LEN_PVVX_ENC else Format.ATC1441
        model = MODEL_PVVX if n == LEN_PVVX_ENC else MODEL_ATC
        if key is None:
            raise NoKeyError(
                "encrypted 0x181A advert and no key for this MAC", model=model, encrypted=True
            )
        if key.is_legacy:
            raise KeyInvalidError(LEGACY_KEY_FOR_AES, model=model, encrypted=True)
        mac_rev = crypto.nonce_mac(mac, "encrypted 0x181A", model=model)[::-1]
        cnt = data[0]
        nonce = crypto.atc_nonce(mac_rev, n, cnt)
        plain = crypto.ccm_decrypt(key.raw, nonce, data[1:-4], data[-4:], crypto.AAD_11)
        if plain is None:
            raise KeyInvalidError("0x181A tag mismatch (wrong key)", model=model, encrypted=True)
        if n == LEN_PVVX_ENC:
            temp, hum, batt, _trg = struct.unpack("<hHBB", plain)
            values = {
                "temperature": round(temp / 100, 2),
                "humidity": round(hum / 100, 2),
                "battery": float(batt),
            }
        else:
            values = {
                "temperature": round(plain[0] / 2 - 40, 1),
                "humidity": plain[1] / 2,
                "battery": float(plain[2] & 0x7F),
            }
        return _result(fmt, model, mac or "", values, cnt, data, True)
    raise UnsupportedError(f"0x181A service data of {n} bytes is no known custom format")


def encode_pvvx(
    mac: str,
    temperature: float,
    humidity: float,
    mv: int,
    battery: int,
    counter: int,
    flags: int = 0,
) -> bytes:
    mac_rev = bytes.fromhex(mac.replace(":", ""))[::-1]
    return mac_rev + struct.pack(
        "<hHHBBB",
        round(temperature * 100),
        round(humidity * 100),
        mv,
        battery,
        counter & 0xFF,
        flags,
    )


def encode_atc1441(
    mac: str, temperature: float, humidity: int, battery: int, mv: int, counter: int
) -> bytes:
    return bytes.fromhex(mac.replace(":", "")) + struct.pack(
        ">hBBHB", round(temperature * 10), humidity, battery, mv, counter & 0xFF
    )


def encode_pvvx_encrypted(
    mac: str,
    key: BindKey,
    temperature: float,
    humidity: float,
    battery: int,
    counter: int,
    trigger: int = 0,
) -> bytes:
    mac_rev = bytes.fromhex(mac.replace(":", ""))[::-1]
    plain = struct.pack("<hHBB", round(temperature * 100), round(humidity * 100), battery, trigger)
    nonce = crypto.atc_nonce(mac_rev, LEN_PVVX_ENC, counter & 0xFF)
    ct, tag = crypto.ccm_encrypt(key.raw, nonce, plain, crypto.AAD_11)
    return bytes([counter & 0xFF]) + ct + tag


def encode_atc_encrypted(
    mac: str, key: BindKey, temperature: float, humidity: float, battery: int, counter: int
) -> bytes:
    mac_rev = bytes.fromhex(mac.replace(":", ""))[::-1]
    plain = bytes(
        [round((temperature + 40) * 2) & 0xFF, round(humidity * 2) & 0xFF, battery & 0x7F]
    )
    nonce = crypto.atc_nonce(mac_rev, LEN_ATC_ENC, counter & 0xFF)
    ct, tag = crypto.ccm_encrypt(key.raw, nonce, plain, crypto.AAD_11)
    return bytes([counter & 0xFF]) + ct + tag
