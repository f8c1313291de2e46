"""An independent Z-Stack emulator on a pty: the driver against layouts it did not write.

Every frame the host sends is parsed, and every answer built, with zigpy-znp's MT command
definitions, framing and NV structs (imported from the ``zigpy_znp`` package at test time;
the product never imports it). Nothing here imports ``drivers.zigbee``: a wrong layout in our
command table makes zigpy-znp refuse the request (answered with RPC_ERROR, as firmware does)
or our decoder refuse the answer. Where zigpy-znp's own table is wrong, the answer follows
TI's MT sources instead and says so (``ZDO_EXT_NWK_INFO``, 24 bytes: TI MT_ZDO.c
``MT_ZdoExtNwkInfo``, zigbee-herdsman's ``extNwkInfo``).

Three firmware families, as zigpy-znp and zigbee-herdsman tell them apart:

- ``"1.2"``: Z-Stack Home 1.2 on a CC2531 (SYS_VERSION product 0, packed structs). Forms with
  ZDO_STARTUP_FROM_APP from its NV configuration; has no BDB (APP_CNF) and no extended NV;
  refuses SYS_OSAL_NV_READ of key material (zigpy-znp ``is_secure_nvid``) but reads it with
  the SAPI ``ZB_READ_CONFIGURATION``; the NWK frame counter follows the key in NWKKEY (0x0082).
- ``"3.0"``: Z-Stack 3.0.x on a CC2531 (product 2, packed structs): BDB formation, no extended
  NV (SYS_NV_READ is "not recognized"), frame counter in the legacy security material table
  (OSAL items 0x0075-0x0080).
- ``"3.30"``: Z-Stack 3.x.0 on a CC26x2 (product 1, aligned structs): BDB formation, the
  frame counter in the extended NV table (system 1, item 7), a SYS_RESET_IND at power-up.

Devices: :meth:`ZStackEmulator.add_device` queues a device with the ZCL frames it sends after
joining; it joins while the network is open for joining (TC device indication, then the
device announcement, then its frames as AF_INCOMING_MSG).
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import struct
import tempfile
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zigpy_znp.commands as c
import zigpy_znp.const
import zigpy_znp.types as t
from zigpy_znp import frames
from zigpy_znp.types.nvids import ExNvIds, NvSysIds, OsalNvIds, is_secure_nvid
from zigpy_znp.znp.security import compute_key

#: SYS_VERSION product id, struct alignment, MT capabilities of each family.
FAMILIES: dict[str, tuple[int, bool, int]] = {
    "1.2": (
        0,
        False,
        t.MTCapabilities.SYS
        | t.MTCapabilities.AF
        | t.MTCapabilities.ZDO
        | t.MTCapabilities.SAPI
        | t.MTCapabilities.UTIL
        | t.MTCapabilities.APP,
    ),
    "3.0": (
        2,
        False,
        t.MTCapabilities.SYS
        | t.MTCapabilities.AF
        | t.MTCapabilities.ZDO
        | t.MTCapabilities.UTIL
        | t.MTCapabilities.APP_CNF,
    ),
    "3.30": (
        1,
        True,
        t.MTCapabilities.SYS
        | t.MTCapabilities.AF
        | t.MTCapabilities.ZDO
        | t.MTCapabilities.UTIL
        | t.MTCapabilities.APP_CNF
        | t.MTCapabilities.GP,
    ),
}
#: Where a fresh network's NWK frame counter starts (any value: the backup must carry it).
FIRST_FRAME_COUNTER = 2500
#: Entries of each per-device table (address manager, TCLK, APS key data, APS link keys).
KEY_TABLE_SIZE = 8
STEP_S = 0.01


@dataclass
class EmulatedDevice:
    """A device that joins through the coordinator and then sends ``frames``."""

    ieee: str  # 16 hex digits, most significant first
    nwk: int
    frames: list[tuple[int, int, bytes]] = field(default_factory=list)  # (cluster, src ep, ZCL)
    capabilities: int = 0x80  # allocate address; an end device on battery
    joined: bool = False
    #: A unique key of its own (an install code's): kept in the APS key data table.
    #: Without one the device gets a key derived from the TCLK seed (the TCLK table).
    link_key: bytes | None = None


def _eui64(ieee_hex: str) -> t.EUI64:
    return t.EUI64(bytes.fromhex(ieee_hex)[::-1])


class ZStackEmulator:
    def __init__(self, family: str = "3.30", *, ieee: str = "00124b0024c2e1d5") -> None:
        self.family = family
        self.product, self.align, caps = FAMILIES[family]
        self.capabilities = t.MTCapabilities(caps)
        self.nv: dict[int, bytes] = {}
        self.ex_nv: dict[tuple[int, int], bytes] = {}
        self.state = t.DeviceState.InitializedNotStarted
        self.endpoints: list[int] = []
        self.permit_until = 0.0
        self.bdb_primary = t.Channels.NO_CHANNELS
        self.frame_counter = 0
        self.devices: list[EmulatedDevice] = []
        self.requests: list[str] = []
        self.rejected: list[str] = []
        self._buffer = b""
        self._greeted = family != "3.30"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._handles: set[asyncio.TimerHandle] = set()
        self._dir = tempfile.TemporaryDirectory(prefix="migw-zstack-")
        self.path = str(Path(self._dir.name) / "ttyEMU0")
        self._factory_nv(ieee)

    # --- NV -------------------------------------------------------------------------------

    def _ser(self, value: Any) -> bytes:
        if isinstance(value, t.CStruct):
            return bytes(value.serialize(align=self.align))
        return bytes(value.serialize())

    def _factory_nv(self, ieee: str) -> None:
        self.nv = {
            OsalNvIds.EXTADDR: bytes.fromhex(ieee)[::-1],
            OsalNvIds.STARTUP_OPTION: b"\x00",
            OsalNvIds.LOGICAL_TYPE: b"\x00",
            OsalNvIds.ZDO_DIRECT_CB: b"\x00",
            OsalNvIds.PANID: b"\xff\xff",
            OsalNvIds.CHANLIST: t.Channels.CHANNEL_11.serialize(),
            OsalNvIds.EXTENDED_PAN_ID: b"\xff" * 8,
            OsalNvIds.APS_USE_EXT_PANID: bytes(8),
            OsalNvIds.PRECFGKEY: bytes(16),
            OsalNvIds.PRECFGKEYS_ENABLE: b"\x01",
            OsalNvIds.NWK_CHILD_AGE_ENABLE: b"\x01",
        }
        self._clear_network()

    def _clear_network(self) -> None:
        empty = t.NwkKeyDesc(KeySeqNum=0, Key=t.KeyData(bytes(16)))
        self.nv[OsalNvIds.NIB] = self._ser(self._nib())
        self.nv[OsalNvIds.NWK_ACTIVE_KEY_INFO] = self._ser(empty)
        self.nv[OsalNvIds.NWK_ALTERN_KEY_INFO] = self._ser(empty)
        self.nv[OsalNvIds.NWKKEY] = self._ser(t.NwkActiveKeyItems(Active=empty, FrameCounter=0))
        if self.product != 0:
            self.nv[OsalNvIds.BDBNODEISONANETWORK] = b"\x00"
            self.nv[OsalNvIds.TCLK_SEED] = secrets.token_bytes(16)
        self.nv.pop(OsalNvIds.LEGACY_NWK_SEC_MATERIAL_TABLE_START, None)
        self.nv.pop(OsalNvIds.LEGACY_NWK_SEC_MATERIAL_TABLE_END, None)
        self.ex_nv.clear()
        self.frame_counter = 0
        self._key_tables()

    def _key_tables(self) -> None:
        """Blank per-device tables, where each family keeps them (zigpy-znp's
        ``zigpy_znp.znp.security``): 3.x.0 in extended NV, 3.0.x in OSAL items; 1.2 has none
        but the address manager."""
        n = KEY_TABLE_SIZE
        if self.product == 1:
            empty_addr = zigpy_znp.const.EMPTY_ADDR_MGR_ENTRY_ZSTACK3
        else:
            empty_addr = zigpy_znp.const.EMPTY_ADDR_MGR_ENTRY_ZSTACK1
        empty_tclk = t.TCLKDevEntry(
            txFrmCntr=0,
            rxFrmCntr=0,
            extAddr=t.EUI64(bytes(8)),
            keyAttributes=t.KeyAttributes.DEFAULT_KEY,
            keyType=t.KeyType.NONE,
            SeedShift_IcIndex=0,
        )
        empty_data = t.APSKeyDataTableEntry(
            Key=t.KeyData(bytes(16)), TxFrameCounter=0, RxFrameCounter=0
        )
        if self.product == 1:
            for i in range(n):
                self.ex_nv[(ExNvIds.ADDRMGR, i)] = self._ser(empty_addr)
                self.ex_nv[(ExNvIds.TCLK_TABLE, i)] = self._ser(empty_tclk)
                self.ex_nv[(ExNvIds.APS_KEY_DATA_TABLE, i)] = self._ser(empty_data)
        else:
            self.nv[OsalNvIds.ADDRMGR] = self._ser(empty_addr) * n
        if self.product == 2:
            for i in range(n):
                self.nv[OsalNvIds.LEGACY_TCLK_TABLE_START + i] = self._ser(empty_tclk)
                self.nv[OsalNvIds.LEGACY_APS_LINK_KEY_DATA_START + i] = self._ser(empty_data)
        if self.product != 0:
            entry = len(self._ser(t.APSLinkKeyTableEntry(0, 0, 0)))
            self.nv[OsalNvIds.APS_LINK_KEY_TABLE] = bytes(2 + n * entry)

    def _table(self, ex_item: int, legacy_start: int) -> list[tuple[Any, int]]:
        """(NV key, index) of each entry of a per-device table."""
        if self.product == 1:
            return [((ex_item, i), i) for i in range(KEY_TABLE_SIZE)]
        return [(legacy_start + i, i) for i in range(KEY_TABLE_SIZE)]

    def _put(self, key: Any, value: Any) -> None:
        if isinstance(key, tuple):
            self.ex_nv[key] = self._ser(value)
        else:
            self.nv[key] = self._ser(value)

    def give_link_key(self, dev: EmulatedDevice) -> None:
        """What Z-Stack 3 stores when a device joins: its address manager entry and its
        unique link key (seed-derived in the TCLK table, or its own in the APS tables)."""
        if self.product == 0:
            return
        addr = t.AddrMgrEntry(
            type=t.AddrMgrUserType.Assoc | t.AddrMgrUserType.Security,
            nwkAddr=dev.nwk,
            extAddr=_eui64(dev.ieee),
        )
        size = len(self._ser(addr))
        index = sum(d.joined for d in self.devices) - 1
        if self.product == 1:
            self.ex_nv[(ExNvIds.ADDRMGR, index)] = self._ser(addr)
        else:
            old = self.nv[OsalNvIds.ADDRMGR]
            self.nv[OsalNvIds.ADDRMGR] = (
                old[: index * size] + self._ser(addr) + old[(index + 1) * size :]
            )
        if dev.link_key is None:
            key, _ = self._table(ExNvIds.TCLK_TABLE, OsalNvIds.LEGACY_TCLK_TABLE_START)[index]
            entry = t.TCLKDevEntry(
                txFrmCntr=11,
                rxFrmCntr=5,
                extAddr=_eui64(dev.ieee),
                keyAttributes=t.KeyAttributes.VERIFIED_KEY,
                keyType=t.KeyType.NONE,
                SeedShift_IcIndex=3,
            )
            self._put(key, entry)
            return
        table = self._table(ExNvIds.APS_KEY_DATA_TABLE, OsalNvIds.LEGACY_APS_LINK_KEY_DATA_START)
        key, slot = table[index]
        self._put(
            key,
            t.APSKeyDataTableEntry(
                Key=t.KeyData(dev.link_key), TxFrameCounter=21, RxFrameCounter=8
            ),
        )
        links, _ = t.APSLinkKeyTable.deserialize(
            self.nv[OsalNvIds.APS_LINK_KEY_TABLE], align=self.align
        )
        base = 0 if self.product == 1 else OsalNvIds.LEGACY_APS_LINK_KEY_DATA_START
        links.append(
            t.APSLinkKeyTableEntry(
                AddressManagerIndex=index,
                LinkKeyNvId=base + slot,
                AuthenticationState=t.AuthenticationOption.AuthenticatedCBCK,
            )
        )
        raw = self._ser(links)
        self.nv[OsalNvIds.APS_LINK_KEY_TABLE] = raw.ljust(
            len(self.nv[OsalNvIds.APS_LINK_KEY_TABLE]), b"\x00"
        )

    def seeded_link_key(self, dev: EmulatedDevice) -> bytes:
        """The seed-derived key of a device (zigpy-znp's ``compute_key``), shift 3."""
        seed = t.KeyData(self.nv[OsalNvIds.TCLK_SEED][:16])
        return bytes(compute_key(_eui64(dev.ieee), seed, 3))

    def _nib(self, **changes: Any) -> t.NIB:
        size = len(t.NIB.deserialize(bytes(200), align=self.align)[0].serialize(align=self.align))
        nib, _ = t.NIB.deserialize(bytes(size), align=self.align)
        base = {
            "nwkDevAddress": 0xFFFE,
            "nwkCoordAddress": 0xFFFE,
            "nwkPanId": 0xFFFF,
            "SecurityLevel": 5,
            "nwkState": t.NwkState.NWK_INIT,
        }
        return nib.replace(**{**base, **changes})

    @property
    def nib(self) -> t.NIB:
        return t.NIB.deserialize(self.nv[OsalNvIds.NIB], align=self.align)[0]

    @property
    def formed(self) -> bool:
        return bool(self.nib.nwkState == t.NwkState.NWK_ROUTER)  # zigpy_znp is untyped

    @property
    def network_key(self) -> bytes:
        desc, _ = t.NwkKeyDesc.deserialize(self.nv[OsalNvIds.NWK_ACTIVE_KEY_INFO])
        return bytes(desc.Key)

    def _form(self) -> None:
        legacy = self.nv
        pan = int.from_bytes(legacy[OsalNvIds.PANID], "little")
        if pan in (0xFFFF, 0xFFFE):
            pan = 0x1A62
        ext = legacy[OsalNvIds.EXTENDED_PAN_ID]
        if ext == b"\xff" * 8:
            ext = legacy[OsalNvIds.EXTADDR]
        mask = self.bdb_primary or t.Channels.deserialize(legacy[OsalNvIds.CHANLIST])[0]
        channel = next(ch for ch in range(11, 27) if mask & (1 << ch))
        key = legacy[OsalNvIds.PRECFGKEY]
        self.nv[OsalNvIds.NIB] = self._ser(
            self._nib(
                nwkDevAddress=0x0000,
                nwkCoordAddress=0x0000,
                nwkLogicalChannel=channel,
                channelList=t.Channels(mask),
                nwkPanId=pan,
                extendedPANID=t.EUI64(ext),
                nwkKeyLoaded=t.Bool.true,
                nwkState=t.NwkState.NWK_ROUTER,
            )
        )
        desc = t.NwkKeyDesc(KeySeqNum=0, Key=t.KeyData(key))
        self.nv[OsalNvIds.NWK_ACTIVE_KEY_INFO] = self._ser(desc)
        self.nv[OsalNvIds.NWK_ALTERN_KEY_INFO] = self._ser(desc)
        self.frame_counter = FIRST_FRAME_COUNTER
        self.nv[OsalNvIds.NWKKEY] = self._ser(
            t.NwkActiveKeyItems(Active=desc, FrameCounter=self.frame_counter)
        )
        if self.product != 0:
            self.nv[OsalNvIds.BDBNODEISONANETWORK] = b"\x01"
        ours = t.NwkSecMaterialDesc(FrameCounter=self.frame_counter, ExtendedPanID=t.EUI64(ext))
        generic = t.NwkSecMaterialDesc(FrameCounter=0xFFFFFFFF, ExtendedPanID=t.EUI64(b"\xff" * 8))
        if self.product == 2:
            self.nv[OsalNvIds.LEGACY_NWK_SEC_MATERIAL_TABLE_START] = self._ser(ours)
            self.nv[OsalNvIds.LEGACY_NWK_SEC_MATERIAL_TABLE_END] = self._ser(generic)
        elif self.product == 1:
            self.ex_nv[(ExNvIds.NWK_SEC_MATERIAL_TABLE, 0)] = self._ser(ours)
            self.ex_nv[(ExNvIds.NWK_SEC_MATERIAL_TABLE, 1)] = self._ser(generic)

    @property
    def stored_frame_counter(self) -> int:
        """The NWK frame counter where this family keeps it."""
        if self.product == 0:
            items, _ = t.NwkActiveKeyItems.deserialize(self.nv[OsalNvIds.NWKKEY], align=self.align)
            return int(items.FrameCounter)
        if self.product == 2:
            raw = self.nv[OsalNvIds.LEGACY_NWK_SEC_MATERIAL_TABLE_START]
        else:
            raw = self.ex_nv[(ExNvIds.NWK_SEC_MATERIAL_TABLE, 0)]
        return int(t.NwkSecMaterialDesc.deserialize(raw, align=self.align)[0].FrameCounter)

    def _bump_counter(self) -> None:
        """Every secured frame sent advances the counter (kept in NV as the firmware does)."""
        self.frame_counter += 1
        if not self.formed:
            return
        fc = self.frame_counter.to_bytes(4, "little")
        if self.product == 0:
            self.nv[OsalNvIds.NWKKEY] = self.nv[OsalNvIds.NWKKEY][:17] + fc
        elif self.product == 2:
            old = self.nv[OsalNvIds.LEGACY_NWK_SEC_MATERIAL_TABLE_START]
            self.nv[OsalNvIds.LEGACY_NWK_SEC_MATERIAL_TABLE_START] = fc + old[4:]
        else:
            key = (ExNvIds.NWK_SEC_MATERIAL_TABLE, 0)
            self.ex_nv[key] = fc + self.ex_nv[key][4:]

    # --- pty ------------------------------------------------------------------------------

    async def __aenter__(self) -> ZStackEmulator:
        self._loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        os.symlink(os.ttyname(slave), self.path)
        self._loop.add_reader(master, self._readable)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for h in self._handles:
            h.cancel()
        if self._master is not None and self._loop is not None:
            self._loop.remove_reader(self._master)
            os.close(self._master)
        if self._slave is not None:
            os.close(self._slave)
        self._master = self._slave = None
        self._dir.cleanup()

    def _readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except OSError:
            return
        if not self._greeted:  # Z-Stack 3.x.0 on a CC26x2 greets a new host with a reset
            self._greeted = True
            self.send(self._reset_ind(t.ResetReason.PowerUp))
        self._buffer += data
        while True:
            start = self._buffer.find(b"\xfe")
            if start < 0:
                self._buffer = b""
                return
            self._buffer = self._buffer[start:]
            try:
                frame, self._buffer = frames.TransportFrame.deserialize(self._buffer)
            except frames.InvalidFrame:
                self._buffer = self._buffer[1:]
                continue
            except ValueError:
                return  # incomplete: wait for more bytes
            self._frame(frame.payload)

    def send(self, cmd: Any) -> None:
        payload = cmd if isinstance(cmd, frames.GeneralFrame) else cmd.to_frame(align=self.align)
        if self._master is not None:
            os.write(self._master, frames.TransportFrame(payload).serialize())

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        assert self._loop is not None
        handle: asyncio.TimerHandle

        def run() -> None:
            self._handles.discard(handle)
            fn()

        handle = self._loop.call_later(delay, run)
        self._handles.add(handle)

    def _not_recognized(self, frame: frames.GeneralFrame, code: int) -> None:
        self.send(
            c.RPCError.CommandNotRecognized.Rsp(
                ErrorCode=c.rpc_error.ErrorCode(code), RequestHeader=frame.header
            )
        )

    def _frame(self, frame: frames.GeneralFrame) -> None:
        cls = c.COMMANDS_BY_ID.get(frame.header)
        if cls is None:
            self.rejected.append(f"unknown {frame.header}")
            self._not_recognized(frame, c.rpc_error.ErrorCode.InvalidCommandId)
            return
        try:
            req = cls.from_frame(frame, align=self.align)
        except ValueError as exc:  # our layout disagrees with zigpy-znp's: firmware says so
            self.rejected.append(f"{cls.__qualname__}: {exc}")
            self._not_recognized(frame, c.rpc_error.ErrorCode.InvalidLength)
            return
        name = cls.__qualname__.rsplit(".", 1)[0]
        self.requests.append(name)
        handler = HANDLERS.get(name)
        if handler is None or (name.startswith("SYS.NV") and self.product != 1):
            # no extended NV before Z-Stack 3.x.0: "not recognized" (zigpy-znp's version check)
            self._not_recognized(frame, c.rpc_error.ErrorCode.InvalidCommandId)
            return
        if name.startswith("AppConfig.") and self.product == 0:  # 1.2 has no BDB
            self._not_recognized(frame, c.rpc_error.ErrorCode.InvalidSubsystem)
            return
        for answer in handler(self, req) or ():
            self.send(answer)

    # --- devices --------------------------------------------------------------------------

    def add_device(self, dev: EmulatedDevice) -> None:
        self.devices.append(dev)

    def _join_pending(self) -> None:
        loop = asyncio.get_running_loop()
        for dev in self.devices:
            if dev.joined or loop.time() > self.permit_until or self.state != 9:
                continue
            dev.joined = True
            self.give_link_key(dev)
            self.send(
                c.ZDO.TCDevInd.Callback(SrcNwk=dev.nwk, SrcIEEE=_eui64(dev.ieee), ParentNwk=0)
            )
            self.send(
                c.ZDO.EndDeviceAnnceInd.Callback(
                    Src=dev.nwk,
                    NWK=dev.nwk,
                    IEEE=_eui64(dev.ieee),
                    Capabilities=c.zdo.MACCapabilities(dev.capabilities),
                )
            )
            for i, frame in enumerate(dev.frames):
                self.later(0.05 * (i + 1), functools.partial(self.deliver, dev, *frame))

    def deliver(self, dev: EmulatedDevice, cluster: int, src_ep: int, data: bytes) -> None:
        if not self.endpoints:
            return
        self.send(
            c.AF.IncomingMsg.Callback(
                GroupId=0,
                ClusterId=cluster,
                SrcAddr=dev.nwk,
                SrcEndpoint=src_ep,
                DstEndpoint=self.endpoints[0],
                WasBroadcast=t.Bool.false,
                LQI=118,
                SecurityUse=t.Bool.false,
                TimeStamp=1234,
                TSN=0,
                Data=t.ShortBytes(data),
                MacSrcAddr=dev.nwk,
                MsgResultRadius=29,
            )
        )

    # --- answers --------------------------------------------------------------------------

    def _reset_ind(self, reason: t.ResetReason) -> Any:
        return c.SYS.ResetInd.Callback(
            Reason=reason,
            TransportRev=2,
            ProductId=self.product,
            MajorRel=2,
            MinorRel=7 if self.product else 6,
            MaintRel=1,
        )

    def _come_up(self, *, new: bool) -> None:
        """STARTING then STARTED as coordinator, as ZDO_STATE_CHANGE_IND (and the BDB
        notifications of a Z-Stack 3 formation)."""

        def started() -> None:
            if new:
                self._form()
            self.state = t.DeviceState.StartedAsCoordinator
            self.send(c.ZDO.StateChangeInd.Callback(State=self.state))
            if self.product != 0:
                status = (
                    c.app_config.BDBCommissioningStatus.Success
                    if new
                    else c.app_config.BDBCommissioningStatus.NetworkRestored
                )
                self.send(
                    c.AppConfig.BDBCommissioningNotification.Callback(
                        Status=status,
                        Mode=c.app_config.BDBCommissioningMode.NwkFormation,
                        RemainingModes=c.app_config.BDBCommissioningMode.NONE,
                    )
                )

        self.state = t.DeviceState.StartingAsCoordinator
        self.later(STEP_S, lambda: self.send(c.ZDO.StateChangeInd.Callback(State=self.state)))
        self.later(3 * STEP_S, started)


def _h_ping(emu: ZStackEmulator, req: Any) -> list[Any]:
    return [c.SYS.Ping.Rsp(Capabilities=emu.capabilities)]


def _h_version(emu: ZStackEmulator, req: Any) -> list[Any]:
    return [
        c.SYS.Version.Rsp(
            TransportRev=2,
            ProductId=emu.product,
            MajorRel=2,
            MinorRel=7 if emu.product else 6,
            MaintRel=1,
            CodeRevision={0: 20190608, 1: 20221226, 2: 20190425}[emu.product],
            BootloaderBuildType=c.sys.BootloaderBuildType.NON_BOOTLOADER_BUILD,
            BootloaderRevision=0xFFFFFFFF,
        )
    ]


def _h_reset(emu: ZStackEmulator, req: Any) -> list[Any]:
    options = t.StartupOptions(emu.nv.get(OsalNvIds.STARTUP_OPTION, b"\x00")[0])
    if options & t.StartupOptions.ClearState:
        emu._clear_network()
    if options & t.StartupOptions.ClearConfig:
        for nvid in (OsalNvIds.HAS_CONFIGURED_ZSTACK1, OsalNvIds.HAS_CONFIGURED_ZSTACK3):
            emu.nv.pop(nvid, None)
    emu.nv[OsalNvIds.STARTUP_OPTION] = b"\x00"
    emu.state = t.DeviceState.InitializedNotStarted
    emu.endpoints.clear()
    emu.later(2 * STEP_S, lambda: emu.send(emu._reset_ind(t.ResetReason.External)))
    return []


def _h_nv_read(emu: ZStackEmulator, req: Any) -> list[Any]:
    value = emu.nv.get(req.Id)
    if value is None or (emu.product == 0 and is_secure_nvid(req.Id)):
        return [req.Rsp(Status=t.Status.INVALID_PARAMETER, Value=t.ShortBytes(b""))]
    return [req.Rsp(Status=t.Status.SUCCESS, Value=t.ShortBytes(value[req.Offset :][:246]))]


def _h_nv_write(emu: ZStackEmulator, req: Any) -> list[Any]:
    old = emu.nv.get(req.Id)
    if old is None:
        return [req.Rsp(Status=t.Status.INVALID_PARAMETER)]
    end = req.Offset + len(req.Value)
    if end > len(old):
        return [req.Rsp(Status=t.Status.NV_BAD_ITEM_LEN)]
    emu.nv[req.Id] = old[: req.Offset] + bytes(req.Value) + old[end:]
    return [req.Rsp(Status=t.Status.SUCCESS)]


def _h_nv_item_init(emu: ZStackEmulator, req: Any) -> list[Any]:
    if req.Id in emu.nv:
        return [req.Rsp(Status=t.Status.SUCCESS)]
    if len(req.Value) > req.ItemLen:
        return [req.Rsp(Status=t.Status.INVALID_PARAMETER)]
    emu.nv[req.Id] = bytes(req.Value).ljust(req.ItemLen, b"\xff")
    return [req.Rsp(Status=t.Status.NV_ITEM_UNINIT)]


def _h_nv_length(emu: ZStackEmulator, req: Any) -> list[Any]:
    return [req.Rsp(ItemLen=len(emu.nv.get(req.Id, b"")))]


def _h_nv_delete(emu: ZStackEmulator, req: Any) -> list[Any]:
    if emu.nv.pop(req.Id, None) is None:
        return [req.Rsp(Status=t.Status.INVALID_PARAMETER)]
    return [req.Rsp(Status=t.Status.SUCCESS)]


def _h_ex_nv_read(emu: ZStackEmulator, req: Any) -> list[Any]:
    value = emu.ex_nv.get((req.ItemId, req.SubId)) if req.SysId == NvSysIds.ZSTACK else None
    if value is None:
        return [c.SYS.NVRead.Rsp(Status=t.Status.FAILURE, Value=t.ShortBytes(b""))]
    chunk = value[req.Offset : req.Offset + req.Length]
    return [c.SYS.NVRead.Rsp(Status=t.Status.SUCCESS, Value=t.ShortBytes(chunk))]


def _h_ex_nv_write(emu: ZStackEmulator, req: Any) -> list[Any]:
    key = (req.ItemId, req.SubId)
    old = emu.ex_nv.get(key)
    if req.SysId != NvSysIds.ZSTACK or old is None:
        return [c.SYS.NVWrite.Rsp(Status=t.Status.FAILURE)]
    end = req.Offset + len(req.Value)
    emu.ex_nv[key] = old[: req.Offset] + bytes(req.Value) + old[end:]
    if key == (ExNvIds.NWK_SEC_MATERIAL_TABLE, 0):
        emu.frame_counter = int.from_bytes(emu.ex_nv[key][:4], "little")
    return [c.SYS.NVWrite.Rsp(Status=t.Status.SUCCESS)]


def _h_ex_nv_length(emu: ZStackEmulator, req: Any) -> list[Any]:
    value = emu.ex_nv.get((req.ItemId, req.SubId)) if req.SysId == NvSysIds.ZSTACK else None
    return [c.SYS.NVLength.Rsp(Length=0 if value is None else len(value))]


def _h_read_configuration(emu: ZStackEmulator, req: Any) -> list[Any]:
    value = emu.nv.get(req.ConfigId)
    if value is None or emu.product != 0:
        return [req.Rsp(Status=t.Status.FAILURE, ConfigId=req.ConfigId, Value=t.ShortBytes(b""))]
    return [req.Rsp(Status=t.Status.SUCCESS, ConfigId=req.ConfigId, Value=t.ShortBytes(value))]


def _h_device_info(emu: ZStackEmulator, req: Any) -> list[Any]:
    return [
        c.UTIL.GetDeviceInfo.Rsp(
            Status=t.Status.SUCCESS,
            IEEE=t.EUI64(emu.nv[OsalNvIds.EXTADDR]),
            NWK=0x0000 if emu.state == t.DeviceState.StartedAsCoordinator else 0xFFFE,
            DeviceType=t.DeviceTypeCapabilities(7),
            DeviceState=emu.state,
            AssociatedDevices=[d.nwk for d in emu.devices if d.joined],
        )
    ]


def _h_ext_nwk_info(emu: ZStackEmulator, req: Any) -> list[Any]:
    # TI MT_ZDO.c MT_ZdoExtNwkInfo (and zigbee-herdsman's extNwkInfo): short address,
    # device state, PAN id, parent short address, extended PAN id, parent IEEE, channel.
    # zigpy-znp's ZDO.ExtNwkInfo.Rsp lacks the device state, so the bytes are built here.
    nib = emu.nib
    up = emu.state == t.DeviceState.StartedAsCoordinator
    data = struct.pack(
        "<HBHH8s8sB",
        0x0000 if up else 0xFFFE,
        int(emu.state),
        int(nib.nwkPanId),
        0xFFFE,
        bytes(nib.extendedPANID.serialize()),
        bytes(8),
        int(nib.nwkLogicalChannel),
    )
    return [frames.GeneralFrame(c.ZDO.ExtNwkInfo.Rsp.header, data)]


def _h_startup_from_app(emu: ZStackEmulator, req: Any) -> list[Any]:
    if emu.state == t.DeviceState.StartedAsCoordinator:
        return [req.Rsp(State=c.zdo.StartupState.RestoredNetworkState)]
    if emu.formed:
        emu._come_up(new=False)
        return [req.Rsp(State=c.zdo.StartupState.RestoredNetworkState)]
    if emu.product == 0:  # Z-Stack 1.2 forms from its NV configuration
        emu._come_up(new=True)
        return [req.Rsp(State=c.zdo.StartupState.NewNetworkState)]
    return [req.Rsp(State=c.zdo.StartupState.NotStarted)]


def _h_bdb_set_channel(emu: ZStackEmulator, req: Any) -> list[Any]:
    if req.IsPrimary:
        emu.bdb_primary = req.Channel
    return [req.Rsp(Status=t.Status.SUCCESS)]


def _h_bdb_start(emu: ZStackEmulator, req: Any) -> list[Any]:
    if req.Mode & c.app_config.BDBCommissioningMode.NwkFormation:
        emu._come_up(new=not emu.formed)
    return [req.Rsp(Status=t.Status.SUCCESS)]


def _h_active_ep(emu: ZStackEmulator, req: Any) -> list[Any]:
    out: list[Any] = [req.Rsp(Status=t.Status.SUCCESS)]
    if req.NWKAddrOfInterest == 0x0000:
        out.append(
            c.ZDO.ActiveEpRsp.Callback(
                Src=0x0000,
                Status=t.ZDOStatus.SUCCESS,
                NWK=0x0000,
                ActiveEndpoints=list(emu.endpoints),
            )
        )
    return out


def _h_af_register(emu: ZStackEmulator, req: Any) -> list[Any]:
    if req.Endpoint in emu.endpoints:
        return [req.Rsp(Status=t.Status.APS_DUPLICATE_ENTRY)]
    emu.endpoints.append(req.Endpoint)
    return [req.Rsp(Status=t.Status.SUCCESS)]


def _h_ok(emu: ZStackEmulator, req: Any) -> list[Any]:
    return [req.Rsp(Status=t.Status.SUCCESS)]


def _h_permit_join(emu: ZStackEmulator, req: Any) -> list[Any]:
    out: list[Any] = [req.Rsp(Status=t.Status.SUCCESS)]
    if req.Dst == 0x0000 or req.AddrMode == t.AddrMode.Broadcast:
        loop = asyncio.get_running_loop()
        emu.permit_until = loop.time() + int(req.Duration)
        if req.Dst == 0x0000:
            out.append(c.ZDO.MgmtPermitJoinRsp.Callback(Src=0x0000, Status=t.ZDOStatus.SUCCESS))
            if emu.product != 1:  # "only sent with Z-Stack 1.2 and 3.0" (zigpy-znp)
                out.append(c.ZDO.PermitJoinInd.Callback(Duration=req.Duration))
        if req.Duration:
            emu.later(0.1, emu._join_pending)
    return out


def _h_data_request(emu: ZStackEmulator, req: Any) -> list[Any]:
    if emu.state != t.DeviceState.StartedAsCoordinator:
        return [req.Rsp(Status=t.Status.NWK_INVALID_REQUEST)]
    emu._bump_counter()
    known = any(d.joined and d.nwk == req.DstAddr for d in emu.devices)
    status = t.Status.SUCCESS if known else t.Status.NWK_NO_ROUTE
    confirm = c.AF.DataConfirm.Callback(Status=status, Endpoint=req.SrcEndpoint, TSN=req.TSN)
    emu.later(STEP_S, lambda: emu.send(confirm))
    return [req.Rsp(Status=t.Status.SUCCESS)]


def _h_ieee_addr(emu: ZStackEmulator, req: Any) -> list[Any]:
    return [req.Rsp(Status=t.Status.SUCCESS)] + [
        c.ZDO.IEEEAddrRsp.Callback(
            Status=t.ZDOStatus.SUCCESS,
            IEEE=_eui64(dev.ieee),
            NWK=dev.nwk,
            NumAssoc=0,
            Index=0,
            Devices=[],
        )
        for dev in emu.devices
        if dev.joined and dev.nwk == req.NWK
    ]


Handler = Callable[[ZStackEmulator, Any], list[Any] | None]
HANDLERS: dict[str, Handler] = {
    "SYS.Ping": _h_ping,
    "SYS.Version": _h_version,
    "SYS.ResetReq": _h_reset,
    "SYS.OSALNVRead": _h_nv_read,
    "SYS.OSALNVReadExt": _h_nv_read,
    "SYS.OSALNVWrite": _h_nv_write,
    "SYS.OSALNVWriteExt": _h_nv_write,
    "SYS.OSALNVItemInit": _h_nv_item_init,
    "SYS.OSALNVLength": _h_nv_length,
    "SYS.OSALNVDelete": _h_nv_delete,
    "SYS.NVRead": _h_ex_nv_read,
    "SYS.NVWrite": _h_ex_nv_write,
    "SYS.NVLength": _h_ex_nv_length,
    "SAPI.ZBReadConfiguration": _h_read_configuration,
    "UTIL.GetDeviceInfo": _h_device_info,
    "UTIL.LEDControl": _h_ok,
    "ZDO.ExtNwkInfo": _h_ext_nwk_info,
    "ZDO.StartupFromApp": _h_startup_from_app,
    "ZDO.ActiveEpReq": _h_active_ep,
    "ZDO.MsgCallbackRegister": _h_ok,
    "ZDO.MgmtPermitJoinReq": _h_permit_join,
    "ZDO.IEEEAddrReq": _h_ieee_addr,
    "AF.Register": _h_af_register,
    "AF.DataRequest": _h_data_request,
    "AppConfig.BDBSetChannel": _h_bdb_set_channel,
    "AppConfig.BDBStartCommissioning": _h_bdb_start,
}
