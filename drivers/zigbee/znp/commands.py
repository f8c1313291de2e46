"""MT/ZNP commands declared as data: one :class:`CommandDef` per command.

A definition names its subsystem, command id and type (SREQ or AREQ) and lists the fields of
its request, of its synchronous response (SRSP) or, for an AREQ sent by the stick, of the
callback. Field layouts follow TI's MT API as implemented by zigpy-znp 1.1.1 and
zigbee-herdsman (see docs/zigbee.md); names are zigpy-znp's.
"""

from __future__ import annotations

import enum
import functools
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from drivers.errors import ParseError
from drivers.zigbee.znp import types as t
from drivers.zigbee.znp.frames import CommandType, Frame, Subsystem


class Kind(enum.StrEnum):
    REQUEST = "request"  # host -> stick (SREQ or AREQ)
    RESPONSE = "response"  # SRSP
    CALLBACK = "callback"  # AREQ stick -> host


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    codec: t.Codec


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

    def frame(self, kind: Kind, fields: Mapping[str, t.FieldValue]) -> Frame:
        lay = self.layout(kind)
        missing = [
            f.name for f in lay if f.name not in fields and not isinstance(f.codec, t.Optional)
        ]
        if missing:
            raise ValueError(f"{self.name} {kind}: missing fields {missing}")
        extra = set(fields) - {f.name for f in lay}
        if extra:
            raise ValueError(f"{self.name} {kind}: unknown fields {sorted(extra)}")
        data = b"".join(f.codec.encode(fields.get(f.name)) for f in lay)
        typ = CommandType.SRSP if kind is Kind.RESPONSE else self.type
        return Frame(typ, self.subsystem, self.cmd_id, data)

    def req(self, **fields: t.FieldValue) -> Frame:
        return self.frame(Kind.REQUEST, fields)

    def rsp(self, **fields: t.FieldValue) -> Frame:
        return self.frame(Kind.RESPONSE if self.type is CommandType.SREQ else Kind.CALLBACK, fields)


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded frame: which command, which direction, and its fields."""

    command: CommandDef
    kind: Kind
    fields: Mapping[str, t.FieldValue]

    def __getitem__(self, name: str) -> t.FieldValue:
        return self.fields[name]

    def to_frame(self) -> Frame:
        return self.command.frame(self.kind, self.fields)


def _f(name: str, codec: t.Codec) -> Field:
    return Field(name, codec)


def _opt(name: str, codec: t.Codec) -> Field:
    return Field(name, t.Optional(codec))


STATUS = _f("Status", t.Enum(t.Status))
SREQ, AREQ = CommandType.SREQ, CommandType.AREQ
S = Subsystem

COMMANDS: tuple[CommandDef, ...] = (
    # --- RPC error ------------------------------------------------------------------------
    CommandDef(
        "RPC_ERROR_COMMAND_NOT_RECOGNIZED",
        S.RPC_ERROR,
        0x00,
        SREQ,
        None,
        (_f("ErrorCode", t.Enum(t.ErrorCode)), _f("RequestHeader", t.U16)),
    ),
    # --- SYS ------------------------------------------------------------------------------
    CommandDef("SYS_RESET_REQ", S.SYS, 0x00, AREQ, (_f("Type", t.Enum(t.ResetType)),), None),
    CommandDef(
        "SYS_PING", S.SYS, 0x01, SREQ, (), (_f("Capabilities", t.Enum(t.MTCapabilities, 2)),)
    ),
    CommandDef(
        "SYS_VERSION",
        S.SYS,
        0x02,
        SREQ,
        (),
        (
            _f("TransportRev", t.U8),
            _f("ProductId", t.U8),
            _f("MajorRel", t.U8),
            _f("MinorRel", t.U8),
            _f("MaintRel", t.U8),
            _opt("CodeRevision", t.U32),
            _opt("BootloaderBuildType", t.Enum(t.BootloaderBuildType)),
            _opt("BootloaderRevision", t.U32),
        ),
    ),
    CommandDef("SYS_SET_EXTADDR", S.SYS, 0x03, SREQ, (_f("ExtAddr", t.IEEE),), (STATUS,)),
    CommandDef("SYS_GET_EXTADDR", S.SYS, 0x04, SREQ, (), (_f("ExtAddr", t.IEEE),)),
    CommandDef(
        "SYS_OSAL_NV_ITEM_INIT",
        S.SYS,
        0x07,
        SREQ,
        (_f("Id", t.U16), _f("ItemLen", t.U16), _f("Value", t.SHORT_BYTES)),
        (STATUS,),
    ),
    CommandDef(
        "SYS_OSAL_NV_READ",
        S.SYS,
        0x08,
        SREQ,
        (_f("Id", t.U16), _f("Offset", t.U8)),
        (STATUS, _f("Value", t.SHORT_BYTES)),
    ),
    CommandDef(
        "SYS_OSAL_NV_WRITE",
        S.SYS,
        0x09,
        SREQ,
        (_f("Id", t.U16), _f("Offset", t.U8), _f("Value", t.SHORT_BYTES)),
        (STATUS,),
    ),
    CommandDef(
        "SYS_STACK_TUNE",
        S.SYS,
        0x0F,
        SREQ,
        (_f("Operation", t.U8), _f("Value", t.I8)),  # TX power in dBm: signed (TI, herdsman)
        (_f("Value", t.U8),),
    ),
    CommandDef(
        "SYS_OSAL_NV_DELETE",
        S.SYS,
        0x12,
        SREQ,
        (_f("Id", t.U16), _f("ItemLen", t.U16)),
        (STATUS,),
    ),
    CommandDef(
        "SYS_OSAL_NV_LENGTH", S.SYS, 0x13, SREQ, (_f("Id", t.U16),), (_f("ItemLen", t.U16),)
    ),
    CommandDef(
        "SYS_SET_TX_POWER", S.SYS, 0x14, SREQ, (_f("TXPower", t.I8),), (_f("StatusOrPower", t.I8),)
    ),
    CommandDef(
        "SYS_OSAL_NV_READ_EXT",
        S.SYS,
        0x1C,
        SREQ,
        (_f("Id", t.U16), _f("Offset", t.U16)),
        (STATUS, _f("Value", t.SHORT_BYTES)),
    ),
    CommandDef(
        "SYS_OSAL_NV_WRITE_EXT",
        S.SYS,
        0x1D,
        SREQ,
        (_f("Id", t.U16), _f("Offset", t.U16), _f("Value", t.LONG_BYTES)),
        (STATUS,),
    ),
    CommandDef(
        "SYS_NV_CREATE",
        S.SYS,
        0x30,
        SREQ,
        (_f("SysId", t.U8), _f("ItemId", t.U16), _f("SubId", t.U16), _f("Length", t.U32)),
        (STATUS,),
    ),
    CommandDef(
        "SYS_NV_DELETE",
        S.SYS,
        0x31,
        SREQ,
        (_f("SysId", t.U8), _f("ItemId", t.U16), _f("SubId", t.U16)),
        (STATUS,),
    ),
    CommandDef(
        "SYS_NV_LENGTH",
        S.SYS,
        0x32,
        SREQ,
        (_f("SysId", t.U8), _f("ItemId", t.U16), _f("SubId", t.U16)),
        (_f("Length", t.U32),),  # TI MT_SYS.c: a uint32 (herdsman reads its first byte)
    ),
    CommandDef(
        "SYS_NV_READ",
        S.SYS,
        0x33,
        SREQ,
        (
            _f("SysId", t.U8),
            _f("ItemId", t.U16),
            _f("SubId", t.U16),
            _f("Offset", t.U16),
            _f("Length", t.U8),
        ),
        (STATUS, _f("Value", t.SHORT_BYTES)),
    ),
    CommandDef(
        "SYS_NV_WRITE",
        S.SYS,
        0x34,
        SREQ,
        (
            _f("SysId", t.U8),
            _f("ItemId", t.U16),
            _f("SubId", t.U16),
            _f("Offset", t.U16),
            _f("Value", t.SHORT_BYTES),
        ),
        (STATUS,),
    ),
    CommandDef(
        "SYS_RESET_IND",
        S.SYS,
        0x80,
        AREQ,
        None,
        (
            _f("Reason", t.Enum(t.ResetReason)),
            _f("TransportRev", t.U8),
            _f("ProductId", t.U8),
            _f("MajorRel", t.U8),
            _f("MinorRel", t.U8),
            _f("MaintRel", t.U8),
        ),
    ),
    # --- AF -------------------------------------------------------------------------------
    CommandDef(
        "AF_REGISTER",
        S.AF,
        0x00,
        SREQ,
        (
            _f("Endpoint", t.U8),
            _f("ProfileId", t.U16),
            _f("DeviceId", t.U16),
            _f("DeviceVersion", t.U8),
            _f("LatencyReq", t.U8),
            _f("InputClusters", t.NWK_LIST),
            _f("OutputClusters", t.NWK_LIST),
        ),
        (STATUS,),
    ),
    CommandDef(
        "AF_DATA_REQUEST",
        S.AF,
        0x01,
        SREQ,
        (
            _f("DstAddr", t.NWK),
            _f("DstEndpoint", t.U8),
            _f("SrcEndpoint", t.U8),
            _f("ClusterId", t.U16),
            _f("TSN", t.U8),
            _f("Options", t.Enum(t.TransmitOptions)),
            _f("Radius", t.U8),
            _f("Data", t.SHORT_BYTES),
        ),
        (STATUS,),
    ),
    CommandDef(
        "AF_DATA_REQUEST_EXT",
        S.AF,
        0x02,
        SREQ,
        (
            _f("DstAddrMode", t.Enum(t.AddrMode)),
            _f("DstAddr", t.FixedBytes(8)),
            _f("DstEndpoint", t.U8),
            _f("DstPanId", t.U16),
            _f("SrcEndpoint", t.U8),
            _f("ClusterId", t.U16),
            _f("TSN", t.U8),
            _f("Options", t.Enum(t.TransmitOptions)),
            _f("Radius", t.U8),
            _f("Data", t.LONG_BYTES),
        ),
        (STATUS,),
    ),
    CommandDef(
        "AF_DATA_CONFIRM",
        S.AF,
        0x80,
        AREQ,
        None,
        (STATUS, _f("Endpoint", t.U8), _f("TSN", t.U8)),
    ),
    CommandDef(
        "AF_INCOMING_MSG",
        S.AF,
        0x81,
        AREQ,
        None,
        (
            _f("GroupId", t.U16),
            _f("ClusterId", t.U16),
            _f("SrcAddr", t.NWK),
            _f("SrcEndpoint", t.U8),
            _f("DstEndpoint", t.U8),
            _f("WasBroadcast", t.U8),
            _f("LQI", t.U8),
            _f("SecurityUse", t.U8),
            _f("TimeStamp", t.U32),
            _f("TSN", t.U8),
            _f("Data", t.SHORT_BYTES),
            _opt("MacSrcAddr", t.NWK),
            _opt("MsgResultRadius", t.U8),
        ),
    ),
    CommandDef(
        "AF_INCOMING_MSG_EXT",
        S.AF,
        0x82,
        AREQ,
        None,
        (
            _f("GroupId", t.U16),
            _f("ClusterId", t.U16),
            _f("SrcAddrMode", t.Enum(t.AddrMode)),
            _f("SrcAddr", t.FixedBytes(8)),
            _f("SrcEndpoint", t.U8),
            _f("SrcPanId", t.U16),
            _f("DstEndpoint", t.U8),
            _f("WasBroadcast", t.U8),
            _f("LQI", t.U8),
            _f("SecurityUse", t.U8),
            _f("TimeStamp", t.U32),
            _f("TSN", t.U8),
            _f("Data", t.HeldBytes()),  # a large payload stays on the stick: AF_DATA_RETRIEVE
            _opt("MacSrcAddr", t.NWK),
            _opt("MsgResultRadius", t.U8),
        ),
    ),
    CommandDef(
        "AF_DATA_RETRIEVE",
        S.AF,
        0x12,
        SREQ,
        (_f("TimeStamp", t.U32), _f("Index", t.U16), _f("Length", t.U8)),
        (STATUS, _f("Data", t.SHORT_BYTES)),
    ),
    # --- ZDO requests ---------------------------------------------------------------------
    CommandDef(
        "ZDO_NWK_ADDR_REQ",
        S.ZDO,
        0x00,
        SREQ,
        (_f("IEEE", t.IEEE), _f("RequestType", t.U8), _f("StartIndex", t.U8)),
        (STATUS,),
    ),
    CommandDef(
        "ZDO_IEEE_ADDR_REQ",
        S.ZDO,
        0x01,
        SREQ,
        (_f("NWK", t.NWK), _f("RequestType", t.U8), _f("StartIndex", t.U8)),
        (STATUS,),
    ),
    CommandDef(
        "ZDO_NODE_DESC_REQ",
        S.ZDO,
        0x02,
        SREQ,
        (_f("DstAddr", t.NWK), _f("NWKAddrOfInterest", t.NWK)),
        (STATUS,),
    ),
    CommandDef(
        "ZDO_SIMPLE_DESC_REQ",
        S.ZDO,
        0x04,
        SREQ,
        (_f("DstAddr", t.NWK), _f("NWKAddrOfInterest", t.NWK), _f("Endpoint", t.U8)),
        (STATUS,),
    ),
    CommandDef(
        "ZDO_ACTIVE_EP_REQ",
        S.ZDO,
        0x05,
        SREQ,
        (_f("DstAddr", t.NWK), _f("NWKAddrOfInterest", t.NWK)),
        (STATUS,),
    ),
    CommandDef(
        "ZDO_MGMT_LQI_REQ",
        S.ZDO,
        0x31,
        SREQ,
        (_f("Dst", t.NWK), _f("StartIndex", t.U8)),
        (STATUS,),
    ),
    CommandDef(
        "ZDO_MGMT_LEAVE_REQ",
        S.ZDO,
        0x34,
        SREQ,
        (_f("DstAddr", t.NWK), _f("IEEE", t.IEEE), _f("RemoveChildren_Rejoin", t.U8)),
        (STATUS,),
    ),
    CommandDef(
        "ZDO_MGMT_PERMIT_JOIN_REQ",
        S.ZDO,
        0x36,
        SREQ,
        (
            _f("AddrMode", t.Enum(t.AddrMode)),
            _f("Dst", t.NWK),
            _f("Duration", t.U8),
            _f("TCSignificance", t.U8),
        ),
        (STATUS,),
    ),
    CommandDef("ZDO_MSG_CB_REGISTER", S.ZDO, 0x3E, SREQ, (_f("ClusterId", t.U16),), (STATUS,)),
    CommandDef(
        "ZDO_STARTUP_FROM_APP",
        S.ZDO,
        0x40,
        SREQ,
        (_f("StartDelay", t.U16),),
        (_f("State", t.Enum(t.StartupState)),),
    ),
    CommandDef(
        "ZDO_EXT_NWK_INFO",
        S.ZDO,
        0x50,
        SREQ,
        (),
        # TI MT_ZDO.c MT_ZdoExtNwkInfo and zigbee-herdsman's extNwkInfo: 24 bytes with the
        # device state after the short address (zigpy-znp's table omits it: docs/zigbee.md)
        (
            _f("Dst", t.NWK),
            _f("DevState", t.Enum(t.DeviceState)),
            _f("PanId", t.U16),
            _f("ParentNWK", t.NWK),
            _f("ExtendedPanId", t.IEEE),
            _f("ParentIEEE", t.IEEE),
            _f("Channel", t.U8),
        ),
    ),
    CommandDef(
        "ZDO_EXT_ROUTE_DISC",
        S.ZDO,
        0x45,
        SREQ,
        (_f("Dst", t.NWK), _f("Options", t.U8), _f("Radius", t.U8)),
        (STATUS,),
    ),
    CommandDef(
        "ZDO_EXT_FIND_GROUP",
        S.ZDO,
        0x4A,
        SREQ,
        (_f("Endpoint", t.U8), _f("GroupId", t.U16)),
        # TI MT_ZdoExtFindGroup: status, then the aps_Group_t (id, name length, 16 name
        # bytes): 19 bytes whatever the name length
        (STATUS, _f("Group", t.REST)),
    ),
    CommandDef(
        "ZDO_EXT_ADD_GROUP",
        S.ZDO,
        0x4B,
        SREQ,
        (_f("Endpoint", t.U8), _f("GroupId", t.U16), _f("GroupName", t.SHORT_BYTES)),
        (STATUS,),
    ),
    # --- ZDO callbacks --------------------------------------------------------------------
    CommandDef(
        "ZDO_NWK_ADDR_RSP",
        S.ZDO,
        0x80,
        AREQ,
        None,
        (
            STATUS,
            _f("IEEE", t.IEEE),
            _f("NWK", t.NWK),
            _f("StartIndex", t.U8),
            _f("AssocDevices", t.NWK_LIST),
        ),
    ),
    CommandDef(
        "ZDO_IEEE_ADDR_RSP",
        S.ZDO,
        0x81,
        AREQ,
        None,
        (
            STATUS,
            _f("IEEE", t.IEEE),
            _f("NWK", t.NWK),
            _f("StartIndex", t.U8),
            _f("AssocDevices", t.NWK_LIST),
        ),
    ),
    CommandDef(
        "ZDO_NODE_DESC_RSP",
        S.ZDO,
        0x82,
        AREQ,
        None,
        (_f("Src", t.NWK), STATUS, _f("NWK", t.NWK), _f("NodeDescriptor", t.REST)),
    ),
    CommandDef(
        "ZDO_SIMPLE_DESC_RSP",
        S.ZDO,
        0x84,
        AREQ,
        None,
        (_f("Src", t.NWK), STATUS, _f("NWK", t.NWK), _f("SimpleDescriptor", t.SimpleDescriptor())),
    ),
    CommandDef(
        "ZDO_ACTIVE_EP_RSP",
        S.ZDO,
        0x85,
        AREQ,
        None,
        (_f("Src", t.NWK), STATUS, _f("NWK", t.NWK), _f("ActiveEndpoints", t.U8_LIST)),
    ),
    CommandDef("ZDO_MGMT_LEAVE_RSP", S.ZDO, 0xB4, AREQ, None, (_f("Src", t.NWK), STATUS)),
    CommandDef("ZDO_MGMT_PERMIT_JOIN_RSP", S.ZDO, 0xB6, AREQ, None, (_f("Src", t.NWK), STATUS)),
    CommandDef(
        "ZDO_STATE_CHANGE_IND", S.ZDO, 0xC0, AREQ, None, (_f("State", t.Enum(t.DeviceState)),)
    ),
    CommandDef(
        "ZDO_END_DEVICE_ANNCE_IND",
        S.ZDO,
        0xC1,
        AREQ,
        None,
        (
            _f("Src", t.NWK),
            _f("NWK", t.NWK),
            _f("IEEE", t.IEEE),
            _f("Capabilities", t.Enum(t.MACCapabilities)),
        ),
    ),
    CommandDef(
        "ZDO_SRC_RTG_IND", S.ZDO, 0xC4, AREQ, None, (_f("DstAddr", t.NWK), _f("Relays", t.NWK_LIST))
    ),
    CommandDef(
        "ZDO_LEAVE_IND",
        S.ZDO,
        0xC9,
        AREQ,
        None,
        (
            _f("NWK", t.NWK),
            _f("IEEE", t.IEEE),
            _f("Request", t.U8),
            _f("Remove", t.U8),
            _f("Rejoin", t.U8),
        ),
    ),
    CommandDef(
        "ZDO_TC_DEV_IND",
        S.ZDO,
        0xCA,
        AREQ,
        None,
        (_f("SrcNwk", t.NWK), _f("SrcIEEE", t.IEEE), _f("ParentNwk", t.NWK)),
    ),
    CommandDef("ZDO_PERMIT_JOIN_IND", S.ZDO, 0xCB, AREQ, None, (_f("Duration", t.U8),)),
    CommandDef(
        "ZDO_MSG_CB_INCOMING",
        S.ZDO,
        0xFF,
        AREQ,
        None,
        (
            _f("Src", t.NWK),
            _f("IsBroadcast", t.U8),
            _f("ClusterId", t.U16),
            _f("SecurityUse", t.U8),
            _f("TSN", t.U8),
            _f("MacDst", t.NWK),
            _f("Data", t.REST),
        ),
    ),
    # --- UTIL -----------------------------------------------------------------------------
    CommandDef(
        "UTIL_GET_DEVICE_INFO",
        S.UTIL,
        0x00,
        SREQ,
        (),
        (
            STATUS,
            _f("IEEE", t.IEEE),
            _f("NWK", t.NWK),
            _f("DeviceType", t.Enum(t.DeviceTypeCapabilities)),
            _f("DeviceState", t.Enum(t.DeviceState)),
            _f("AssociatedDevices", t.NWK_LIST),
        ),
    ),
    CommandDef(
        "UTIL_ASSOC_FIND_DEVICE",
        S.UTIL,
        0x49,
        SREQ,
        (_f("Index", t.U8),),
        # one associated_devices_t: 28 bytes packed, 36 aligned (zigpy-znp tells the
        # firmware's struct alignment from this length)
        (_f("Device", t.REST),),
    ),
    CommandDef(
        "UTIL_ASSOC_GET_WITH_ADDRESS",
        S.UTIL,
        0x4A,
        SREQ,
        (_f("IEEE", t.IEEE), _f("NWK", t.NWK)),
        # the associated_devices_t entry (28 bytes packed, 36 aligned; all 0xFF: none)
        (_f("Device", t.REST),),
    ),
    CommandDef(
        "UTIL_LED_CONTROL", S.UTIL, 0x0A, SREQ, (_f("LED", t.U8), _f("Mode", t.U8)), (STATUS,)
    ),
    # --- SAPI -----------------------------------------------------------------------------
    # Z-Stack 1.2 refuses SYS_OSAL_NV_READ of secure items (keys) but answers this one for
    # config ids up to 0xFF, as zigpy-znp and zigbee-herdsman read the key there.
    CommandDef(
        "ZB_READ_CONFIGURATION",
        S.SAPI,
        0x04,
        SREQ,
        (_f("ConfigId", t.U8),),
        (STATUS, _f("ConfigId", t.U8), _f("Value", t.SHORT_BYTES)),
    ),
    CommandDef(
        "ZB_WRITE_CONFIGURATION",
        S.SAPI,
        0x05,
        SREQ,
        (_f("ConfigId", t.U8), _f("Value", t.SHORT_BYTES)),
        (STATUS,),
    ),
    # --- APP_CNF --------------------------------------------------------------------------
    CommandDef(
        "APP_CNF_BDB_START_COMMISSIONING",
        S.APP_CNF,
        0x05,
        SREQ,
        (_f("Mode", t.Enum(t.BDBCommissioningMode)),),
        (STATUS,),
    ),
    CommandDef(
        "APP_CNF_BDB_SET_CHANNEL",
        S.APP_CNF,
        0x08,
        SREQ,
        (_f("IsPrimary", t.U8), _f("Channel", t.U32)),
        (STATUS,),
    ),
    CommandDef(
        "APP_CNF_SET_NWK_FRAME_COUNTER",
        S.APP_CNF,
        0xFF,
        SREQ,
        (_f("FrameCounterValue", t.U32),),
        (STATUS,),
    ),
    CommandDef(
        "APP_CNF_BDB_COMMISSIONING_NOTIFICATION",
        S.APP_CNF,
        0x80,
        AREQ,
        None,
        (
            _f("Status", t.Enum(t.BDBCommissioningStatus)),
            _f("Mode", t.Enum(t.BDBCommissioningMode)),
            _f("RemainingModes", t.Enum(t.BDBCommissioningMode)),
        ),
    ),
)

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

Conv = Callable[[Any], t.FieldValue] | None
#: A decoding step: a run of fixed-size fields read with one struct, or one codec.
Step = tuple[struct.Struct, tuple[tuple[str, Conv], ...]] | Field


def _ieee(raw: bytes) -> str:
    return raw[::-1].hex()


def _fixed(codec: t.Codec) -> tuple[str, Conv] | None:
    if isinstance(codec, t.UInt) and (codec.size, codec.signed) in _STRUCT_CODES:
        return _STRUCT_CODES[(codec.size, codec.signed)], None
    if isinstance(codec, t.Enum) and (codec.size, False) in _STRUCT_CODES:
        return _STRUCT_CODES[(codec.size, False)], codec.enum_cls
    if isinstance(codec, t.Ieee):
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


def decode_fields(layout: Layout, data: bytes, what: str) -> dict[str, t.FieldValue]:
    out: dict[str, t.FieldValue] = {}
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


# Convenient names for the commands the coordinator uses.
def _c(name: str) -> CommandDef:
    return BY_NAME[name]


SYS_RESET_REQ = _c("SYS_RESET_REQ")
SYS_PING = _c("SYS_PING")
SYS_VERSION = _c("SYS_VERSION")
SYS_OSAL_NV_ITEM_INIT = _c("SYS_OSAL_NV_ITEM_INIT")
SYS_OSAL_NV_READ = _c("SYS_OSAL_NV_READ")
SYS_OSAL_NV_WRITE = _c("SYS_OSAL_NV_WRITE")
SYS_OSAL_NV_DELETE = _c("SYS_OSAL_NV_DELETE")
SYS_OSAL_NV_LENGTH = _c("SYS_OSAL_NV_LENGTH")
SYS_OSAL_NV_READ_EXT = _c("SYS_OSAL_NV_READ_EXT")
SYS_OSAL_NV_WRITE_EXT = _c("SYS_OSAL_NV_WRITE_EXT")
SYS_RESET_IND = _c("SYS_RESET_IND")
AF_REGISTER = _c("AF_REGISTER")
AF_DATA_REQUEST = _c("AF_DATA_REQUEST")
AF_DATA_CONFIRM = _c("AF_DATA_CONFIRM")
AF_INCOMING_MSG = _c("AF_INCOMING_MSG")
AF_INCOMING_MSG_EXT = _c("AF_INCOMING_MSG_EXT")
AF_DATA_RETRIEVE = _c("AF_DATA_RETRIEVE")
ZDO_NODE_DESC_REQ = _c("ZDO_NODE_DESC_REQ")
ZDO_SIMPLE_DESC_REQ = _c("ZDO_SIMPLE_DESC_REQ")
ZDO_SIMPLE_DESC_RSP = _c("ZDO_SIMPLE_DESC_RSP")
ZDO_ACTIVE_EP_REQ = _c("ZDO_ACTIVE_EP_REQ")
ZDO_ACTIVE_EP_RSP = _c("ZDO_ACTIVE_EP_RSP")
ZDO_MGMT_LEAVE_REQ = _c("ZDO_MGMT_LEAVE_REQ")
ZDO_MGMT_PERMIT_JOIN_REQ = _c("ZDO_MGMT_PERMIT_JOIN_REQ")
ZDO_MGMT_PERMIT_JOIN_RSP = _c("ZDO_MGMT_PERMIT_JOIN_RSP")
ZDO_MSG_CB_REGISTER = _c("ZDO_MSG_CB_REGISTER")
ZDO_STARTUP_FROM_APP = _c("ZDO_STARTUP_FROM_APP")
ZDO_EXT_NWK_INFO = _c("ZDO_EXT_NWK_INFO")
ZDO_STATE_CHANGE_IND = _c("ZDO_STATE_CHANGE_IND")
ZDO_END_DEVICE_ANNCE_IND = _c("ZDO_END_DEVICE_ANNCE_IND")
ZDO_LEAVE_IND = _c("ZDO_LEAVE_IND")
ZDO_TC_DEV_IND = _c("ZDO_TC_DEV_IND")
ZDO_PERMIT_JOIN_IND = _c("ZDO_PERMIT_JOIN_IND")
ZDO_SRC_RTG_IND = _c("ZDO_SRC_RTG_IND")
ZDO_MSG_CB_INCOMING = _c("ZDO_MSG_CB_INCOMING")
UTIL_GET_DEVICE_INFO = _c("UTIL_GET_DEVICE_INFO")
ZB_READ_CONFIGURATION = _c("ZB_READ_CONFIGURATION")
APP_CNF_BDB_START_COMMISSIONING = _c("APP_CNF_BDB_START_COMMISSIONING")
APP_CNF_BDB_SET_CHANNEL = _c("APP_CNF_BDB_SET_CHANNEL")
APP_CNF_BDB_COMMISSIONING_NOTIFICATION = _c("APP_CNF_BDB_COMMISSIONING_NOTIFICATION")
RPC_ERROR = _c("RPC_ERROR_COMMAND_NOT_RECOGNIZED")


#: Commands whose ``Id`` field names an OSAL NV item (requests), for secret redaction.
NV_ID_COMMANDS = frozenset(
    {
        BY_NAME["SYS_OSAL_NV_ITEM_INIT"],
        BY_NAME["SYS_OSAL_NV_READ"],
        BY_NAME["SYS_OSAL_NV_WRITE"],
        BY_NAME["SYS_OSAL_NV_READ_EXT"],
        BY_NAME["SYS_OSAL_NV_WRITE_EXT"],
    }
)


def touches_secret(command: CommandDef, fields: Mapping[str, t.FieldValue]) -> bool:
    """True for an NV request on a key item (its bytes, and its answer's, are secret)."""
    if command is ZB_READ_CONFIGURATION:
        return fields.get("ConfigId") in t.SECRET_NV_IDS
    return command in NV_ID_COMMANDS and fields.get("Id") in t.SECRET_NV_IDS
