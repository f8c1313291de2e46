"""ZCL frames: header (incl. manufacturer specific), foundation commands and the cluster
commands the gateway needs (pure)."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from drivers.errors import ParseError
from drivers.wire import WireEnum
from drivers.zigbee.zcl import types as zt

MANUFACTURER_LUMI = 0x115F

#: (cluster, attribute) pairs Xiaomi/Aqara send as strings whose length byte is often wrong:
#: take min(declared, remaining) bytes and keep them raw for the TLV parser.
LENIENT_STRING_ATTRS = frozenset({(0x0000, 0xFF01), (0xFCC0, 0x00F7)})


class FrameType(enum.IntEnum):
    GLOBAL = 0
    CLUSTER = 1


class Direction(enum.IntEnum):
    CLIENT_TO_SERVER = 0
    SERVER_TO_CLIENT = 1


class GlobalCommand(enum.IntEnum):
    READ_ATTRIBUTES = 0x00
    READ_ATTRIBUTES_RSP = 0x01
    WRITE_ATTRIBUTES = 0x02
    WRITE_ATTRIBUTES_UNDIVIDED = 0x03
    WRITE_ATTRIBUTES_RSP = 0x04
    WRITE_ATTRIBUTES_NO_RSP = 0x05
    CONFIGURE_REPORTING = 0x06
    CONFIGURE_REPORTING_RSP = 0x07
    READ_REPORTING_CONFIG = 0x08
    READ_REPORTING_CONFIG_RSP = 0x09
    REPORT_ATTRIBUTES = 0x0A
    DEFAULT_RESPONSE = 0x0B
    DISCOVER_ATTRIBUTES = 0x0C
    DISCOVER_ATTRIBUTES_RSP = 0x0D


class ZclStatus(WireEnum):
    SUCCESS = 0x00
    FAILURE = 0x01
    NOT_AUTHORIZED = 0x7E
    MALFORMED_COMMAND = 0x80
    UNSUP_CLUSTER_COMMAND = 0x81
    UNSUP_GENERAL_COMMAND = 0x82
    UNSUP_MANUF_CLUSTER_COMMAND = 0x83
    UNSUP_MANUF_GENERAL_COMMAND = 0x84
    INVALID_FIELD = 0x85
    UNSUPPORTED_ATTRIBUTE = 0x86
    INVALID_VALUE = 0x87
    READ_ONLY = 0x88
    INSUFFICIENT_SPACE = 0x89
    DUPLICATE_EXISTS = 0x8A
    NOT_FOUND = 0x8B
    UNREPORTABLE_ATTRIBUTE = 0x8C
    INVALID_DATA_TYPE = 0x8D
    INVALID_SELECTOR = 0x8E
    TIMEOUT = 0x94
    UNKNOWN = -1


@dataclass(frozen=True, slots=True)
class ZclHeader:
    frame_type: int
    direction: int
    disable_default_response: bool
    tsn: int
    command_id: int
    manufacturer: int | None = None

    @property
    def frame_control(self) -> int:
        fc = self.frame_type & 0x03
        if self.manufacturer is not None:
            fc |= 0x04
        fc |= (self.direction & 1) << 3
        if self.disable_default_response:
            fc |= 0x10
        return fc

    def encode(self) -> bytes:
        if self.manufacturer is None:
            return bytes((self.frame_control, self.tsn, self.command_id))
        return struct.pack(
            "<BHBB", self.frame_control, self.manufacturer, self.tsn, self.command_id
        )


# --- payloads ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attribute:
    """An attribute value as reported or read: id, ZCL type id and decoded value."""

    attr_id: int
    type_id: int
    value: zt.ZclValue
    #: For the lenient Xiaomi strings: the length byte as sent (None when it was right).
    declared_len: int | None = None


@dataclass(frozen=True, slots=True)
class ReadRecord:
    attr_id: int
    status: int
    attribute: Attribute | None = None


@dataclass(frozen=True, slots=True)
class ReportAttributes:
    attributes: tuple[Attribute, ...]
    #: Stray bytes after the last whole record (Xiaomi often adds a 0x00).
    trailing: bytes = b""


@dataclass(frozen=True, slots=True)
class ReadAttributes:
    attr_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ReadAttributesResponse:
    records: tuple[ReadRecord, ...]
    trailing: bytes = b""


@dataclass(frozen=True, slots=True)
class DefaultResponse:
    command_id: int
    status: int


@dataclass(frozen=True, slots=True)
class ZoneStatusChangeNotification:
    zone_status: int
    extended_status: int
    zone_id: int
    delay: int


@dataclass(frozen=True, slots=True)
class RawCommand:
    """A command we do not decode: its payload bytes."""

    payload: bytes = b""


Payload = (
    ReportAttributes
    | ReadAttributes
    | ReadAttributesResponse
    | DefaultResponse
    | ZoneStatusChangeNotification
    | RawCommand
)


@dataclass(frozen=True, slots=True)
class ZclFrame:
    cluster: int
    header: ZclHeader
    payload: Payload = field(default_factory=RawCommand)

    @property
    def is_global(self) -> bool:
        return self.header.frame_type == FrameType.GLOBAL


# --- decoding ----------------------------------------------------------------------------


def decode_header(data: bytes) -> tuple[ZclHeader, int]:
    if len(data) < 3:
        raise ParseError(f"ZCL frame too short: {len(data)} bytes")
    fc = data[0]
    pos = 1
    manufacturer: int | None = None
    if fc & 0x04:
        if len(data) < 5:
            raise ParseError("ZCL manufacturer-specific frame too short")
        manufacturer = data[1] | (data[2] << 8)
        pos = 3
    header = ZclHeader(
        frame_type=fc & 0x03,
        direction=(fc >> 3) & 1,
        disable_default_response=bool(fc & 0x10),
        tsn=data[pos],
        command_id=data[pos + 1],
        manufacturer=manufacturer,
    )
    if fc & 0xE0:
        raise ParseError(f"ZCL frame control 0x{fc:02X} has reserved bits set")
    if header.frame_type > 1:
        raise ParseError(f"ZCL frame type {header.frame_type} is reserved")
    return header, pos + 2


def _read_attribute(
    cluster: int, attr_id: int, type_id: int, data: bytes, pos: int
) -> tuple[Attribute, int]:
    if (cluster, attr_id) in LENIENT_STRING_ATTRS and type_id in (0x41, 0x42) and pos < len(data):
        declared = data[pos]
        n = min(declared, len(data) - pos - 1)
        raw = bytes(data[pos + 1 : pos + 1 + n])
        return Attribute(attr_id, type_id, raw, declared if declared != n else None), pos + 1 + n
    value, pos = zt.read_value(type_id, data, pos)
    return Attribute(attr_id, type_id, value), pos


def _report(cluster: int, data: bytes, pos: int) -> ReportAttributes:
    attrs: list[Attribute] = []
    while len(data) - pos >= 3:
        attr_id = data[pos] | (data[pos + 1] << 8)
        type_id = data[pos + 2]
        attr, pos = _read_attribute(cluster, attr_id, type_id, data, pos + 3)
        attrs.append(attr)
    trailing = bytes(data[pos:])
    if attrs and trailing.strip(b"\x00"):
        raise ParseError(f"ZCL report: {len(trailing)} stray bytes after the last record")
    if not attrs and trailing:
        raise ParseError("ZCL report: no whole attribute record")
    return ReportAttributes(tuple(attrs), trailing)


def _read_rsp(cluster: int, data: bytes, pos: int) -> ReadAttributesResponse:
    records: list[ReadRecord] = []
    while len(data) - pos >= 3:
        attr_id = data[pos] | (data[pos + 1] << 8)
        status = data[pos + 2]
        pos += 3
        if status != 0:
            records.append(ReadRecord(attr_id, ZclStatus(status)))
            continue
        if pos >= len(data):
            raise ParseError("ZCL read response: record without a type")
        type_id = data[pos]
        attr, pos = _read_attribute(cluster, attr_id, type_id, data, pos + 1)
        records.append(ReadRecord(attr_id, ZclStatus.SUCCESS, attr))
    trailing = bytes(data[pos:])
    if trailing.strip(b"\x00"):
        raise ParseError(f"ZCL read response: {len(trailing)} stray bytes")
    return ReadAttributesResponse(tuple(records), trailing)


def decode(cluster: int, data: bytes) -> ZclFrame:
    """Decode one ZCL frame of ``cluster``. Untrusted input: only ParseError escapes."""
    header, pos = decode_header(data)
    cmd = header.command_id
    payload: Payload
    if header.frame_type == FrameType.GLOBAL:
        if cmd == GlobalCommand.REPORT_ATTRIBUTES:
            payload = _report(cluster, data, pos)
        elif cmd == GlobalCommand.READ_ATTRIBUTES:
            body = data[pos:]
            if len(body) % 2:
                raise ParseError("ZCL read attributes: odd payload length")
            payload = ReadAttributes(
                tuple(body[i] | (body[i + 1] << 8) for i in range(0, len(body), 2))
            )
        elif cmd == GlobalCommand.READ_ATTRIBUTES_RSP:
            payload = _read_rsp(cluster, data, pos)
        elif cmd == GlobalCommand.DEFAULT_RESPONSE:
            if len(data) - pos != 2:
                raise ParseError("ZCL default response must carry 2 bytes")
            payload = DefaultResponse(data[pos], ZclStatus(data[pos + 1]))
        else:
            payload = RawCommand(bytes(data[pos:]))
    elif cluster == 0x0500 and header.direction == Direction.SERVER_TO_CLIENT and cmd == 0x00:
        if len(data) - pos < 3:
            raise ParseError("ZCL zone status change notification too short")
        zone_status = data[pos] | (data[pos + 1] << 8)
        ext = data[pos + 2]
        zone_id = data[pos + 3] if len(data) - pos > 3 else 0
        delay = data[pos + 4] | (data[pos + 5] << 8) if len(data) - pos >= 6 else 0
        payload = ZoneStatusChangeNotification(zone_status, ext, zone_id, delay)
    else:
        payload = RawCommand(bytes(data[pos:]))
    return ZclFrame(cluster, header, payload)


# --- encoding ----------------------------------------------------------------------------


def encode_attribute(attr: Attribute) -> bytes:
    head = struct.pack("<HB", attr.attr_id, attr.type_id)
    if attr.declared_len is not None:
        return head + bytes((attr.declared_len,)) + bytes(attr.value)
    return head + zt.write_value(attr.type_id, attr.value)


def encode(frame: ZclFrame) -> bytes:
    head = frame.header.encode()
    p = frame.payload
    if isinstance(p, ReportAttributes):
        return head + b"".join(encode_attribute(a) for a in p.attributes) + p.trailing
    if isinstance(p, ReadAttributes):
        return head + b"".join(struct.pack("<H", a) for a in p.attr_ids)
    if isinstance(p, ReadAttributesResponse):
        out = bytearray(head)
        for r in p.records:
            out += struct.pack("<HB", r.attr_id, r.status)
            if r.status == 0 and r.attribute is not None:
                out += encode_attribute(r.attribute)[2:]
        return bytes(out) + p.trailing
    if isinstance(p, DefaultResponse):
        return head + bytes((p.command_id, p.status))
    if isinstance(p, ZoneStatusChangeNotification):
        return head + struct.pack("<HBBH", p.zone_status, p.extended_status, p.zone_id, p.delay)
    return head + p.payload


def read_attributes(
    cluster: int, tsn: int, attr_ids: tuple[int, ...], manufacturer: int | None = None
) -> bytes:
    header = ZclHeader(FrameType.GLOBAL, Direction.CLIENT_TO_SERVER, False, tsn, 0x00, manufacturer)
    return encode(ZclFrame(cluster, header, ReadAttributes(attr_ids)))


def default_response(incoming: ZclHeader, tsn: int | None = None, status: int = 0) -> bytes:
    """The Default Response owed to ``incoming`` (same TSN, opposite direction)."""
    header = ZclHeader(
        FrameType.GLOBAL,
        1 - incoming.direction,
        True,
        incoming.tsn if tsn is None else tsn,
        GlobalCommand.DEFAULT_RESPONSE,
        incoming.manufacturer,
    )
    return header.encode() + bytes((incoming.command_id, status))


def cluster_command(
    tsn: int, command_id: int, payload: bytes = b"", *, disable_default_response: bool = False
) -> bytes:
    """A cluster-specific client->server command (e.g. On/Off 0x00 off, 0x01 on, 0x02 toggle)."""
    header = ZclHeader(
        FrameType.CLUSTER, Direction.CLIENT_TO_SERVER, disable_default_response, tsn, command_id
    )
    return header.encode() + payload


def needs_default_response(frame: ZclFrame) -> bool:
    """ZCL 2.5.12: answer unless disabled, or the frame is itself a response/default rsp."""
    h = frame.header
    if h.disable_default_response:
        return False
    if h.frame_type == FrameType.GLOBAL:
        return h.command_id == GlobalCommand.REPORT_ATTRIBUTES
    return True
