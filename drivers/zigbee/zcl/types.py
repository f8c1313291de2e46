"""ZCL data types: one table from type id to a value codec (ZCL spec 2.6.2, zigpy, herdsman).

Values decode to plain Python: ints (any width, little-endian), bool for a boolean 0/1 (other
bytes stay ints: 0xFF is the non-value), float for semi/single/double, str for a character
string that is valid UTF-8 (else bytes), bytes for octet strings, and lists/tuples for arrays
and structs. Decoding raises only :class:`ParseError`; encoding a decoded value gives the
same bytes back.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Callable
from typing import Any

from drivers.errors import ParseError

ZclValue = Any


class DataType(enum.IntEnum):
    NODATA = 0x00
    DATA8 = 0x08
    DATA16 = 0x09
    DATA24 = 0x0A
    DATA32 = 0x0B
    DATA40 = 0x0C
    DATA48 = 0x0D
    DATA56 = 0x0E
    DATA64 = 0x0F
    BOOL = 0x10
    BITMAP8 = 0x18
    BITMAP16 = 0x19
    BITMAP24 = 0x1A
    BITMAP32 = 0x1B
    BITMAP40 = 0x1C
    BITMAP48 = 0x1D
    BITMAP56 = 0x1E
    BITMAP64 = 0x1F
    UINT8 = 0x20
    UINT16 = 0x21
    UINT24 = 0x22
    UINT32 = 0x23
    UINT40 = 0x24
    UINT48 = 0x25
    UINT56 = 0x26
    UINT64 = 0x27
    INT8 = 0x28
    INT16 = 0x29
    INT24 = 0x2A
    INT32 = 0x2B
    INT40 = 0x2C
    INT48 = 0x2D
    INT56 = 0x2E
    INT64 = 0x2F
    ENUM8 = 0x30
    ENUM16 = 0x31
    SEMI = 0x38
    SINGLE = 0x39
    DOUBLE = 0x3A
    OCTET_STRING = 0x41
    CHAR_STRING = 0x42
    LONG_OCTET_STRING = 0x43
    LONG_CHAR_STRING = 0x44
    ARRAY = 0x48
    STRUCT = 0x4C
    SET = 0x50
    BAG = 0x51
    TIME_OF_DAY = 0xE0
    DATE = 0xE1
    UTC = 0xE2
    CLUSTER_ID = 0xE8
    ATTRIBUTE_ID = 0xE9
    BACNET_OID = 0xEA
    IEEE_ADDRESS = 0xF0
    SECURITY_KEY = 0xF1
    UNKNOWN = 0xFF


Reader = Callable[[bytes, int], tuple[ZclValue, int]]
Writer = Callable[[ZclValue], bytes]


def _need(data: bytes, pos: int, n: int, what: str) -> None:
    if n < 0 or pos + n > len(data):
        raise ParseError(f"ZCL {what}: need {n} bytes at offset {pos}, {len(data) - pos} left")


def _uint(size: int) -> tuple[Reader, Writer]:
    def read(data: bytes, pos: int) -> tuple[ZclValue, int]:
        _need(data, pos, size, f"uint{size * 8}")
        return int.from_bytes(data[pos : pos + size], "little"), pos + size

    def write(value: ZclValue) -> bytes:
        return int(value).to_bytes(size, "little")

    return read, write


def _sint(size: int) -> tuple[Reader, Writer]:
    def read(data: bytes, pos: int) -> tuple[ZclValue, int]:
        _need(data, pos, size, f"int{size * 8}")
        return int.from_bytes(data[pos : pos + size], "little", signed=True), pos + size

    def write(value: ZclValue) -> bytes:
        return int(value).to_bytes(size, "little", signed=True)

    return read, write


def _bool() -> tuple[Reader, Writer]:
    def read(data: bytes, pos: int) -> tuple[ZclValue, int]:
        _need(data, pos, 1, "bool")
        b = data[pos]
        return (bool(b) if b in (0, 1) else b), pos + 1

    def write(value: ZclValue) -> bytes:
        return bytes((int(value),))

    return read, write


def _float(fmt: str) -> tuple[Reader, Writer]:
    size = struct.calcsize(fmt)

    def read(data: bytes, pos: int) -> tuple[ZclValue, int]:
        _need(data, pos, size, "float")
        return struct.unpack_from(fmt, data, pos)[0], pos + size

    def write(value: ZclValue) -> bytes:
        return struct.pack(fmt, value)

    return read, write


def _string(len_size: int, text: bool) -> tuple[Reader, Writer]:
    invalid = (1 << (8 * len_size)) - 1

    def read(data: bytes, pos: int) -> tuple[ZclValue, int]:
        _need(data, pos, len_size, "string length")
        n = int.from_bytes(data[pos : pos + len_size], "little")
        pos += len_size
        if n == invalid:
            return None, pos  # the non-value: no bytes follow
        _need(data, pos, n, "string")
        raw = bytes(data[pos : pos + n])
        if text:
            try:
                return raw.decode("utf-8"), pos + n
            except UnicodeDecodeError:
                return raw, pos + n
        return raw, pos + n

    def write(value: ZclValue) -> bytes:
        if value is None:
            return invalid.to_bytes(len_size, "little")
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return len(raw).to_bytes(len_size, "little") + raw

    return read, write


def _array() -> tuple[Reader, Writer]:
    """array/set/bag: element type u8, count u16, elements -> (element_type, [values])."""

    def read(data: bytes, pos: int) -> tuple[ZclValue, int]:
        _need(data, pos, 3, "array header")
        etype = data[pos]
        count = int.from_bytes(data[pos + 1 : pos + 3], "little")
        pos += 3
        if count == 0xFFFF:
            return (etype, None), pos
        if count and etype in ZERO_SIZE_TYPES:
            # 65534 elements of nothing, nested, made 234 bytes decode to millions of values
            raise ParseError(f"collection of zero-size elements (type 0x{etype:02X})")
        # every element takes at least min_size bytes: the frame must hold them all, so no
        # frame decodes to more elements than it has bytes (the per-frame total)
        if count * min_encoded_size(etype) > len(data) - pos:
            raise ParseError(
                f"collection of {count} elements of type 0x{etype:02X} does not fit in the "
                f"{len(data) - pos} bytes left"
            )
        items = []
        for _ in range(count):
            v, pos = read_value(etype, data, pos)
            items.append(v)
        return (etype, items), pos

    def write(value: ZclValue) -> bytes:
        etype, items = value
        if items is None:
            return bytes((etype,)) + b"\xff\xff"
        return (
            bytes((etype,))
            + len(items).to_bytes(2, "little")
            + b"".join(write_value(etype, v) for v in items)
        )

    return read, write


def _struct() -> tuple[Reader, Writer]:
    """struct: count u16, then (type u8, value) per element -> [(type, value), ...]."""

    def read(data: bytes, pos: int) -> tuple[ZclValue, int]:
        _need(data, pos, 2, "struct count")
        count = int.from_bytes(data[pos : pos + 2], "little")
        pos += 2
        if count == 0xFFFF:
            return None, pos
        items: list[tuple[int, ZclValue]] = []
        for _ in range(count):
            _need(data, pos, 1, "struct element type")
            etype = data[pos]
            v, pos = read_value(etype, data, pos + 1)
            items.append((etype, v))
        return items, pos

    def write(value: ZclValue) -> bytes:
        if value is None:
            return b"\xff\xff"
        return len(value).to_bytes(2, "little") + b"".join(
            bytes((et,)) + write_value(et, v) for et, v in value
        )

    return read, write


def _nodata() -> tuple[Reader, Writer]:
    def read(data: bytes, pos: int) -> tuple[ZclValue, int]:
        return None, pos

    def write(value: ZclValue) -> bytes:
        return b""

    return read, write


def _ieee() -> tuple[Reader, Writer]:
    def read(data: bytes, pos: int) -> tuple[ZclValue, int]:
        _need(data, pos, 8, "IEEE address")
        return data[pos : pos + 8][::-1].hex(), pos + 8

    def write(value: ZclValue) -> bytes:
        return bytes.fromhex(value)[::-1]

    return read, write


def _key() -> tuple[Reader, Writer]:
    def read(data: bytes, pos: int) -> tuple[ZclValue, int]:
        _need(data, pos, 16, "key")
        return bytes(data[pos : pos + 16]), pos + 16

    def write(value: ZclValue) -> bytes:
        return bytes(value)

    return read, write


#: type id -> (reader, writer). Unlisted ids cannot be decoded (their size is unknown).
CODECS: dict[int, tuple[Reader, Writer]] = {
    0x00: _nodata(),
    **{0x08 + i: _uint(i + 1) for i in range(8)},  # data8..data64
    0x10: _bool(),
    **{0x18 + i: _uint(i + 1) for i in range(8)},  # bitmap8..bitmap64
    **{0x20 + i: _uint(i + 1) for i in range(8)},  # uint8..uint64
    **{0x28 + i: _sint(i + 1) for i in range(8)},  # int8..int64
    0x30: _uint(1),
    0x31: _uint(2),
    0x38: _float("<e"),
    0x39: _float("<f"),
    0x3A: _float("<d"),
    0x41: _string(1, text=False),
    0x42: _string(1, text=True),
    0x43: _string(2, text=False),
    0x44: _string(2, text=True),
    0x48: _array(),
    0x4C: _struct(),
    0x50: _array(),
    0x51: _array(),
    0xE0: _uint(4),
    0xE1: _uint(4),
    0xE2: _uint(4),
    0xE8: _uint(2),
    0xE9: _uint(2),
    0xEA: _uint(4),
    0xF0: _ieee(),
    0xF1: _key(),
    0xFF: _nodata(),
}

#: Fixed sizes (bytes) of the scalar types; strings and collections are variable.
FIXED_SIZE: dict[int, int] = {
    **{0x08 + i: i + 1 for i in range(8)},
    0x10: 1,
    **{0x18 + i: i + 1 for i in range(8)},
    **{0x20 + i: i + 1 for i in range(8)},
    **{0x28 + i: i + 1 for i in range(8)},
    0x30: 1,
    0x31: 2,
    0x38: 2,
    0x39: 4,
    0x3A: 8,
    0xE0: 4,
    0xE1: 4,
    0xE2: 4,
    0xE8: 2,
    0xE9: 2,
    0xEA: 4,
    0xF0: 8,
    0xF1: 16,
}


#: Types that encode to no bytes: never the element of a collection.
ZERO_SIZE_TYPES = frozenset({0x00, 0xFF})
#: The smallest encoding of the variable-size types (length prefix, collection header).
_MIN_VARIABLE_SIZE = {0x41: 1, 0x42: 1, 0x43: 2, 0x44: 2, 0x48: 3, 0x4C: 2, 0x50: 3, 0x51: 3}


def min_encoded_size(type_id: int) -> int:
    """The fewest bytes a value of ``type_id`` takes (unknown types: 1, they fail anyway)."""
    return FIXED_SIZE.get(type_id) or _MIN_VARIABLE_SIZE.get(type_id, 1)


def read_value(type_id: int, data: bytes, pos: int) -> tuple[ZclValue, int]:
    codec = CODECS.get(type_id)
    if codec is None:
        raise ParseError(f"ZCL data type 0x{type_id:02X} is not supported")
    return codec[0](data, pos)


def write_value(type_id: int, value: ZclValue) -> bytes:
    codec = CODECS.get(type_id)
    if codec is None:
        raise ValueError(f"ZCL data type 0x{type_id:02X} is not supported")
    return codec[1](value)


def is_non_value(type_id: int, value: ZclValue) -> bool:
    """True for the ZCL 'invalid / no value' encodings of a numeric type."""
    size = FIXED_SIZE.get(type_id)
    if value is None:
        return True
    if type_id == 0x10:
        return value not in (True, False)
    if size is None or not isinstance(value, int):
        return isinstance(value, float) and math.isnan(value)
    if 0x20 <= type_id <= 0x27 or type_id in (0x30, 0x31) or 0xE0 <= type_id <= 0xE2:
        return bool(value == (1 << (8 * size)) - 1)
    if 0x28 <= type_id <= 0x2F:
        return bool(value == -(1 << (8 * size - 1)))
    return False
