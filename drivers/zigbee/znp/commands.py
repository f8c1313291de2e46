"""MT/ZNP commands declared as data: one :class:`CommandDef` per command, one line each.

A definition names its command id, its name (whose prefix is its subsystem: ``SYS_``,
``AF_``, ``ZDO_``, ...), its type (SREQ, AREQ from the host, or a callback: an AREQ from the
stick) and the fields of its request, of its synchronous response (SRSP) or of the callback,
written as ``"Name:Type ..."`` over :data:`TYPES`. Field layouts follow TI's MT API as
implemented by zigpy-znp 1.1.1 and zigbee-herdsman (see docs/zigbee.md); names are
zigpy-znp's. The module is long because it is this declarative table plus the decoder that
walks it (:func:`decode`); tests/test_znp_crosscheck.py compares every entry with both peers.
"""

from __future__ import annotations

import enum
import functools
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from drivers.errors import ParseError
from drivers.zigbee.znp import codecs as cd
from drivers.zigbee.znp import types as t
from drivers.zigbee.znp.frames import Frame
from drivers.zigbee.znp.types import CommandType, Subsystem


class Kind(enum.StrEnum):
    REQUEST = "request"  # host -> stick (SREQ or AREQ)
    RESPONSE = "response"  # SRSP
    CALLBACK = "callback"  # AREQ stick -> host


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    codec: cd.Codec


Layout = tuple[Field, ...]


@dataclass(frozen=True, slots=True)
class CommandDef:
    name: str  # TI name, e.g. "SYS_OSAL_NV_READ"
    subsystem: Subsystem
    cmd_id: int
    type: CommandType  # SREQ or AREQ
    request: Layout | None
    response: Layout | None  # SRSP layout (SREQ) or callback layout (AREQ from the stick)

    def layout(self, kind: Kind) -> Layout:
        lay = self.request if kind is Kind.REQUEST else self.response
        if lay is None:
            raise ValueError(f"{self.name} has no {kind} layout")
        return lay

    def header(self, kind: Kind) -> tuple[int, int]:
        typ = CommandType.SRSP if kind is Kind.RESPONSE else self.type
        return ((typ << 5) | self.subsystem, self.cmd_id)

    def frame(self, kind: Kind, fields: Mapping[str, cd.FieldValue]) -> Frame:
        lay = self.layout(kind)
        missing = [
            f.name for f in lay if f.name not in fields and not isinstance(f.codec, cd.Optional)
        ]
        if missing:
            raise ValueError(f"{self.name} {kind}: missing fields {missing}")
        extra = set(fields) - {f.name for f in lay}
        if extra:
            raise ValueError(f"{self.name} {kind}: unknown fields {sorted(extra)}")
        data = b"".join(f.codec.encode(fields.get(f.name)) for f in lay)
        typ = CommandType.SRSP if kind is Kind.RESPONSE else self.type
        return Frame(typ, self.subsystem, self.cmd_id, data)

    def req(self, **fields: cd.FieldValue) -> Frame:
        return self.frame(Kind.REQUEST, fields)

    def rsp(self, **fields: cd.FieldValue) -> Frame:
        return self.frame(Kind.RESPONSE if self.type is CommandType.SREQ else Kind.CALLBACK, fields)


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded frame: which command, which direction, and its fields."""

    command: CommandDef
    kind: Kind
    fields: Mapping[str, cd.FieldValue]

    def __getitem__(self, name: str) -> cd.FieldValue:
        return self.fields[name]

    def to_frame(self) -> Frame:
        return self.command.frame(self.kind, self.fields)


#: The type names the layouts below use; a field written without a type has the type of its
#: name ("Status", "IEEE", "NWK", "AddrMode", ...). A trailing "?" marks a trailing field
#: older firmware omits (:class:`~drivers.zigbee.znp.codecs.Optional`).
TYPES: dict[str, cd.Codec] = {
    "U8": cd.U8,
    "U16": cd.U16,
    "U32": cd.U32,
    "I8": cd.I8,
    "NWK": cd.NWK,
    "IEEE": cd.IEEE,
    "Bytes": cd.SHORT_BYTES,
    "LongBytes": cd.LONG_BYTES,
    "Bytes8": cd.FixedBytes(8),
    "Held": cd.HeldBytes(),
    "NwkList": cd.NWK_LIST,
    "U8List": cd.U8_LIST,
    "Rest": cd.REST,
    "SimpleDescriptor": cd.SimpleDescriptor(),
    "MTCapabilities": cd.Enum(t.MTCapabilities, 2),
    **{
        e.__name__: cd.Enum(e)
        for e in (
            t.Status,
            t.ErrorCode,
            t.ResetType,
            t.ResetReason,
            t.BootloaderBuildType,
            t.AddrMode,
            t.TransmitOptions,
            t.StartupState,
            t.DeviceState,
            t.MACCapabilities,
            t.DeviceTypeCapabilities,
            t.BDBCommissioningMode,
            t.BDBCommissioningStatus,
        )
    },
}


def layout(spec: str) -> Layout:
    """``"Id:U16 Offset:U8"`` -> the fields, by :data:`TYPES`."""
    fields: list[Field] = []
    for item in spec.split():
        name, _, typ = item.rstrip("?").partition(":")
        codec = TYPES[typ or name]
        fields.append(Field(name, cd.Optional(codec) if item.endswith("?") else codec))
    return tuple(fields)


_DEFS: list[CommandDef] = []


#: MT names start with their subsystem (TI's MT_<subsystem> files; ZB_ is the simple API).
PREFIXES = {
    "RPC_ERROR_": Subsystem.RPC_ERROR,
    "SYS_": Subsystem.SYS,
    "AF_": Subsystem.AF,
    "ZDO_": Subsystem.ZDO,
    "ZB_": Subsystem.SAPI,
    "UTIL_": Subsystem.UTIL,
    "APP_CNF_": Subsystem.APP_CNF,
}


def _define(
    cmd_id: int, name: str, typ: CommandType, req: str | None, rsp: str | None
) -> CommandDef:
    cmd = CommandDef(
        name,
        next(s for p, s in PREFIXES.items() if name.startswith(p)),
        cmd_id,
        typ,
        None if req is None else layout(req),
        None if rsp is None else layout(rsp),
    )
    _DEFS.append(cmd)
    return cmd


def _sreq(cmd_id: int, name: str, req: str | None, rsp: str) -> CommandDef:
    """A synchronous request and the layout of its SRSP."""
    return _define(cmd_id, name, CommandType.SREQ, req, rsp)


def _areq(cmd_id: int, name: str, req: str) -> CommandDef:
    """An asynchronous request from the host (no answer)."""
    return _define(cmd_id, name, CommandType.AREQ, req, None)


def _callback(cmd_id: int, name: str, fields: str) -> CommandDef:
    """An asynchronous indication from the stick."""
    return _define(cmd_id, name, CommandType.AREQ, None, fields)


ADDR_RSP = "Status IEEE NWK StartIndex:U8 AssocDevices:NwkList"
RELEASE = "TransportRev:U8 ProductId:U8 MajorRel:U8 MinorRel:U8 MaintRel:U8"
SYS_NV_ITEM = "SysId:U8 ItemId:U16 SubId:U16"
AF_HEADER = "GroupId:U16 ClusterId:U16"
AF_TRAILER = "WasBroadcast:U8 LQI:U8 SecurityUse:U8 TimeStamp:U32 TSN:U8"
AF_MAC = "MacSrcAddr:NWK? MsgResultRadius:U8?"
AF_TX = "TSN:U8 Options:TransmitOptions Radius:U8"

# One command a line: a table (pyproject lets this file pass 100 columns).
# fmt: off
# --- RPC error ------------------------------------------------------------------------------
RPC_ERROR = _sreq(0x00, "RPC_ERROR_COMMAND_NOT_RECOGNIZED", None, "ErrorCode RequestHeader:U16")
# --- SYS ------------------------------------------------------------------------------------
SYS_RESET_REQ = _areq(0x00, "SYS_RESET_REQ", "Type:ResetType")
SYS_PING = _sreq(0x01, "SYS_PING", "", "Capabilities:MTCapabilities")
SYS_VERSION = _sreq(0x02, "SYS_VERSION", "", f"{RELEASE} CodeRevision:U32? BootloaderBuildType? BootloaderRevision:U32?")
SYS_SET_EXTADDR = _sreq(0x03, "SYS_SET_EXTADDR", "ExtAddr:IEEE", "Status")
SYS_GET_EXTADDR = _sreq(0x04, "SYS_GET_EXTADDR", "", "ExtAddr:IEEE")
SYS_OSAL_NV_ITEM_INIT = _sreq(0x07, "SYS_OSAL_NV_ITEM_INIT", "Id:U16 ItemLen:U16 Value:Bytes", "Status")
SYS_OSAL_NV_READ = _sreq(0x08, "SYS_OSAL_NV_READ", "Id:U16 Offset:U8", "Status Value:Bytes")
SYS_OSAL_NV_WRITE = _sreq(0x09, "SYS_OSAL_NV_WRITE", "Id:U16 Offset:U8 Value:Bytes", "Status")
# TX power in dBm: signed (TI, herdsman)
SYS_STACK_TUNE = _sreq(0x0F, "SYS_STACK_TUNE", "Operation:U8 Value:I8", "Value:U8")
SYS_OSAL_NV_DELETE = _sreq(0x12, "SYS_OSAL_NV_DELETE", "Id:U16 ItemLen:U16", "Status")
SYS_OSAL_NV_LENGTH = _sreq(0x13, "SYS_OSAL_NV_LENGTH", "Id:U16", "ItemLen:U16")
SYS_SET_TX_POWER = _sreq(0x14, "SYS_SET_TX_POWER", "TXPower:I8", "StatusOrPower:I8")
SYS_OSAL_NV_READ_EXT = _sreq(0x1C, "SYS_OSAL_NV_READ_EXT", "Id:U16 Offset:U16", "Status Value:Bytes")
SYS_OSAL_NV_WRITE_EXT = _sreq(0x1D, "SYS_OSAL_NV_WRITE_EXT", "Id:U16 Offset:U16 Value:LongBytes", "Status")
SYS_NV_CREATE = _sreq(0x30, "SYS_NV_CREATE", f"{SYS_NV_ITEM} Length:U32", "Status")
SYS_NV_DELETE = _sreq(0x31, "SYS_NV_DELETE", SYS_NV_ITEM, "Status")
# TI MT_SYS.c: the length is a uint32 (herdsman reads its first byte)
SYS_NV_LENGTH = _sreq(0x32, "SYS_NV_LENGTH", SYS_NV_ITEM, "Length:U32")
SYS_NV_READ = _sreq(0x33, "SYS_NV_READ", f"{SYS_NV_ITEM} Offset:U16 Length:U8", "Status Value:Bytes")
SYS_NV_WRITE = _sreq(0x34, "SYS_NV_WRITE", f"{SYS_NV_ITEM} Offset:U16 Value:Bytes", "Status")
SYS_RESET_IND = _callback(0x80, "SYS_RESET_IND", f"Reason:ResetReason {RELEASE}")
# --- AF -------------------------------------------------------------------------------------
AF_REGISTER = _sreq(0x00, "AF_REGISTER", "Endpoint:U8 ProfileId:U16 DeviceId:U16 DeviceVersion:U8 LatencyReq:U8 InputClusters:NwkList OutputClusters:NwkList", "Status")
AF_DATA_REQUEST = _sreq(0x01, "AF_DATA_REQUEST", f"DstAddr:NWK DstEndpoint:U8 SrcEndpoint:U8 ClusterId:U16 {AF_TX} Data:Bytes", "Status")
AF_DATA_REQUEST_EXT = _sreq(0x02, "AF_DATA_REQUEST_EXT", f"DstAddrMode:AddrMode DstAddr:Bytes8 DstEndpoint:U8 DstPanId:U16 SrcEndpoint:U8 ClusterId:U16 {AF_TX} Data:LongBytes", "Status")
AF_DATA_CONFIRM = _callback(0x80, "AF_DATA_CONFIRM", "Status Endpoint:U8 TSN:U8")
AF_INCOMING_MSG = _callback(0x81, "AF_INCOMING_MSG", f"{AF_HEADER} SrcAddr:NWK SrcEndpoint:U8 DstEndpoint:U8 {AF_TRAILER} Data:Bytes {AF_MAC}")
# a large payload stays on the stick (Data is Held): the host fetches it by AF_DATA_RETRIEVE
AF_INCOMING_MSG_EXT = _callback(0x82, "AF_INCOMING_MSG_EXT", f"{AF_HEADER} SrcAddrMode:AddrMode SrcAddr:Bytes8 SrcEndpoint:U8 SrcPanId:U16 DstEndpoint:U8 {AF_TRAILER} Data:Held {AF_MAC}")
AF_DATA_RETRIEVE = _sreq(0x12, "AF_DATA_RETRIEVE", "TimeStamp:U32 Index:U16 Length:U8", "Status Data:Bytes")
# --- ZDO requests ---------------------------------------------------------------------------
ZDO_NWK_ADDR_REQ = _sreq(0x00, "ZDO_NWK_ADDR_REQ", "IEEE RequestType:U8 StartIndex:U8", "Status")
ZDO_IEEE_ADDR_REQ = _sreq(0x01, "ZDO_IEEE_ADDR_REQ", "NWK RequestType:U8 StartIndex:U8", "Status")
ZDO_NODE_DESC_REQ = _sreq(0x02, "ZDO_NODE_DESC_REQ", "DstAddr:NWK NWKAddrOfInterest:NWK", "Status")
ZDO_SIMPLE_DESC_REQ = _sreq(0x04, "ZDO_SIMPLE_DESC_REQ", "DstAddr:NWK NWKAddrOfInterest:NWK Endpoint:U8", "Status")
ZDO_ACTIVE_EP_REQ = _sreq(0x05, "ZDO_ACTIVE_EP_REQ", "DstAddr:NWK NWKAddrOfInterest:NWK", "Status")
ZDO_MGMT_LQI_REQ = _sreq(0x31, "ZDO_MGMT_LQI_REQ", "Dst:NWK StartIndex:U8", "Status")
ZDO_MGMT_LEAVE_REQ = _sreq(0x34, "ZDO_MGMT_LEAVE_REQ", "DstAddr:NWK IEEE RemoveChildren_Rejoin:U8", "Status")
ZDO_MGMT_PERMIT_JOIN_REQ = _sreq(0x36, "ZDO_MGMT_PERMIT_JOIN_REQ", "AddrMode Dst:NWK Duration:U8 TCSignificance:U8", "Status")
ZDO_MSG_CB_REGISTER = _sreq(0x3E, "ZDO_MSG_CB_REGISTER", "ClusterId:U16", "Status")
ZDO_STARTUP_FROM_APP = _sreq(0x40, "ZDO_STARTUP_FROM_APP", "StartDelay:U16", "State:StartupState")
ZDO_EXT_ROUTE_DISC = _sreq(0x45, "ZDO_EXT_ROUTE_DISC", "Dst:NWK Options:U8 Radius:U8", "Status")
# TI MT_ZdoExtFindGroup: status, then the aps_Group_t (id, name length, 16 name bytes): 19
# bytes whatever the name length
ZDO_EXT_FIND_GROUP = _sreq(0x4A, "ZDO_EXT_FIND_GROUP", "Endpoint:U8 GroupId:U16", "Status Group:Rest")
ZDO_EXT_ADD_GROUP = _sreq(0x4B, "ZDO_EXT_ADD_GROUP", "Endpoint:U8 GroupId:U16 GroupName:Bytes", "Status")
# TI MT_ZDO.c MT_ZdoExtNwkInfo and zigbee-herdsman's extNwkInfo: 24 bytes with the device
# state after the short address (zigpy-znp's table omits it: docs/zigbee.md)
ZDO_EXT_NWK_INFO = _sreq(0x50, "ZDO_EXT_NWK_INFO", "", "Dst:NWK DevState:DeviceState PanId:U16 ParentNWK:NWK ExtendedPanId:IEEE ParentIEEE:IEEE Channel:U8")
# --- ZDO callbacks --------------------------------------------------------------------------
ZDO_NWK_ADDR_RSP = _callback(0x80, "ZDO_NWK_ADDR_RSP", ADDR_RSP)
ZDO_IEEE_ADDR_RSP = _callback(0x81, "ZDO_IEEE_ADDR_RSP", ADDR_RSP)
ZDO_NODE_DESC_RSP = _callback(0x82, "ZDO_NODE_DESC_RSP", "Src:NWK Status NWK NodeDescriptor:Rest")
ZDO_SIMPLE_DESC_RSP = _callback(0x84, "ZDO_SIMPLE_DESC_RSP", "Src:NWK Status NWK SimpleDescriptor")
ZDO_ACTIVE_EP_RSP = _callback(0x85, "ZDO_ACTIVE_EP_RSP", "Src:NWK Status NWK ActiveEndpoints:U8List")
ZDO_MGMT_LEAVE_RSP = _callback(0xB4, "ZDO_MGMT_LEAVE_RSP", "Src:NWK Status")
ZDO_MGMT_PERMIT_JOIN_RSP = _callback(0xB6, "ZDO_MGMT_PERMIT_JOIN_RSP", "Src:NWK Status")
ZDO_STATE_CHANGE_IND = _callback(0xC0, "ZDO_STATE_CHANGE_IND", "State:DeviceState")
ZDO_END_DEVICE_ANNCE_IND = _callback(0xC1, "ZDO_END_DEVICE_ANNCE_IND", "Src:NWK NWK IEEE Capabilities:MACCapabilities")
ZDO_SRC_RTG_IND = _callback(0xC4, "ZDO_SRC_RTG_IND", "DstAddr:NWK Relays:NwkList")
ZDO_LEAVE_IND = _callback(0xC9, "ZDO_LEAVE_IND", "NWK IEEE Request:U8 Remove:U8 Rejoin:U8")
ZDO_TC_DEV_IND = _callback(0xCA, "ZDO_TC_DEV_IND", "SrcNwk:NWK SrcIEEE:IEEE ParentNwk:NWK")
ZDO_PERMIT_JOIN_IND = _callback(0xCB, "ZDO_PERMIT_JOIN_IND", "Duration:U8")
ZDO_MSG_CB_INCOMING = _callback(0xFF, "ZDO_MSG_CB_INCOMING", "Src:NWK IsBroadcast:U8 ClusterId:U16 SecurityUse:U8 TSN:U8 MacDst:NWK Data:Rest")
# --- UTIL -----------------------------------------------------------------------------------
UTIL_GET_DEVICE_INFO = _sreq(0x00, "UTIL_GET_DEVICE_INFO", "", "Status IEEE NWK DeviceType:DeviceTypeCapabilities DeviceState AssociatedDevices:NwkList")
# one associated_devices_t: 28 bytes packed, 36 aligned (zigpy-znp tells the firmware's
# struct alignment from this length; all 0xFF: no entry)
UTIL_ASSOC_FIND_DEVICE = _sreq(0x49, "UTIL_ASSOC_FIND_DEVICE", "Index:U8", "Device:Rest")
UTIL_ASSOC_GET_WITH_ADDRESS = _sreq(0x4A, "UTIL_ASSOC_GET_WITH_ADDRESS", "IEEE NWK", "Device:Rest")
UTIL_LED_CONTROL = _sreq(0x0A, "UTIL_LED_CONTROL", "LED:U8 Mode:U8", "Status")
# --- SAPI -----------------------------------------------------------------------------------
# Z-Stack 1.2 refuses SYS_OSAL_NV_READ of secure items (keys) but answers this one for
# config ids up to 0xFF, as zigpy-znp and zigbee-herdsman read the key there.
ZB_READ_CONFIGURATION = _sreq(0x04, "ZB_READ_CONFIGURATION", "ConfigId:U8", "Status ConfigId:U8 Value:Bytes")
ZB_WRITE_CONFIGURATION = _sreq(0x05, "ZB_WRITE_CONFIGURATION", "ConfigId:U8 Value:Bytes", "Status")
# --- APP_CNF --------------------------------------------------------------------------------
APP_CNF_BDB_START_COMMISSIONING = _sreq(0x05, "APP_CNF_BDB_START_COMMISSIONING", "Mode:BDBCommissioningMode", "Status")
APP_CNF_BDB_SET_CHANNEL = _sreq(0x08, "APP_CNF_BDB_SET_CHANNEL", "IsPrimary:U8 Channel:U32", "Status")
APP_CNF_SET_NWK_FRAME_COUNTER = _sreq(0xFF, "APP_CNF_SET_NWK_FRAME_COUNTER", "FrameCounterValue:U32", "Status")
APP_CNF_BDB_COMMISSIONING_NOTIFICATION = _callback(0x80, "APP_CNF_BDB_COMMISSIONING_NOTIFICATION", "Status:BDBCommissioningStatus Mode:BDBCommissioningMode RemainingModes:BDBCommissioningMode")
# fmt: on

COMMANDS: tuple[CommandDef, ...] = tuple(_DEFS)
BY_NAME: dict[str, CommandDef] = {c.name: c for c in COMMANDS}


def _index() -> dict[tuple[int, int], tuple[CommandDef, Kind]]:
    idx: dict[tuple[int, int], tuple[CommandDef, Kind]] = {}
    for c in COMMANDS:
        entries: list[Kind] = []
        if c.request is not None:
            entries.append(Kind.REQUEST)
        if c.response is not None:
            entries.append(Kind.RESPONSE if c.type is CommandType.SREQ else Kind.CALLBACK)
        for kind in entries:
            key = c.header(kind)
            if key in idx:  # pragma: no cover - table bug, caught by the table walk test
                raise RuntimeError(f"duplicate header {key} for {c.name}")
            idx[key] = (c, kind)
    return idx


BY_HEADER = _index()


def lookup(frame: Frame) -> tuple[CommandDef, Kind] | None:
    return BY_HEADER.get((frame.cmd0, frame.cmd_id))


_STRUCT_CODES = {
    (1, False): "B",
    (2, False): "H",
    (4, False): "I",
    (8, False): "Q",
    (1, True): "b",
    (2, True): "h",
    (4, True): "i",
    (8, True): "q",
}

Conv = Callable[[Any], cd.FieldValue] | None
#: A decoding step: a run of fixed-size fields read with one struct, or one codec.
Step = tuple[struct.Struct, tuple[tuple[str, Conv], ...]] | Field


def _ieee(raw: bytes) -> str:
    return raw[::-1].hex()


def _fixed(codec: cd.Codec) -> tuple[str, Conv] | None:
    if isinstance(codec, cd.UInt) and (codec.size, codec.signed) in _STRUCT_CODES:
        return _STRUCT_CODES[(codec.size, codec.signed)], None
    if isinstance(codec, cd.Enum) and (codec.size, False) in _STRUCT_CODES:
        return _STRUCT_CODES[(codec.size, False)], codec.enum_cls
    if isinstance(codec, cd.Ieee):
        return "8s", _ieee
    return None


@functools.cache
def _plan(layout: Layout) -> tuple[Step, ...]:
    """Consecutive fixed-size fields are read with one precompiled struct (speed)."""
    steps: list[Step] = []
    fmt = ""
    names: list[tuple[str, Conv]] = []
    for f in layout:
        fixed = _fixed(f.codec)
        if fixed is not None:
            fmt += fixed[0]
            names.append((f.name, fixed[1]))
            continue
        if names:
            steps.append((struct.Struct("<" + fmt), tuple(names)))
            fmt, names = "", []
        steps.append(f)
    if names:
        steps.append((struct.Struct("<" + fmt), tuple(names)))
    return tuple(steps)


def decode_fields(layout: Layout, data: bytes, what: str) -> dict[str, cd.FieldValue]:
    out: dict[str, cd.FieldValue] = {}
    pos = 0
    n = len(data)
    for step in _plan(layout):
        if isinstance(step, Field):
            out[step.name], pos = step.codec.decode(data, pos)
            continue
        st, names = step
        if pos + st.size > n:
            raise ParseError(f"{what}: need {st.size} bytes at offset {pos}, {n - pos} left")
        for (name, conv), value in zip(names, st.unpack_from(data, pos), strict=True):
            out[name] = value if conv is None else conv(value)
        pos += st.size
    if pos != n:
        raise ParseError(f"{what}: {n - pos} unexpected trailing bytes")
    return out


def decode(frame: Frame) -> Message:
    """Decode a frame's payload by the command table. Unknown or malformed: ParseError."""
    hit = BY_HEADER.get((frame.cmd0, frame.cmd_id))
    if hit is None:
        raise ParseError(f"unknown MT command cmd0=0x{frame.cmd0:02X} cmd1=0x{frame.cmd_id:02X}")
    cmd, kind = hit
    return Message(cmd, kind, decode_fields(cmd.layout(kind), frame.data, f"{cmd.name} {kind}"))


#: Commands whose ``Id`` field names an OSAL NV item (requests), for secret redaction.
NV_ID_COMMANDS = frozenset(
    {
        SYS_OSAL_NV_ITEM_INIT,
        SYS_OSAL_NV_READ,
        SYS_OSAL_NV_WRITE,
        SYS_OSAL_NV_READ_EXT,
        SYS_OSAL_NV_WRITE_EXT,
    }
)


def touches_secret(command: CommandDef, fields: Mapping[str, cd.FieldValue]) -> bool:
    """True for an NV request on a key item (its bytes, and its answer's, are secret)."""
    if command is ZB_READ_CONFIGURATION:
        return fields.get("ConfigId") in t.SECRET_NV_IDS
    return command in NV_ID_COMMANDS and fields.get("Id") in t.SECRET_NV_IDS
