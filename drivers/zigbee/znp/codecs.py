"""Field codecs of the MT/ZNP command tables (pure): how one field's bytes become a value.

:mod:`drivers.zigbee.znp.commands` declares every command's layout with these; the wire
enums the :class:`Enum` codec maps to are in :mod:`drivers.zigbee.znp.types`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any, Protocol

from drivers.errors import ParseError

#: What a decoded field can hold. IEEE addresses are 16 lowercase hex digits, most
#: significant byte first (the way zigpy, zigbee2mqtt and the backup format print them).
FieldValue = Any


class Codec(Protocol):
    def decode(self, data: bytes, pos: int) -> tuple[FieldValue, int]: ...

    def encode(self, value: FieldValue) -> bytes: ...


def _need(data: bytes, pos: int, n: int, what: str) -> None:
    if pos + n > len(data):
        raise ParseError(f"{what}: need {n} bytes at offset {pos}, {len(data) - pos} left")


@dataclass(frozen=True, slots=True)
class UInt:
    size: int
    signed: bool = False

    def decode(self, data: bytes, pos: int) -> tuple[FieldValue, int]:
        _need(data, pos, self.size, "integer")
        end = pos + self.size
        return int.from_bytes(data[pos:end], "little", signed=self.signed), end

    def encode(self, value: FieldValue) -> bytes:
        return int(value).to_bytes(self.size, "little", signed=self.signed)


@dataclass(frozen=True, slots=True)
class Enum:
    """An integer mapped to an enum (IntEnum with UNKNOWN, or IntFlag)."""

    enum_cls: type[enum.IntEnum] | type[enum.IntFlag]
    size: int = 1

    def decode(self, data: bytes, pos: int) -> tuple[FieldValue, int]:
        _need(data, pos, self.size, self.enum_cls.__name__)
        end = pos + self.size
        return self.enum_cls(int.from_bytes(data[pos:end], "little")), end

    def encode(self, value: FieldValue) -> bytes:
        return int(value).to_bytes(self.size, "little")


@dataclass(frozen=True, slots=True)
class Ieee:
    """8-byte IEEE address, little-endian on the wire, printed MSB first."""

    def decode(self, data: bytes, pos: int) -> tuple[FieldValue, int]:
        _need(data, pos, 8, "IEEE address")
        return data[pos : pos + 8][::-1].hex(), pos + 8

    def encode(self, value: FieldValue) -> bytes:
        return bytes.fromhex(str(value).replace(":", ""))[::-1]


@dataclass(frozen=True, slots=True)
class FixedBytes:
    size: int

    def decode(self, data: bytes, pos: int) -> tuple[FieldValue, int]:
        _need(data, pos, self.size, "bytes")
        return bytes(data[pos : pos + self.size]), pos + self.size

    def encode(self, value: FieldValue) -> bytes:
        b = bytes(value)
        if len(b) != self.size:
            raise ValueError(f"need {self.size} bytes, got {len(b)}")
        return b


@dataclass(frozen=True, slots=True)
class LenBytes:
    """Bytes prefixed by their length (u8 or u16)."""

    len_size: int = 1

    def decode(self, data: bytes, pos: int) -> tuple[FieldValue, int]:
        _need(data, pos, self.len_size, "length")
        n = int.from_bytes(data[pos : pos + self.len_size], "little")
        pos += self.len_size
        _need(data, pos, n, "length-prefixed bytes")
        return bytes(data[pos : pos + n]), pos + n

    def encode(self, value: FieldValue) -> bytes:
        b = bytes(value)
        return len(b).to_bytes(self.len_size, "little") + b


@dataclass(frozen=True, slots=True)
class Held:
    """A payload the stick kept back (too large for one MT frame): only its length came;
    the host fetches it with AF_DATA_RETRIEVE (TI MT_AF.c, AF_INCOMING_MSG_EXT)."""

    length: int


@dataclass(frozen=True, slots=True)
class HeldBytes(LenBytes):
    """u16-length-prefixed bytes, or :class:`Held` when the bytes did not come with it."""

    len_size: int = 2

    def decode(self, data: bytes, pos: int) -> tuple[FieldValue, int]:
        _need(data, pos, self.len_size, "length")
        n = int.from_bytes(data[pos : pos + self.len_size], "little")
        pos += self.len_size
        if len(data) - pos < n:
            return Held(n), pos
        return bytes(data[pos : pos + n]), pos + n

    def encode(self, value: FieldValue) -> bytes:
        if isinstance(value, Held):
            return value.length.to_bytes(self.len_size, "little")
        return LenBytes.encode(self, value)


@dataclass(frozen=True, slots=True)
class Rest:
    """Every remaining byte."""

    def decode(self, data: bytes, pos: int) -> tuple[FieldValue, int]:
        return bytes(data[pos:]), len(data)

    def encode(self, value: FieldValue) -> bytes:
        return bytes(value)


@dataclass(frozen=True, slots=True)
class IntList:
    """A u8 count followed by that many integers of ``size`` bytes."""

    size: int = 2

    def decode(self, data: bytes, pos: int) -> tuple[FieldValue, int]:
        _need(data, pos, 1, "list count")
        n = data[pos]
        pos += 1
        _need(data, pos, n * self.size, "list items")
        s = self.size
        items = [int.from_bytes(data[pos + i * s : pos + (i + 1) * s], "little") for i in range(n)]
        return items, pos + n * s

    def encode(self, value: FieldValue) -> bytes:
        items = list(value)
        return bytes((len(items),)) + b"".join(int(v).to_bytes(self.size, "little") for v in items)


@dataclass(frozen=True, slots=True)
class Optional:
    """A trailing field that older firmware omits: None when no byte is left."""

    inner: Codec

    def decode(self, data: bytes, pos: int) -> tuple[FieldValue, int]:
        if pos >= len(data):
            return None, pos
        return self.inner.decode(data, pos)

    def encode(self, value: FieldValue) -> bytes:
        return b"" if value is None else self.inner.encode(value)


@dataclass(frozen=True, slots=True)
class SimpleDescriptor:
    """ZDO simple descriptor prefixed by its length (u8); empty when the length is 0."""

    def decode(self, data: bytes, pos: int) -> tuple[FieldValue, int]:
        _need(data, pos, 1, "simple descriptor length")
        n = data[pos]
        pos += 1
        _need(data, pos, n, "simple descriptor")
        if n == 0:
            return None, pos
        body = data[pos : pos + n]
        _need(body, 0, 6, "simple descriptor header")
        endpoint = body[0]
        profile, device_type = struct.unpack_from("<HH", body, 1)
        version = body[5]
        inputs, p = IntList(2).decode(body, 6)
        outputs, p = IntList(2).decode(body, p)
        if p != n:
            raise ParseError(f"simple descriptor: length byte {n}, contents {p}")
        return (
            {
                "endpoint": endpoint,
                "profile": profile,
                "device_type": device_type,
                "device_version": version,
                "input_clusters": inputs,
                "output_clusters": outputs,
            },
            pos + n,
        )

    def encode(self, value: FieldValue) -> bytes:
        if value is None:
            return b"\x00"
        body = (
            struct.pack(
                "<BHHB",
                value["endpoint"],
                value["profile"],
                value["device_type"],
                value["device_version"],
            )
            + IntList(2).encode(value["input_clusters"])
            + IntList(2).encode(value["output_clusters"])
        )
        return bytes((len(body),)) + body


U8 = UInt(1)
U16 = UInt(2)
U32 = UInt(4)
I8 = UInt(1, signed=True)
NWK = UInt(2)
IEEE = Ieee()
SHORT_BYTES = LenBytes(1)
LONG_BYTES = LenBytes(2)
NWK_LIST = IntList(2)
U8_LIST = IntList(1)
REST = Rest()
